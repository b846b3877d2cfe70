"""ASHA's promotion ranking hook (``halving.asha(..., rank=)``, :mod:`nax.search.halving_rank`):
the default reproduces ASHA's jobs exactly, a hook changes only which trial is promoted, and the
transferred ranking is the curve posterior's median predicted final."""

from __future__ import annotations

import math

import jax
import mf_replay as rp
import numpy as np
import pytest
from test_multifidelity import SPACE, _done, _key, _pool

from nax.search import halving as hv
from nax.search import halving_rank as hr
from nax.search.multifidelity import TrialResult


def _jobs(strategy, pool, n_jobs, seed=0):
    """The first ``n_jobs`` jobs (trial, epochs, architecture index) of a sequential search
    told the pool's curves."""
    s, out = strategy.init(_key(seed)), []
    for k in range(n_jobs):
        job, s = strategy.ask(s, _key(1000 + k))
        if job is None:
            break
        out.append((job.trial, job.epochs, int(SPACE.index(job.enc))))
        s = strategy.tell(s, [TrialResult(job.trial, tuple(pool.curve(job.enc)[: job.epochs]), "completed")])
    return out


def test_asha_ranked_by_value_asks_exactly_the_jobs_of_plain_asha():
    pool = _pool(60, 12)
    plain = hv.asha(1, 12, 3, space=SPACE, candidates=pool.encs_PxE)
    hooked = hv.asha(1, 12, 3, space=SPACE, candidates=pool.encs_PxE, rank=hr.by_value())
    jobs = _jobs(plain, pool, 500)  # until the pool of 60 is used up and nothing is promotable
    assert len({t for t, _, _ in jobs}) == 60 and any(e == 12 for _, e, _ in jobs)  # top-rung promotions
    assert _jobs(hooked, pool, 500) == jobs
    for workers in (1, 3):  # asynchronous workers too
        a = rp.replay(plain, pool, 200, _key(5), workers=workers)
        b = rp.replay(hooked, pool, 200, _key(5), workers=workers)
        assert np.array_equal(a.epochs, b.epochs) and np.array_equal(a.best, b.best, equal_nan=True)


def _worst_first() -> hr.Rank:
    """Reversed ASHA ranking: the lowest value at the rung first (dead trials still last)."""

    def order(state, results, epochs, key):
        alive = sorted((tv for tv in results if tv[1] > -math.inf), key=lambda tv: (tv[1], tv[0]))
        return alive + [tv for tv in results if tv[1] == -math.inf], state

    return hr.Rank(lambda key: None, lambda state, told: state, order)


def test_a_rank_hook_changes_only_which_trial_is_promoted():
    pool = _pool(50, 9)
    plain = hv.asha(1, 9, 3, space=SPACE, candidates=pool.encs_PxE)  # rungs 1, 3, 9
    rev = hv.asha(1, 9, 3, space=SPACE, candidates=pool.encs_PxE, rank=_worst_first())
    s, r, jobs = plain.init(_key(0)), rev.init(_key(0)), []
    for t in range(3):
        (a, s), (b, r) = plain.ask(s, _key(t)), rev.ask(r, _key(t))
        assert (a.trial, a.epochs) == (b.trial, b.epochs) == (t, 1) and np.array_equal(a.enc, b.enc)
        jobs.append(a)
    told = [_done(jobs[0], 0.5), _done(jobs[1], 0.9), _done(jobs[2], 0.7)]
    s, r = plain.tell(s, told), rev.tell(r, told)
    # one promotion to 3 epochs in both: ASHA's best at the rung (trial 1), the hook's (trial 0)
    (a, s), (b, r) = plain.ask(s, _key(3)), rev.ask(r, _key(3))
    assert (a.trial, a.epochs) == (1, 3) and (b.trial, b.epochs) == (0, 3)
    # the next ask proposes the same new architecture in both (the hook draws no proposal keys)
    (a, s), (b, r) = plain.ask(s, _key(4)), rev.ask(r, _key(4))
    assert (a.trial, a.epochs) == (b.trial, b.epochs) == (3, 1) and np.array_equal(a.enc, b.enc)
    # a dead trial is never promoted, whatever the hook says
    s, r = plain.tell(s, [TrialResult(3, (0.2,), "failed")]), rev.tell(r, [TrialResult(3, (0.2,), "failed")])
    assert r.rung_results[0][-1] == (3, -math.inf)


@pytest.mark.slow
def test_predicted_final_ranks_a_rung_by_the_curve_posteriors_median_final():
    """The transferred ranking of a rung equals the stopping rule's point prediction (the
    median of its draws at the horizon) from each trial's prefix at the rung, under the
    rule's calibration; a completed run adapts the rule and the scores are recomposed."""
    from test_curves_calibration import hand_prior

    from nax.curves.inference import InferenceConfig
    from nax.curves.predict import predict
    from nax.curves.stopping import StopConfig, stop_rule

    H = 12
    pool = _pool(9, H)
    cfg = StopConfig(inference=InferenceConfig(num_samples=64, num_steps=60))
    rule = stop_rule(hand_prior(), H, cfg)
    rank = hr.predicted_final(rule)
    state = rank.init(_key(0))
    curves = [pool.curves_PxT[p] for p in range(4)]
    state = rank.tell(state, [(t, 4, TrialResult(t, tuple(c[:4]), "completed")) for t, c in enumerate(curves)])
    results = [(t, float(c[3])) for t, c in enumerate(curves)] + [(9, -math.inf)]
    key = _key(1)
    ranked, state = rank.order(state, results, 4, key)
    padded = np.full((4, H), np.nan)
    padded[:, :4] = np.stack(curves)[:, :4]
    seed = int(jax.random.randint(key, (), 0, 2**30))
    point = predict(rule.prior, padded, horizon=H, inference=cfg.inference, seed=seed).point
    assert [t for t, _ in ranked] == [*np.argsort(-point, kind="stable").tolist(), 9]
    assert dict(ranked) == dict(results)  # the values told stay the values at the rung
    assert np.allclose([state.scores[(t, 4)] for t in range(4)], point)
    # a completed run adapts the rule: its calibration moves, the predictions are kept, re-scored
    done = TrialResult(8, tuple(pool.curves_PxT[8]), "completed")
    after = rank.tell(state, [(8, H, done)])
    assert after.completed == 1 and after.scores == {} and after.fitted == state.fitted
    again, after = rank.order(after, results, 4, _key(2))
    assert len(again) == 5 and again[-1] == (9, -math.inf) and set(after.scores) == set(state.scores)


@pytest.mark.slow
def test_the_experiments_asha_variants_build_and_run_through_the_driver(tmp_path):
    """``asha_transfer`` (both transfers' hooks) and ``asha_selection`` (the characteristic
    model's proposals) as the acceleration experiment builds them, through ``run_target`` on a
    simulated curve table: without a characteristic model ``asha_selection`` is not built (it
    would be ``asha``); with one, its proposals are the model's."""
    import dataclasses

    from test_curves_calibration import hand_prior
    from test_experiment_acceleration import _module
    from test_search_support import EPOCHS, simulated_curve_csv

    from nax import characteristics as ch
    from nax import tables
    from nax.curves.inference import InferenceConfig
    from nax.curves.stopping import StopConfig
    from nax.search import evaluators, strategies

    _module()
    import acceleration_config as conf
    import acceleration_mf as amf
    import acceleration_run as runs

    path = simulated_curve_csv(tmp_path / "sim.csv", n_archs=30)
    ev = evaluators.CurveTableEvaluator(tables.load_curves(path), "beta")
    cands = ev.candidates()
    cfg = dataclasses.replace(conf.CONFIGS["mf_quick"], variants=("baseline", "asha_selection", "asha_transfer"))
    rule_cfg = StopConfig(inference=InferenceConfig(num_samples=32, num_steps=30))
    assert amf.wants(cfg, "freeze_thaw") and amf.seed_limits(dataclasses.replace(cfg, ft_seeds=2))["asha_transfer"] == 2
    builders = amf.mf_builders(cfg, ev.space, cands, EPOCHS, hand_prior(), None, rule_cfg)
    assert set(builders) == {"asha_transfer"}  # no characteristic model: no asha_selection
    st, rule = builders["asha_transfer"]()
    assert rule is None and st.init(_key(0)).rank is not None
    builders["baseline"] = lambda: (strategies.random(ev.space, batch=1, candidates=cands), None)
    budget, cap = 5 * EPOCHS, 10 * EPOCHS
    rows, _ = runs.run_target("beta", "sim", ev, builders, 1, budget, cap, np.linspace(0, cap, 11), lambda m: None)
    (mine,) = [r for r in rows if r["variant"] == "asha_transfer"]
    assert 0 < mine["epochs_to_target"] <= cap and mine["runs"] > mine["trials"] > mine["full_runs"] >= 1

    # a characteristic model (fitted on one meta-dataset set; the simulated cells are NB201 cells)
    model = ch.fit(tables.load_archs(conf.REPO / "nax" / "metadata" / "archs.csv"), ["mnist5k"], seed=0, space=ev.space)
    builders = amf.mf_builders(cfg, ev.space, cands, EPOCHS, hand_prior(), model, rule_cfg)
    assert set(builders) == {"asha_selection", "asha_transfer"}
    st, _ = builders["asha_selection"]()
    s = st.init(_key(0))
    assert s.rank is None and hasattr(s.trials.base, "posterior")  # the model's state proposes
