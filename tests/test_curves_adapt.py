"""The extrapolation noise learned within the target from its own finished runs.

Known truths: the evidence is simulated with a known extrapolation noise, so the noise
the adapted calibration should reach is exact; the search rule is driven with a hand-made
calibrated prior (no prior fit) on curves whose late jump no prefix shows.
"""

import dataclasses

import jax
import numpy as np

from nax import curves
from nax.curves import calibration
from nax.curves.benchmark import AdaptiveReplay, replay
from nax.curves.predict import compose_draws
from nax.curves.stopping import adapt_checkpoints
from nax.search.evaluators import RunResult
from nax.search.stopping import rule_from_prior

from test_curves_calibration import hand_prior  # the same hand-made prior (no prior fit)

TRUE = {"kind": calibration.KIND, "log_a": np.log(0.12), "b": 1.0, "c": 1.0}
#: what the sources said: almost no extrapolation noise
SOURCE = {"kind": calibration.KIND, "log_a": np.log(0.004), "b": 1.0, "c": 1.0}


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
        m=np.zeros((64, 0)), s=np.zeros((64, 0)), y=np.zeros(0), gap=np.zeros(0),
        head=np.zeros(0), run=np.zeros(0, int))
    assert calibration.adapt(SOURCE, empty) == SOURCE


def test_adapted_noise_moves_from_the_sources_to_the_target_as_runs_finish():
    truth = effective(TRUE)
    scales = []
    for runs in (2, 10, 200):
        cal = calibration.adapt(SOURCE, simulated_evidence(runs))
        assert cal["adapted"]["runs"] == runs
        assert cal["adapted"]["source"]["log_a"] == SOURCE["log_a"]
        scales.append(effective(cal))
    assert effective(SOURCE) < scales[0] < scales[1] <= scales[2] * 1.1
    # with many runs the likelihood dominates the prior: the known noise is recovered
    assert abs(scales[2] - truth) / truth < 0.25
    # adapting an adapted calibration starts again from the same sources' values
    again = calibration.adapt(calibration.adapt(SOURCE, simulated_evidence(10)), simulated_evidence(2))
    assert again["adapted"]["source"]["log_a"] == SOURCE["log_a"]


def test_a_target_like_the_sources_leaves_the_calibration_near_them():
    ev = simulated_evidence(50, noise=SOURCE | {"log_a": np.log(0.12)})
    src = SOURCE | {"log_a": np.log(0.12)}
    cal = calibration.adapt(src, ev)
    assert abs(np.log(effective(cal) / effective(src))) < 0.3


def test_each_run_weighs_one_however_many_of_its_prefixes_were_predicted():
    ev = simulated_evidence(6, per_run=2)
    doubled = calibration.Evidence(
        np.concatenate([ev.m, ev.m], 1), np.concatenate([ev.s, ev.s], 1),
        *(np.concatenate([a, a]) for a in (ev.y, ev.gap, ev.head, ev.run)))
    one, two = calibration.adapt(SOURCE, ev), calibration.adapt(SOURCE, doubled)
    assert abs(one["log_a"] - two["log_a"]) < 1e-3 and abs(one["c"] - two["c"]) < 1e-3


H = 10


def stepped(plateau, jump, rng, n=1):
    """Curves that plateau and jump at 80% of training (a learning-rate drop)."""
    t = np.arange(1, H + 1)
    v = plateau - 0.2 * t[None] ** -1.0 + jump * (t[None] > 0.8 * H)
    return np.clip(v + 0.003 * rng.normal(size=(n, H)), 0, 1)


def test_compose_draws_reproduces_the_predictive_under_any_calibration():
    rng = np.random.default_rng(0)
    partial = stepped(0.5, 0.0, rng, n=4)
    partial[:, 4:] = np.nan
    pred = curves.predict(hand_prior(TRUE), partial, horizon=H, num_steps=200, num_samples=100)
    y, ext, gap, head = pred.draw_components(pred.horizon[:, None])
    for cal in (TRUE, SOURCE):
        other = dataclasses.replace(pred, calibration=cal)
        np.testing.assert_array_equal(compose_draws(y, ext, gap, head, cal, False)[..., 0], other.samples)
    raw = dataclasses.replace(pred, calibration=None)
    np.testing.assert_array_equal(compose_draws(y, None, None, None, None, False)[..., 0], raw.samples)
    # predict(calibration=...) is the same fit under the given calibration
    again = curves.predict(hand_prior(TRUE), partial, horizon=H, num_steps=200, num_samples=100,
                           calibration=SOURCE)
    np.testing.assert_array_equal(again.samples, dataclasses.replace(pred, calibration=SOURCE).samples)


def test_search_rule_widens_after_finished_runs_jump_and_keeps_a_late_bloomer():
    rng = np.random.default_rng(1)
    kw = {"min_epochs": 4, "num_samples": 200, "num_steps": 300}
    finished = [RunResult(f"r{i}", "completed", tuple(c), float(c[-1]), cost_epochs=H)
                for i, c in enumerate(stepped(0.55, 0.3, rng, n=4))]
    best = max(r.final for r in finished)
    fixed, adaptive = (rule_from_prior(hand_prior(SOURCE), H, adapt=a, **kw) for a in (False, True))
    states = []
    for rule in (fixed, adaptive):
        state = rule.update(rule.init(jax.random.key(0)), finished, jax.random.key(1))
        states.append(state)
    assert states[0].calibration is None and states[0].evidence == ()
    cal = states[1].calibration
    assert len(states[1].evidence) == len(adapt_checkpoints(H, 4)) == 3
    assert cal["adapted"]["runs"] == 4 and effective(cal) > 5 * effective(SOURCE)
    # a run on the same plateau as the best ones, seen before its jump
    late = tuple(stepped(0.55, 0.3, rng)[0, :6])
    stop_fixed, _ = fixed.decide(states[0], best, H)(late)
    stop_adaptive, _ = adaptive.decide(states[1], best, H)(late)
    assert stop_fixed and not stop_adaptive
    # no calibration (prior None): nothing to adapt, nothing predicted again
    plain = rule_from_prior(None, H, **kw)
    assert plain.update(plain.init(jax.random.key(0)), finished, jax.random.key(1)).evidence == ()


def test_adaptive_replay_learns_within_a_replay_and_resets_between_them():
    rng = np.random.default_rng(2)
    n = 12
    curves_ = stepped(0.5, 0.25, rng, n=n) + rng.uniform(0, 0.05, (n, 1))
    final = curves_[:, -1]
    preds = {}
    for e in (4, 6, 8):
        part = np.where(np.arange(H) < e, curves_, np.nan)
        preds[e] = curves.predict(hand_prior(SOURCE), part, horizon=H, num_steps=300, num_samples=200, seed=e)
    ad = AdaptiveReplay(preds, final, minimize=False)
    order = np.arange(n)
    used, best = replay(final, ad.stop_prob, H, 0.05, order, on_complete=ad.complete)
    assert ad.done and ad.calibration is not ad.source
    assert effective(ad.calibration) > effective(SOURCE)
    ad.reset()
    assert ad.calibration is ad.source and ad.done == []
    # the fixed rule (sources' calibration) stops at least as many epochs, and the
    # adaptive one finds a final at least as good
    fixed = {e: (lambda p: (lambda run, ref: float(np.mean(p.samples[:, run] > ref))))(p) for e, p in preds.items()}
    used_fixed, best_fixed = replay(final, fixed, H, 0.05, order)
    assert used >= used_fixed and best >= best_fixed


def test_a_shift_shared_by_the_targets_runs_is_learned_as_location_not_noise():
    """Every run of the target ends 0.1 above what its prefix foretold (all gain from the
    same late learning-rate drop), give or take 0.01: that is a location, and the spread
    left around it stays small, so the rule can still tell runs apart."""
    rng = np.random.default_rng(5)
    ev = simulated_evidence(60, noise=SOURCE)
    ev = ev._replace(y=ev.m.mean(0) + 0.1 + 0.01 * rng.standard_t(5.0, len(ev.y)))
    cal = calibration.adapt(SOURCE, ev)
    assert cal["d"] > 0
    shifted = ev.m.mean(0) + calibration.ext_shift(cal, ev.gap, ev.head)
    assert abs(np.mean(ev.y - shifted)) < 0.01
    scale = calibration.ext_scale(cal, ev.gap, ev.head)
    assert np.median(scale) < 0.05  # the shift is not absorbed as noise
    assert cal["adapted"]["source"]["d"] == 0.0


def test_prediction_mean_and_density_follow_the_shift():
    rng = np.random.default_rng(0)
    partial = stepped(0.5, 0.0, rng, n=3)
    partial[:, 4:] = np.nan
    pred = curves.predict(hand_prior(TRUE), partial, horizon=H, num_steps=200, num_samples=100)
    moved = dataclasses.replace(pred, calibration=TRUE | {"d": 1.5})
    shift = 1.5 * calibration.ext_scale(TRUE, 1.0 - pred.t_obs, 1.0 - pred.y_last)
    np.testing.assert_allclose(moved.mean, pred.mean + shift, rtol=1e-9)
    np.testing.assert_allclose(moved.samples, pred.samples + shift, rtol=1e-9)
    # the shifted predictive finds a value at its new centre more likely than the old one
    assert np.all(moved.log_density(pred.mean + shift) > pred.log_density(pred.mean + shift))


def test_training_callback_rule_adapts_from_the_runs_it_was_told_finished():
    """``nax.curves.stopping.early_stopping`` (init/update/tell) learns the noise from the
    finished runs ``tell`` reported, at its next ``update``, as the search's rule does."""
    rng = np.random.default_rng(1)
    kw = {"horizon": H, "min_epochs": 4, "num_samples": 200, "num_steps": 300}
    done = stepped(0.55, 0.3, rng, n=4)
    late = stepped(0.55, 0.3, rng)[:, :6]  # on the best runs' plateau, before its jump
    decisions = {}
    for adapt in (False, True):
        rule = curves.stopping.early_stopping(hand_prior(SOURCE), adapt=adapt, **kw)
        state = rule.init()
        for row in done:
            state = rule.tell(row, state)
        assert state.calibration is None and state.learned == 0  # tell only records
        stop, state = rule.update(late, state)
        decisions[adapt] = bool(stop[0])
        if adapt:
            assert state.learned == 4 and state.calibration["adapted"]["runs"] == 4
            assert effective(state.calibration) > 5 * effective(SOURCE)
            # a stopped run told afterwards joins the context; nothing new to learn from it
            state = rule.tell(late[0], state)
            _, again = rule.update(late, state)
            assert again.learned == 5 and again.calibration["adapted"]["runs"] == 4
        else:
            assert state.calibration is None and state.evidence == ()
    assert decisions == {False: True, True: False}
