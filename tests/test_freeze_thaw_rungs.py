"""Freeze-thaw with jobs on the halving rungs (the fourth version, ``jobs="rungs"``): where
each job ends, the same bad-input errors as Hyperband / ASHA, and a synthetic pool with an
exact curve model (known truth)."""

from __future__ import annotations

import mf_replay as rp
import numpy as np
import pytest
from test_multifidelity import SPACE, _exact_model, _key, _pool

from nax.search import freeze_thaw as ft
from nax.search import halving as hv
from nax.search import multifidelity as mf
from nax.search.multifidelity import TrialResult


def test_job_ends_follow_the_halving_rungs():
    jobs = ft.Jobs.on_rungs(1, 52, 3)
    assert jobs.ladder == mf.rungs(1, 52, 3) == (2, 6, 17, 52)  # LCBench's ladder (NOTES §8)
    assert [jobs.end(e) for e in (0, 2, 6, 17)] == [2, 6, 17, 52]
    assert [jobs.end(e) for e in (1, 3, 16, 40, 51)] == [2, 6, 17, 52, 52]  # off the grid: the next rung up
    assert ft.Jobs.on_rungs(1, 12, 3).ladder == (1, 4, 12)
    fixed = ft.Jobs.every(13, 52)
    assert [fixed.end(e) for e in (0, 13, 26, 39, 45)] == [13, 26, 39, 52, 52]


@pytest.mark.parametrize("min_epochs, horizon, eta", [(1, 52, 1), (1, 52, 0.5), (60, 52, 3), (0, 52, 3)])
def test_bad_rungs_give_the_halving_strategies_errors(min_epochs, horizon, eta):
    with pytest.raises(ValueError) as halving_err:
        hv.asha(min_epochs, horizon, eta, space=SPACE)
    with pytest.raises(ValueError) as mine:
        ft.Jobs.on_rungs(min_epochs, horizon, eta)
    assert str(mine.value) == str(halving_err.value) and "\n" not in str(mine.value)


def test_from_models_jobs_options_fail_clearly():
    for kwargs, match in [
        (dict(jobs="bogus"), "must be 'delta' or 'rungs'"),
        (dict(jobs="rungs"), "needs min_epochs and eta"),
        (dict(jobs="rungs", min_epochs=1, eta=3, delta=13), "give no delta"),
        (dict(jobs="rungs", min_epochs=1, eta=3, ahead=object()), "does not apply to jobs='rungs'"),
        (dict(jobs="rungs", min_epochs=1, eta=1), "eta must be a number > 1"),
        (dict(jobs="rungs", min_epochs=60, eta=3), r"min_epochs \(60\) must not exceed max_epochs \(52\)"),
        (dict(min_epochs=1, eta=3), "with jobs='delta' give delta"),
    ]:
        with pytest.raises(ValueError, match=match):
            ft.from_models(None, None, SPACE, 52, **kwargs)
    pool = _pool(4, 12)
    with pytest.raises(ValueError, match="either as delta"):
        ft.strategy(_exact_model(pool), 12, delta=3, jobs=ft.Jobs.on_rungs(1, 12, 3), space=SPACE)
    with pytest.raises(ValueError, match="horizon of 52 epochs, the search's is 12"):
        ft.strategy(_exact_model(pool), 12, jobs=ft.Jobs.on_rungs(1, 52, 3), space=SPACE)


def test_decide_charges_each_option_its_job_to_the_next_rung():
    jobs = ft.Jobs.on_rungs(1, 52, 3)
    d = ft.decide(_key(0), [0.4, 0.4, 0.4], [2, 6, 17], [0.1], horizon=52, jobs=jobs)
    assert np.allclose(d.scores_paused, [0.4 / 4, 0.4 / 11, 0.4 / 35])
    assert np.allclose(d.scores_new, [0.1 / 2])
    assert (d.action, d.index, d.epochs) == ("continue", 0, 4)
    d = ft.decide(_key(0), [0.4, 0.4, 0.4], [2, 6, 17], [0.3], horizon=52, jobs=jobs)
    assert (d.action, d.epochs) == ("new", 2)  # 0.3 / 2 beats 0.4 / 4
    # the fixed-Δ default is the same decision with Jobs.every
    a = ft.decide(_key(1), [0.1, 0.3], [3, 9], [0.2], horizon=12, delta=3)
    b = ft.decide(_key(1), [0.1, 0.3], [3, 9], [0.2], horizon=12, jobs=ft.Jobs.every(3, 12))
    assert a[:4] == b[:4]


def _drive(st, pool, budget, key):
    """Ask/tell to ``budget`` epochs, returning (every job's (had, end), the final state)."""
    s, jobs, spent = st.init(key), [], 0
    for k in range(10_000):
        job, s2 = st.ask(s, _key(100 + k))
        if job is None:
            break
        had = len(s.curves[job.trial]) if job.trial < len(s.curves) else 0
        spent += job.epochs - had
        if spent > budget:
            break
        jobs.append((had, job.epochs))
        s = st.tell(s2, [TrialResult(job.trial, tuple(pool.curve(job.enc)[: job.epochs]), "completed")])
    return jobs, s


def test_rungs_jobs_end_on_rungs_and_explore_cheaper_than_fixed_delta_with_an_exact_model():
    """30 synthetic configurations x 52 epochs (LCBench's shape), B = 9 runs: with jobs on
    the rungs 2, 6, 17, 52 every job starts and ends on the ladder, a trial started costs
    fewer epochs on average than with jobs of Δ = 13, more trials are tried, and the best
    final is found (the curves' ranks never cross, the model is exact)."""
    pool = _pool(30, 52)
    budget = 9 * 52
    rungs = ft.strategy(_exact_model(pool), 52, jobs=ft.Jobs.on_rungs(1, 52, 3), space=SPACE, candidates=pool.encs_PxE)
    fixed = ft.strategy(_exact_model(pool), 52, delta=ft.default_delta(52), space=SPACE, candidates=pool.encs_PxE)
    jobs, s = _drive(rungs, pool, budget, _key(0))
    ladder = {0, 2, 6, 17, 52}
    assert all(had in ladder and end in ladder and end > had for had, end in jobs)
    assert {end for had, end in jobs if had == 0} == {2}
    tr, td = rp.replay(rungs, pool, budget, _key(0)), rp.replay(fixed, pool, budget, _key(0))
    assert tr.charged <= budget and td.charged <= budget
    assert tr.charged / tr.trials < td.charged / td.trials
    assert tr.trials > td.trials
    assert tr.best[-1] == pool.curves_PxT[:, -1].max()
