"""The extrapolation noise learned within the target from its own finished runs.

Known truths: the evidence is simulated with a known extrapolation noise, so the noise
the adapted calibration should reach is exact; the search rule is driven with a hand-made
calibrated prior (no prior fit) on curves whose late jump no prefix shows.
"""

import dataclasses

import jax
import numpy as np
import pytest
from test_curves_calibration import hand_prior  # the same hand-made prior (no prior fit)

from nax import curves
from nax.curves import calibration
from nax.curves.bench.early_stop import REPLAY_REFIT, replay
from nax.curves.inference import InferenceConfig
from nax.curves.predict import compose_draws
from nax.curves.stopping import FinalDraws, Finished, Refit, StopConfig, adapt_checkpoints, stop_rule

TRUE = calibration.Calibration(np.log(0.12), 1.0, 1.0)
#: what the sources said: almost no extrapolation noise
SOURCE = calibration.Calibration(np.log(0.004), 1.0, 1.0)
INF = InferenceConfig(num_steps=200, num_samples=100)


def simulated_evidence(runs, per_run=3, seed=0, noise=TRUE, s_draws=64):
    """Evidence of ``runs`` finished runs, each predicted from ``per_run`` prefixes, whose
    finals carry the extrapolation noise ``noise``."""
    rng = np.random.default_rng(seed)
    k = runs * per_run
    gap = rng.uniform(0.2, 0.9, k)
    head = rng.uniform(0.2, 0.8, k)
    centre = rng.uniform(0.3, 0.8, k)
    m = centre + 0.01 * rng.normal(size=(s_draws, k))
    s = np.full((s_draws, k), 0.005)
    y = centre + calibration.ext_scale(noise, gap, head) * rng.standard_t(5.0, k)
    return calibration.Evidence(m, s, y, gap, head, np.repeat(np.arange(runs), per_run))


def effective(cal, gap=0.5, head=0.5):
    return float(calibration.ext_scale(cal, gap, head))


def test_no_evidence_keeps_the_sources_calibration():
    assert calibration.adapt(SOURCE, []) == SOURCE
    empty = simulated_evidence(1)._replace(
        m=np.zeros((64, 0)), s=np.zeros((64, 0)), y=np.zeros(0), gap=np.zeros(0), head=np.zeros(0), run=np.zeros(0, int)
    )
    assert calibration.adapt(SOURCE, empty) == SOURCE


def test_adapted_noise_moves_from_the_sources_to_the_target_as_runs_finish():
    truth = effective(TRUE)
    scales = []
    for runs in (2, 10, 200):
        cal = calibration.adapt(SOURCE, simulated_evidence(runs))
        assert cal.adapted["runs"] == runs
        assert cal.adapted["source"]["log_a"] == SOURCE.log_a
        scales.append(effective(cal))
    assert effective(SOURCE) < scales[0] < scales[1] <= scales[2] * 1.1
    # with many runs the likelihood dominates the prior: the known noise is recovered
    assert abs(scales[2] - truth) / truth < 0.25
    # adapting an adapted calibration starts again from the same sources' values
    again = calibration.adapt(calibration.adapt(SOURCE, simulated_evidence(10)), simulated_evidence(2))
    assert again.adapted["source"]["log_a"] == SOURCE.log_a


def test_adaptation_scale_is_the_spread_of_the_folds_per_source_fits():
    # the scale of the adaptation prior comes from the fold's sources: the sample sd of
    # their own (log a, b, c), floored; two sources say too little, so the fixed fallback
    per_source = {"a": [-3.0, 0.5, 1.0], "b": [-2.0, 0.5, 2.0], "c": [-1.0, 0.6, 3.0]}
    spread = calibration.spread_of_sources(per_source)
    np.testing.assert_allclose(spread, [1.0, calibration.ADAPT_SCALE_MIN, 1.0])
    assert calibration.spread_of_sources({k: per_source[k] for k in "ab"}) is None
    fitted = SOURCE._replace(fit={"adapt_scale": [0.3, 0.3, 0.3]})
    assert calibration.adapt_scale(fitted) == (0.3, 0.3, 0.3, calibration.ADAPT_SCALE[3])
    assert calibration.adapt_scale(SOURCE) == tuple(calibration.ADAPT_SCALE)
    # adapt uses it by default: sources that agree (a tight scale) hold the target nearer them
    ev = simulated_evidence(10)
    loose, tight = calibration.adapt(SOURCE, ev), calibration.adapt(fitted, ev)
    assert tight.adapted["scale"][:3] == [0.3, 0.3, 0.3]
    assert effective(SOURCE) < effective(tight) < effective(loose)


def test_a_target_like_the_sources_leaves_the_calibration_near_them():
    ev = simulated_evidence(50, noise=SOURCE._replace(log_a=np.log(0.12)))
    src = SOURCE._replace(log_a=np.log(0.12))
    cal = calibration.adapt(src, ev)
    assert abs(np.log(effective(cal) / effective(src))) < 0.3


def test_each_run_weighs_one_however_many_of_its_prefixes_were_predicted():
    ev = simulated_evidence(6, per_run=2)
    doubled = calibration.Evidence(
        np.concatenate([ev.m, ev.m], 1),
        np.concatenate([ev.s, ev.s], 1),
        *(np.concatenate([a, a]) for a in (ev.y, ev.gap, ev.head, ev.run)),
    )
    one, two = calibration.adapt(SOURCE, ev), calibration.adapt(SOURCE, doubled)
    assert abs(one.log_a - two.log_a) < 1e-3 and abs(one.c - two.c) < 1e-3


H = 10


def stepped(plateau, jump, rng, n=1):
    """Curves that plateau and jump at 80% of training (a learning-rate drop)."""
    t = np.arange(1, H + 1)
    v = plateau - 0.2 * t[None] ** -1.0 + jump * (t[None] > 0.8 * H)
    return np.clip(v + 0.003 * rng.normal(size=(n, H)), 0, 1)


@pytest.mark.slow
def test_compose_draws_reproduces_the_predictive_under_any_calibration():
    rng = np.random.default_rng(0)
    partial = stepped(0.5, 0.0, rng, n=4)
    partial[:, 4:] = np.nan
    pred = curves.predict(hand_prior(TRUE), partial, horizon=H, inference=INF)
    y, ext, gap, head = pred.draw_components(pred.horizon[:, None])
    for cal in (TRUE, SOURCE):
        other = dataclasses.replace(pred, calibration=cal)
        np.testing.assert_array_equal(compose_draws(y, ext, gap, head, cal, False)[..., 0], other.samples)
    raw = dataclasses.replace(pred, calibration=None)
    np.testing.assert_array_equal(compose_draws(y, None, None, None, None, False)[..., 0], raw.samples)
    # predict(calibration=...) is the same fit under the given calibration
    again = curves.predict(hand_prior(TRUE), partial, horizon=H, inference=INF, calibration=SOURCE)
    np.testing.assert_array_equal(again.samples, dataclasses.replace(pred, calibration=SOURCE).samples)


@pytest.mark.slow
def test_rule_widens_after_finished_runs_jump_and_keeps_a_late_bloomer():
    rng = np.random.default_rng(1)
    config = StopConfig(min_epochs=4, inference=InferenceConfig(num_samples=200, num_steps=300))
    curves_ = stepped(0.55, 0.3, rng, n=4)
    finished = [Finished(c, True) for c in curves_]
    best = curves_[:, -1].max()
    fixed, adaptive = (stop_rule(hand_prior(SOURCE), H, config.replace(adapt=a)) for a in (False, True))
    states = [rule.update(rule.init(jax.random.key(0)), finished, jax.random.key(1)) for rule in (fixed, adaptive)]
    assert states[0].calibration is None and states[0].evidence == ()
    assert all(s.context.shape == (4, H) for s in states)  # ended runs are the context
    cal = states[1].calibration
    assert len(states[1].evidence) == len(adapt_checkpoints(H, 4)) == 3
    assert cal.adapted["runs"] == 4 and effective(cal) > 5 * effective(SOURCE)
    assert states[1].runs == states[1].fitted_at == 4
    # a run on the same plateau as the best ones, seen before its jump
    late = stepped(0.55, 0.3, rng)[:, :6]
    assert fixed.decide(states[0], late, best).stop.tolist() == [True]
    assert adaptive.decide(states[1], late, best).stop.tolist() == [False]
    # a stopped run joins the context, and there is nothing to learn from it
    again = adaptive.update(states[1], [Finished(late[0], False)], jax.random.key(2))
    assert again.context.shape == (5, H) and again.runs == 4 and again.calibration is cal
    # no calibration (prior None): nothing to adapt, nothing predicted again
    plain = stop_rule(None, H, config)
    assert plain.update(plain.init(jax.random.key(0)), finished, jax.random.key(1)).evidence == ()


def test_refit_schedule():
    every = Refit()
    assert all(every.due(n, n - 1) for n in range(1, 200))
    # the replay's: each of the first ten, then after growing by a quarter, up to 60
    last, fits = 0, []
    for n in range(1, 80):
        if REPLAY_REFIT.due(n, last):
            fits.append(n)
            last = n
    assert fits == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 17, 22, 28, 35, 44, 55]


@pytest.mark.slow
def test_adaptive_replay_learns_within_a_replay_and_starts_afresh_in_the_next():
    rng = np.random.default_rng(2)
    n = 12
    curves_ = stepped(0.5, 0.25, rng, n=n) + rng.uniform(0, 0.05, (n, 1))
    final = curves_[:, -1]
    draws, evidence = {}, {}
    for e in (4, 6, 8):
        part = np.where(np.arange(H) < e, curves_, np.nan)
        pred = curves.predict(
            hand_prior(SOURCE), part, horizon=H, inference=InferenceConfig(num_steps=300, num_samples=200), seed=e
        )
        draws[e] = FinalDraws.from_prediction(pred)
        evidence[e] = calibration.evidence(pred, final, np.arange(n))
    base = StopConfig(min_epochs=4, check_every=2, refit=REPLAY_REFIT)
    adaptive = stop_rule(hand_prior(SOURCE), H, base)
    order = np.arange(n)
    used, best, stats = replay(adaptive, draws, final, order, evidence=evidence, curves=curves_)
    assert stats["fits"] >= 1 and stats["calibration"].adapted["runs"] >= 1
    assert effective(stats["calibration"]) > effective(SOURCE)
    # the same replay again: the same decisions (a replay starts from the sources' fit)
    assert replay(adaptive, draws, final, order, evidence=evidence, curves=curves_)[:2] == (used, best)
    # the fixed rule (sources' calibration) stops at least as many epochs, and the
    # adaptive one finds a final at least as good
    fixed = stop_rule(hand_prior(SOURCE), H, base.replace(adapt=False))
    used_fixed, best_fixed, stats_fixed = replay(fixed, draws, final, order, curves=curves_)
    assert stats_fixed["fits"] == 0 and stats_fixed["calibration"] is None
    assert used >= used_fixed and best >= best_fixed
    # judging cached draws is deciding on the prediction they came from
    state = fixed.init(jax.random.key(0))
    d = fixed.judge(state, draws[8], best_fixed)
    assert np.array_equal(d.prob_better, (pred.samples > best_fixed).mean(0))
    np.testing.assert_allclose(d.predicted_final, pred.mean, rtol=1e-12)


def test_a_shift_shared_by_the_targets_runs_is_learned_as_location_not_noise():
    """Every run of the target ends 0.1 above what its prefix foretold (all gain from the
    same late learning-rate drop), give or take 0.01: that is a location, and the spread
    left around it stays small, so the rule can still tell runs apart."""
    rng = np.random.default_rng(5)
    ev = simulated_evidence(60, noise=SOURCE)
    ev = ev._replace(y=ev.m.mean(0) + 0.1 + 0.01 * rng.standard_t(5.0, len(ev.y)))
    cal = calibration.adapt(SOURCE, ev)
    assert cal.d > 0
    shifted = ev.m.mean(0) + calibration.ext_shift(cal, ev.gap, ev.head)
    assert abs(np.mean(ev.y - shifted)) < 0.01
    scale = calibration.ext_scale(cal, ev.gap, ev.head)
    assert np.median(scale) < 0.05  # the shift is not absorbed as noise
    assert cal.adapted["source"]["d"] == 0.0


@pytest.mark.slow
def test_prediction_mean_and_density_follow_the_shift():
    rng = np.random.default_rng(0)
    partial = stepped(0.5, 0.0, rng, n=3)
    partial[:, 4:] = np.nan
    pred = curves.predict(hand_prior(TRUE), partial, horizon=H, inference=INF)
    moved = dataclasses.replace(pred, calibration=TRUE._replace(d=1.5))
    shift = 1.5 * calibration.ext_scale(TRUE, 1.0 - pred.t_obs, 1.0 - pred.y_last)
    np.testing.assert_allclose(moved.mean, pred.mean + shift, rtol=1e-9)
    np.testing.assert_allclose(moved.samples, pred.samples + shift, rtol=1e-9)
    # the shifted predictive finds a value at its new centre more likely than the old one
    assert np.all(moved.log_density(pred.mean + shift) > pred.log_density(pred.mean + shift))


@pytest.mark.slow
def test_run_check_is_the_rules_decision_on_its_schedule_and_pickles():
    """The per-run callback (search workers, a training loop) applies the schedule and the
    rule's decision; it travels to another process."""
    import pickle

    rng = np.random.default_rng(1)
    rule = stop_rule(
        hand_prior(SOURCE),
        H,
        StopConfig(min_epochs=4, check_every=2, inference=InferenceConfig(num_samples=200, num_steps=300)),
    )
    done = stepped(0.55, 0.3, rng, n=4)
    state = rule.update(rule.init(jax.random.key(0)), [Finished(c, True) for c in done], jax.random.key(1))
    assert curves.run_check(rule, state, None) is None  # nothing completed: no best to beat
    check = pickle.loads(pickle.dumps(curves.run_check(rule, state, 0.99)))
    bad = tuple(stepped(0.2, 0.0, rng)[0])
    assert check(bad[:3]) == (False, None)  # before min_epochs
    assert check(bad[:5]) == (False, None)  # not a check epoch (4, 6, 8)
    stop, predicted = check(bad[:6])
    d = rule.decide(state, np.asarray(bad[:6])[None], 0.99)
    assert stop == bool(d.stop[0]) is True and predicted == float(d.predicted_final[0])
    assert check(bad) == (False, None)  # the last epoch: nothing left to save
