"""Multi-fidelity strategies (successive halving, Hyperband, ASHA), the freeze-thaw decision
and the table replay: the papers' tables, hand-worked promotions, budgets, purity."""

from __future__ import annotations

import jax
import mf_replay as rp  # the multi-fidelity strategies' table simulator, a test harness until the driver runs jobs (issue 14)
import numpy as np
import pytest
import scipy.stats

from nax import space as space_lib
from nax import tables
from nax.search import ahead_calibration, strategies, transfer
from nax.search import freeze_thaw as ft
from nax.search import halving as hv
from nax.search import multifidelity as mf
from nax.search.multifidelity import Job, TrialResult

SPACE = space_lib.nb201
REPO_METADATA = __import__("pathlib").Path(__file__).resolve().parents[1] / "nax" / "metadata"


def _key(i):
    return jax.random.fold_in(jax.random.key(7), i)


def _pool(n, epochs, seed=0):
    """``n`` distinct cells with increasing, distinct synthetic curves."""
    encs = SPACE.enumerate()[:: 15625 // n][:n]
    rng = np.random.default_rng(seed)
    final = rng.permutation(n) / (2 * n) + 0.4
    curves = final[:, None] * (1 - 0.5 * np.exp(-np.arange(1, epochs + 1) / 3))[None, :]
    return rp.CurvePool(encs, curves, SPACE)


def _done(job, value, epochs=None):
    return TrialResult(job.trial, (0.0,) * ((epochs or job.epochs) - 1) + (value,), "completed")


# ---------------------------------------------------------------------------- rungs and brackets
def test_hyperband_brackets_equal_table_1_of_li_et_al_2018():
    # Li et al. 2018 (JMLR), Table 1: R = 81, eta = 3; rows i, columns s = 4 .. 0
    table_1 = [
        [(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)],
        [(34, 3), (11, 9), (3, 27), (1, 81)],
        [(15, 9), (5, 27), (1, 81)],
        [(8, 27), (2, 81)],
        [(5, 81)],
    ]
    assert mf.hyperband_brackets(1, 81, 3) == table_1
    assert mf.rungs(1, 81, 3) == (1, 3, 9, 27, 81)


def test_rungs_round_to_whole_epochs_and_end_at_max():
    assert mf.rungs(1, 12, 3) == (1, 4, 12)  # 12/9 -> 1, 12/3 = 4
    assert mf.rungs(2, 2, 3) == (2,)
    assert mf.rungs(5, 52, 2) == (6, 13, 26, 52)  # 52/8 = 6.5 -> 6 (>= min 5)
    assert mf.rungs(1, 20, 1.5)[-1] == 20 and len(set(mf.rungs(1, 20, 1.5))) == len(mf.rungs(1, 20, 1.5))
    assert mf.hyperband_brackets(1, 12, 3) == [[(9, 1), (3, 4), (1, 12)], [(5, 4), (1, 12)], [(3, 12)]]


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: hv.hyperband(1, 81, 1), "eta must be a number > 1"),
        (lambda: hv.asha(1, 81, 0.5), "eta must be a number > 1"),
        (lambda: hv.asha(1, 81, float("nan")), "eta must be a number > 1"),
        (lambda: hv.hyperband(10, 5, 3), r"min_epochs \(10\) must not exceed max_epochs \(5\)"),
        (lambda: hv.asha(0, 5, 3), "min_epochs must be a positive whole number"),
        (lambda: hv.successive_halving(9, 1, -3, 3), "max_epochs must be a positive whole number"),
        (lambda: hv.successive_halving(9, 1.5, 3, 3), "min_epochs must be a positive whole number"),
        (lambda: hv.successive_halving(0, 1, 9, 3), "n .* must be a positive whole number"),
        (lambda: hv.asha(1, 9, 3, early_stopping_rate=-1), "early_stopping_rate must be"),
        (lambda: hv.asha(1, 9, 3, early_stopping_rate=3), "leaves no rung"),
        (lambda: hv.hyperband(1, 9, 3), "give a space"),
    ],
)
def test_bad_input_is_one_clear_line(call, match):
    with pytest.raises(ValueError, match=match) as e:
        call()
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------------------- successive halving
def test_successive_halving_promotes_the_top_third_and_waits_for_each_rung():
    pool = _pool(40, 9)
    sh = hv.successive_halving(9, 1, 9, 3, space=SPACE, candidates=pool.encs_PxE, repeat=False)
    state = sh.init(_key(0))
    jobs = []
    for i in range(9):  # nine workers: the whole first rung is asked before any result
        job, state = sh.ask(state, _key(i))
        jobs.append(job)
    assert [j.epochs for j in jobs] == [1] * 9 and [j.trial for j in jobs] == list(range(9))
    assert len({int(SPACE.index(j.enc)) for j in jobs}) == 9
    assert sh.ask(state, _key(9))[0] is None  # synchronous: rung 1 waits for all of rung 0
    values = [0.3, 0.8, 0.1, 0.6, 0.9, 0.2, 0.7, 0.4, 0.5]
    state = sh.tell(state, [_done(j, v) for j, v in zip(jobs, values)][:8])
    assert sh.ask(state, _key(10))[0] is None
    state = sh.tell(state, [_done(jobs[8], values[8])])
    second = []
    for i in range(3):
        job, state = sh.ask(state, _key(20 + i))
        second.append(job)
    assert [(j.trial, j.epochs) for j in second] == [(4, 3), (1, 3), (6, 3)]  # 0.9, 0.8, 0.7
    assert sh.ask(state, _key(30))[0] is None
    state = sh.tell(state, [_done(second[0], 0.5, 3), _done(second[1], 0.95, 3), _done(second[2], 0.6, 3)])
    job, state = sh.ask(state, _key(31))
    assert (job.trial, job.epochs) == (1, 9)
    state = sh.tell(state, [_done(job, 0.97, 9)])
    assert sh.ask(state, _key(32))[0] is None  # repeat=False: one round only
    assert state.trials.base.n_told == 1  # the base strategy hears only the full run's value


def test_a_failed_trial_is_never_promoted_and_the_base_hears_none():
    pool = _pool(10, 9)
    sh = hv.successive_halving(3, 3, 9, 3, space=SPACE, candidates=pool.encs_PxE, repeat=False)
    state = sh.init(_key(0))
    jobs = []
    for i in range(3):
        job, state = sh.ask(state, _key(i))
        jobs.append(job)
    state = sh.tell(
        state, [TrialResult(jobs[0].trial, (0.1, float("nan")), "diverged"), _done(jobs[1], 0.2), _done(jobs[2], 0.3)]
    )
    assert state.trials.base.n_told == 1
    job, state = sh.ask(state, _key(5))
    assert (job.trial, job.epochs) == (2, 9)


def test_hyperband_once_runs_exactly_its_bracket_table_in_replay():
    pool = _pool(200, 81)
    hb = hv.hyperband(1, 81, 3, space=SPACE, candidates=pool.encs_PxE, repeat=False)
    tr = rp.replay(hb, pool, 10**6, _key(0))
    brackets = mf.hyperband_brackets(1, 81, 3)
    n_jobs = sum(n for b in brackets for n, _ in b)
    # resumed trials pay only the epochs they add: n_i * (r_i - r_{i-1})
    epochs = sum(n * (r - (b[i - 1][1] if i else 0)) for b in brackets for i, (n, r) in enumerate(b))
    assert (tr.jobs, tr.charged, tr.trials, tr.full_runs) == (n_jobs, epochs, 143, 1 + 1 + 1 + 2 + 5)
    assert tr.best[-1] <= pool.curves_PxT[:, -1].max()


def test_hyperband_repeats_until_the_pool_is_used_up_without_repeating_an_architecture():
    pool = _pool(30, 12)
    hb = hv.hyperband(1, 12, 3, space=SPACE, candidates=pool.encs_PxE)
    tr = rp.replay(hb, pool, 10**6, _key(1), workers=3)
    assert tr.trials == 30  # every cell started once, none twice
    assert tr.best[-1] <= pool.curves_PxT[:, -1].max()


# ---------------------------------------------------------------------------- ASHA
def test_asha_promotion_rule_hand_worked():
    pool = _pool(50, 9)
    asha = hv.asha(1, 9, 3, space=SPACE, candidates=pool.encs_PxE)  # rungs 1, 3, 9
    s = asha.init(_key(0))
    j = {}
    for t in range(3):  # three free workers, nothing told: three new trials at rung 0
        job, s = asha.ask(s, _key(t))
        assert (job.trial, job.epochs) == (t, 1)
        j[t] = job
    s = asha.tell(s, [_done(j[0], 0.5), _done(j[1], 0.9), _done(j[2], 0.7)])
    # rung 0 = {0: .5, 1: .9, 2: .7}: top floor(3/3) = 1 is trial 1 -> promoted to 3 epochs
    job, s = asha.ask(s, _key(3))
    assert (job.trial, job.epochs) == (1, 3)
    # asked again before any tell: trial 1 is already promoted, so a new trial starts
    job, s = asha.ask(s, _key(4))
    assert (job.trial, job.epochs) == (3, 1)
    s = asha.tell(s, [_done(job, 0.95)])
    # rung 0 now has 4 results, top floor(4/3) = 1 is trial 3 (0.95) -> promoted
    job, s = asha.ask(s, _key(5))
    assert (job.trial, job.epochs) == (3, 3)
    s = asha.tell(s, [_done(Job(1, None, 3), 0.91), _done(Job(3, None, 3), 0.96)])
    # rung 1 has 2 results: floor(2/3) = 0 promotable; rung 0's top 1 is promoted: new trials
    for t in (4, 5):
        job, s = asha.ask(s, _key(t + 2))
        assert (job.trial, job.epochs) == (t, 1)
    s = asha.tell(s, [_done(Job(4, None, 1), 0.1), _done(Job(5, None, 1), 0.8)])
    # rung 0: 6 results, top 2 = trials 3 (.95), 1 (.9), both promoted -> new trial 6
    job, s = asha.ask(s, _key(9))
    assert (job.trial, job.epochs) == (6, 1)
    s = asha.tell(s, [_done(job, 0.85)])
    # rung 0: 7 results, top 2 unchanged -> new trial 7, told 0.99
    job, s = asha.ask(s, _key(10))
    s = asha.tell(s, [_done(job, 0.99)])
    assert job.trial == 7
    # rung 0: 8 results, top 2 = trials 7 (.99), 3 (.95): 7 is promotable
    job, s = asha.ask(s, _key(11))
    assert (job.trial, job.epochs) == (7, 3)
    s = asha.tell(s, [_done(job, 0.97)])
    # rung 1: {1: .91, 3: .96, 7: .97}, top 1 = trial 7 -> to the top rung, before rung 0's promotions
    job, s = asha.ask(s, _key(12))
    assert (job.trial, job.epochs) == (7, 9)
    s = asha.tell(s, [_done(job, 0.98)])
    assert s.trials.base.n_told == 1


def test_asha_in_a_small_pool_never_repeats_and_stops_when_nothing_is_left():
    pool = _pool(5, 9)
    asha = hv.asha(1, 9, 3, space=SPACE, candidates=pool.encs_PxE)
    tr = rp.replay(asha, pool, 10**6, _key(2), workers=2)
    assert tr.trials == 5
    # 5 results at rung 0 promote floor(5/3) = 1; 1 at rung 1 promotes none
    assert (tr.jobs, tr.full_runs, tr.charged) == (6, 0, 5 + 2)


def test_asks_are_pure():
    pool = _pool(20, 9)
    for strat in (
        hv.asha(1, 9, 3, space=SPACE, candidates=pool.encs_PxE),
        hv.hyperband(1, 9, 3, space=SPACE, candidates=pool.encs_PxE),
    ):
        s0 = strat.init(_key(0))
        j1, s1 = strat.ask(s0, _key(1))
        j2, _ = strat.ask(s0, _key(1))
        assert j1.trial == j2.trial and np.array_equal(j1.enc, j2.enc)
        assert s0.trials.encs == () and len(s1.trials.encs) == 1


def test_tell_of_a_trial_without_a_job_is_an_error():
    pool = _pool(5, 9)
    for strat in (
        hv.asha(1, 9, 3, space=SPACE, candidates=pool.encs_PxE),
        hv.hyperband(1, 9, 3, space=SPACE, candidates=pool.encs_PxE),
        mf.full_runs(9, space=SPACE, candidates=pool.encs_PxE),
    ):
        with pytest.raises(ValueError, match="trial 3 has no job in flight"):
            strat.tell(strat.init(_key(0)), [TrialResult(3, (0.5,), "completed")])


def test_a_pluggable_base_strategy_proposes_the_architectures():
    pool = _pool(30, 9)
    order = pool.encs_PxE[::-1]
    evo = strategies.evolution(SPACE, population=3, sample=2, candidates=order)
    asha = hv.asha(1, 9, 3, base=evo)
    s = asha.init(_key(0))
    job, s = asha.ask(s, _key(1))
    assert any(np.array_equal(job.enc, e) for e in pool.encs_PxE)
    with pytest.raises(ValueError, match="one architecture at a time"):
        wide = hv.asha(1, 9, 3, base=strategies.random(SPACE, batch=2, candidates=order))
        wide.ask(wide.init(_key(0)), _key(1))


# ---------------------------------------------------------------------------- replay
@pytest.mark.parametrize("workers", [1, 4])
@pytest.mark.parametrize("budget", [7, 50, 131])
def test_replay_never_overshoots_and_is_reproducible(workers, budget):
    pool = _pool(60, 12)
    for strat in (
        hv.hyperband(1, 12, 3, space=SPACE, candidates=pool.encs_PxE),
        hv.asha(1, 12, 3, space=SPACE, candidates=pool.encs_PxE),
        mf.full_runs(12, space=SPACE, candidates=pool.encs_PxE),
    ):
        a = rp.replay(strat, pool, budget, _key(3), workers=workers)
        b = rp.replay(strat, pool, budget, _key(3), workers=workers)
        assert a.charged <= budget and (len(a.epochs) == 0 or a.epochs[-1] == a.charged)
        assert np.array_equal(a.epochs, b.epochs) and np.array_equal(a.best, b.best, equal_nan=True)
        assert np.all(np.diff(a.epochs) > 0)


def test_full_runs_is_random_search_of_whole_runs():
    pool = _pool(60, 12)
    tr = rp.replay(mf.full_runs(12, space=SPACE, candidates=pool.encs_PxE), pool, 100, _key(4))
    assert (tr.jobs, tr.trials, tr.full_runs, tr.charged) == (8, 8, 8, 96)
    assert np.all(np.diff(tr.best[np.isfinite(tr.best)]) >= 0)
    assert tr.best_within(48) == tr.best[3] and tr.reach(tr.best[-1]) <= 96


def test_table_pool_picks_repeats_by_seed_and_identifies_rows_without_archs():
    enc = SPACE.enumerate()[[7, 7, 9]]
    ct = tables.CurveTable.from_arrays(
        [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]],
        ["d"] * 3,
        epochs=[1, 2],
        meta={"arch": np.array([SPACE.to_string(e) for e in enc], dtype=object)},
    )
    for seed, want in ((0, 0.2), (1, 0.4), (2, 0.2)):
        p = rp.table_pool(ct, "d", SPACE, seed=seed)
        assert len(p.encs_PxE) == 2 and p.curve(enc[0])[-1] == want
    anon = rp.table_pool(ct, "d", SPACE, arch_column=None)
    assert np.array_equal(anon.encs_PxE, SPACE.enumerate()[:3])
    with pytest.raises(ValueError, match="unknown dataset 'x'"):
        rp.table_pool(ct, "x", SPACE)


def test_replay_on_the_meta_dataset():
    ct = tables.load_curves(REPO_METADATA / "mnist5k.csv")
    pool = rp.table_pool(ct, "mnist5k", SPACE)
    tr = rp.replay(hv.hyperband(1, 12, 3, space=SPACE, candidates=pool.encs_PxE), pool, 300, _key(5))
    assert tr.charged <= 300 and tr.full_runs >= 1
    finals = {int(i): c for i, c in zip(SPACE.index(pool.encs_PxE), pool.curves_PxT[:, -1])}
    assert tr.best[-1] in set(finals.values())


# ---------------------------------------------------------------------------- freeze-thaw
def test_expected_improvement_of_draws():
    d = np.array([[0.5, 0.9], [0.7, 0.9], [0.9, 0.9], [0.3, 0.9]])
    assert np.allclose(ft.expected_improvement(d, [0.6, 0.95]), [(0.1 + 0.3) / 4, 0.0])


def test_freeze_thaw_takes_the_largest_expected_improvement_per_epoch():
    d = ft.decide(_key(0), [0.001, 0.006, 0.002], [6, 6, 6], [0.002, 0.003], horizon=12, delta=3)
    assert (d.action, d.index, d.epochs) == ("continue", 1, 3)
    assert np.isclose(d.score, 0.006 / 3)
    d = ft.decide(_key(0), [0.0001, 0.0005, 0.0], [8, 3, 11], [0.001, 0.0025], horizon=12, delta=4)
    assert (d.action, d.index, d.epochs) == ("new", 1, 4)
    assert np.isclose(d.score, 0.0025 / 4)
    # a trial 2 epochs short is resumed by those 2 and charged them: 0.003 / 2 beats 0.004 / 5
    d = ft.decide(_key(0), [0.004, 0.003], [2, 10], None, horizon=12, delta=5)
    assert (d.action, d.index, d.epochs) == ("continue", 1, 2)
    assert np.isclose(d.score, 0.003 / 2) and np.isclose(d.scores_paused[0], 0.004 / 5)
    # a trial at the horizon is no option
    d = ft.decide(_key(0), [0.9, 0.9], [12, 12], [0.1], horizon=12)
    assert d.action == "new" and np.all(np.isinf(d.scores_paused))
    # nothing known about new architectures yet: start one
    d = ft.decide(_key(0), [0.5], [3], [np.inf], horizon=12, delta=3)
    assert d.action == "new"


def test_freeze_thaw_explores_when_nothing_has_a_chance_and_breaks_ties_by_key():
    d = ft.decide(_key(0), [0.0, 0.0], [3, 6], [0.0], horizon=12, delta=3)
    assert d.action == "new"
    picks = {ft.decide(_key(i), [0.4, 0.4, 0.4], [3, 3, 3], None, horizon=12, delta=3).index for i in range(30)}
    assert picks == {0, 1, 2}
    again = [ft.decide(_key(3), [0.4, 0.4, 0.4], [3, 3, 3], None, horizon=12, delta=3)[:3] for _ in range(2)]
    assert again[0] == again[1]


def test_best_at_is_the_budget_matched_incumbent():
    curves = [(0.2, 0.5, 0.6), (0.4, 0.45), (0.3,)]
    assert ft.best_at(curves, 1) == 0.4 and ft.best_at(curves, 2) == 0.5 and ft.best_at(curves, 3) == 0.6
    assert ft.best_at(curves, 4) == 0.6  # no one is that long: the best seen at any epoch
    assert ft.best_at([], 2) is None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(p=[0.1, 0.2], epochs=[1]), "has 2 values, expected 1"),
        (dict(p=[np.nan], epochs=[1]), "expected improvements >= 0"),
        (dict(p=[-0.5], epochs=[1]), "expected improvements >= 0"),
        (dict(p=[0.1], epochs=[1], horizon=0), "horizon and delta must be positive"),
        (dict(p=[0.1], epochs=[12]), "no option"),
    ],
)
def test_freeze_thaw_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ft.decide(_key(0), kwargs["p"], kwargs["epochs"], None, horizon=kwargs.get("horizon", 12))


def test_scores_to_accuracy_inverts_the_models_normal_scores():
    from nax.characteristics.spec import normal_scores

    y = np.array([0.61, 0.9, 0.75, 0.8, 0.55])
    assert np.allclose(transfer.scores_to_accuracy(normal_scores(y), y), y)
    z = np.linspace(-3, 3, 50)
    acc = transfer.scores_to_accuracy(z, y)
    assert np.all(np.diff(acc) >= 0) and acc[-1] > y.max() and acc[0] < y.min()
    with pytest.raises(ValueError, match="at least two distinct"):
        transfer.scores_to_accuracy(z, [0.5, 0.5])


def _exact_model(pool, noise=0.01):
    """A :class:`ft.CurveModel` that knows each curve's value at every epoch up to Gaussian
    noise ``noise`` (the best a curve model could do), counting its updates."""
    by_prefix = {tuple(np.round(c[:k], 12)): c for c in pool.curves_PxT for k in range(1, pool.max_epochs + 1)}

    def fit(state, curves, epochs, seed):
        return [by_prefix[tuple(np.round(c, 12))][e - 1] for c, e in zip(curves, epochs)]

    def improvement(state, fitted, best):
        z = (np.asarray(fitted, float) - best) / noise
        return noise * (z * scipy.stats.norm.cdf(z) + scipy.stats.norm.pdf(z))

    return ft.CurveModel(lambda key: 0, lambda s, completed, key: s + len(completed), fit, improvement)


def test_freeze_thaw_strategy_with_an_exact_curve_model_finds_the_best_without_finishing_everything():
    pool = _pool(40, 12)
    st = ft.strategy(_exact_model(pool), 12, delta=3, space=SPACE, candidates=pool.encs_PxE)
    tr = rp.replay(st, pool, 200, _key(0))
    full = rp.replay(mf.full_runs(12, space=SPACE, candidates=pool.encs_PxE), pool, 200, _key(0))
    assert tr.charged <= 200 and tr.best[-1] >= full.best[-1]
    # with curves whose ranks never cross, a trial that does not lead at its next epoch is
    # left paused: most trials are tried for 3 epochs, few finished (the greedy rule of
    # the previous session finished every trial it started on the meta-dataset)
    assert tr.best[-1] == pool.curves_PxT[:, -1].max()
    assert tr.trials >= 3 * tr.full_runs >= 3
    again = rp.replay(st, pool, 200, _key(0))
    assert np.array_equal(tr.epochs, again.epochs) and np.array_equal(tr.best, again.best, equal_nan=True)


def test_freeze_thaw_strategy_resumes_adapts_and_records_the_incumbent():
    pool = _pool(10, 6)
    st = ft.strategy(_exact_model(pool, noise=0.02), 6, delta=2, space=SPACE, candidates=pool.encs_PxE)
    s = st.init(_key(0))
    job, s = st.ask(s, _key(1))
    assert (job.trial, job.epochs) == (0, 2)  # nothing known: start
    s = st.tell(s, [TrialResult(0, tuple(pool.curve(job.enc)[:2]), "completed")])
    for k in range(2, 60):
        job, s2 = st.ask(s, _key(k))
        if job is None:
            break
        have = len(s.curves[job.trial]) if job.trial < len(s.curves) else 0
        assert job.epochs - have == min(2, 6 - have)  # resumes from where it paused, by delta
        s = st.tell(s2, [TrialResult(job.trial, tuple(pool.curve(job.enc)[: job.epochs]), "completed")])
    assert s.finished and s.incumbent == max(s.curves[t][-1] for t in s.finished)
    assert s.model == len(s.finished)  # the curve model heard every completed run, once
    assert s.trials.base.n_told == len(s.finished)  # so did the base strategy (its finals only)
    with pytest.raises(ValueError, match="with no job in flight|has no job in flight"):
        st.tell(s, [TrialResult(0, (0.5,), "completed")])


def test_freeze_thaw_never_resumes_a_failed_trial():
    pool = _pool(6, 6)
    st = ft.strategy(_exact_model(pool), 6, delta=2, space=SPACE, candidates=pool.encs_PxE)
    s = st.init(_key(0))
    job, s = st.ask(s, _key(1))
    s = st.tell(s, [TrialResult(job.trial, (0.3,), "failed")])
    for k in range(2, 40):
        job, s2 = st.ask(s, _key(k))
        if job is None:
            break
        assert job.trial != 0
        s = st.tell(s2, [TrialResult(job.trial, tuple(pool.curve(job.enc)[: job.epochs]), "completed")])
    assert 0 in s.dead


def test_freeze_thaw_needs_a_transferred_curve_prior():
    from nax.curves.stopping import stop_rule

    with pytest.raises(ValueError, match="needs a transferred curve prior"):
        ft.curve_model(stop_rule(None, 12))


@pytest.mark.slow
def test_freeze_thaw_from_a_fitted_prior_runs_in_the_one_driver(tmp_path):
    """Both transfers end to end: a curve prior fitted on two simulated source datasets
    (and the look-ahead calibrated on them), the characteristic model left out (uniform
    proposals), freeze-thaw through
    ``nax.search.loop.run_search`` on the third dataset's table: within the budget, jobs of
    ``default_delta`` epochs, the curve model adapted once per completed trial."""
    from test_search_support import EPOCHS, simulated_curve_csv

    from nax import curves
    from nax.curves.inference import InferenceConfig
    from nax.curves.stopping import StopConfig
    from nax.search import evaluators, loop

    table = tables.load_curves(simulated_curve_csv(tmp_path / "sim.csv", n_archs=30))
    sources = table.subset(np.isin(table.datasets, ["alpha", "beta"]))
    fast = curves.fitting.PRIOR_INFERENCE.replace(num_steps=150, num_samples=100)
    prior = curves.fit_prior(
        sources,
        seed=0,
        max_curves=20,
        inference=fast,
        calibration_inference=curves.fitting.CALIBRATION_INFERENCE.replace(num_steps=100),
        calibration_curves=10,
    )
    ev = evaluators.CurveTableEvaluator(table, "gamma")
    cfg = StopConfig(inference=InferenceConfig(num_samples=100, num_steps=100))
    delta = ft.default_delta(EPOCHS)
    # the look-ahead's spread learned on the two sources (nax.search.ahead_calibration)
    cal = ahead_calibration.fit_ahead(prior, sources, EPOCHS, delta, stop_config=cfg, context=3, queries=10)
    assert len(cal.factors) == len(ahead_calibration.steps(EPOCHS, delta))
    assert all(0.05 <= k <= 20 for k in cal.factors)
    for step in cal.fit["steps"]:
        assert step["predictions"] == 20 and set(step["factor_by_source"]) == {"alpha", "beta"}
    st = ft.from_models(prior, None, ev.space, EPOCHS, stop_config=cfg, candidates=ev.candidates(), ahead=cal)
    states = []
    tell = st.tell
    st = st._replace(tell=lambda s, r: states.append(tell(s, r)) or states[-1])
    out = loop.run_search(st, ev, loop.Budget(epochs=10 * EPOCHS), jax.random.key(0))
    assert 0 < out.epochs_spent <= 10 * EPOCHS and out.best is not None
    # the target's own look-ahead ratios: one per resumed job (a failed fit gives none)
    resumed = sum(1 for r in out.runs if len(r.result.curve) > r.result.cost_epochs)
    assert resumed >= 1 and 1 <= sum(len(x) for x in states[-1].model.seen) <= resumed
    assert all(r.result.cost_epochs <= delta for r in out.runs)
    trials = {r.run for r in out.runs}
    completed = [r for r in out.runs if r.result.status == "completed"]
    assert len(trials) > len(completed) >= 1  # some trials were left paused
    with pytest.raises(ValueError, match="needs a transferred curve prior"):
        ft.from_models(None, None, ev.space, EPOCHS)
