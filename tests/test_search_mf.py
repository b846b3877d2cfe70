"""The one search driver running multi-fidelity strategies: jobs that pause and resume trials
on a curve table, the budget never exceeded, exact resume after a kill, bad input."""

from __future__ import annotations

import warnings

import jax
import numpy as np
import pytest
from test_search_support import EPOCHS, margin_rule, simulated_curve_csv

from nax import tables
from nax.search import halving, loop, strategies
from nax.search import journal as journal_lib
from nax.search import multifidelity as mf
from nax.search.evaluators import ArrayEvaluator, CurveTableEvaluator
from nax.search.executors import InProcessExecutor, run_task


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return tables.load_curves(simulated_curve_csv(tmp_path_factory.mktemp("tables") / "sim.csv"))


@pytest.fixture(scope="module")
def evaluator(table):
    return CurveTableEvaluator(table, "beta")


def _strategy(ev, name):
    kw = dict(space=ev.space, candidates=ev.candidates())
    if name == "hyperband":
        return halving.hyperband(1, EPOCHS, 2, **kw)
    if name == "asha":
        return halving.asha(1, EPOCHS, 2, **kw)
    return halving.successive_halving(8, 1, EPOCHS, 2, **kw)


def _jobs(outcome):
    r = outcome.runs
    return [(x.run, x.job, x.start, x.result.arch, x.result.status, x.result.curve, x.result.cost_epochs) for x in r]


def _search(ev, out, name="hyperband", *, budget=60, workers=1, replay=None, journal=None):
    if journal is None:
        journal = journal_lib.Journal.create(out / "journal.jsonl", {"strategy": name}, 0)
    try:
        return loop.run_search(
            _strategy(ev, name),
            ev,
            loop.Budget(epochs=budget),
            jax.random.key(0),
            journal=journal,
            replay=replay,
            workers=workers,
        )
    finally:
        journal.close()


@pytest.mark.parametrize("name,workers", [("hyperband", 1), ("asha", 3), ("halving", 2)])
def test_jobs_resume_trials_from_the_table_and_never_overshoot(evaluator, tmp_path, name, workers):
    budget = 57
    out = _search(evaluator, tmp_path, name, budget=budget, workers=workers)
    spent = 0
    have: dict[int, int] = {}
    for r in out.runs:
        row = evaluator._rows[r.result.arch][r.seed % len(evaluator._rows[r.result.arch])][0]
        assert r.start == have.get(r.run, 0)  # a job resumes its trial where its last job paused it
        n = len(r.result.curve)
        assert r.result.curve == tuple(float(v) for v in row[:n])  # the table's curve, sliced
        assert r.result.cost_epochs == n - r.start > 0  # charged only the epochs it added
        assert r.result.status == ("completed" if n == EPOCHS else "paused")
        have[r.run] = n
        spent += r.result.cost_epochs
    assert spent == out.epochs_spent <= budget
    assert budget - out.epochs_spent < EPOCHS  # it stopped because the next job did not fit
    assert any(r.start > 0 for r in out.runs) and any(r.result.status == "completed" for r in out.runs)
    # best: the best final accuracy of a trial that reached the full epochs, never a paused one
    finals = [r.result.curve[-1] for r in out.runs if len(r.result.curve) == EPOCHS]
    assert out.summary()["best_accuracy"] == max(finals)
    s = out.summary()
    assert s["jobs"] == len(out.runs) and s["runs"] == len(have) == s["runs_completed"] + s["runs_paused"]


def test_stream_is_an_anytime_trace(evaluator):
    steps = list(loop.iter_search(_strategy(evaluator, "asha"), evaluator, loop.Budget(epochs=80), jax.random.key(1)))
    epochs = [s.epochs for s in steps]
    assert epochs == sorted(epochs) and epochs[-1] <= 80
    best = [s.best for s in steps]
    first = next(i for i, b in enumerate(best) if b is not None)
    assert all(b is None for b in best[:first]) and steps[first].run.result.status == "completed"
    assert all(a <= b for a, b in zip(best[first:], best[first + 1 :]))
    # until ends the stream after the step it is true for
    cut = loop.run_search(
        _strategy(evaluator, "asha"),
        evaluator,
        loop.Budget(epochs=80),
        jax.random.key(1),
        until=lambda s: s.best is not None,
    )
    assert len(cut.runs) == first + 1


@pytest.mark.parametrize("name,workers", [pytest.param("hyperband", 1, marks=pytest.mark.slow), ("asha", 3)])
def test_resume_after_kill_continues_exactly(evaluator, tmp_path, name, workers):
    full = _search(evaluator, tmp_path / "full", name, workers=workers)
    data = (tmp_path / "full" / "journal.jsonl").read_bytes()
    ends = [i + 1 for i, c in enumerate(data) if c == ord("\n")]
    rng = np.random.default_rng(0)
    cuts = sorted(
        {ends[0], ends[-1], *rng.choice(ends, 5, replace=False).tolist(), int(rng.integers(ends[0], len(data)))}
    )
    for k, cut in enumerate(cuts):
        out = tmp_path / f"r{k}"
        out.mkdir()
        path = out / "journal.jsonl"
        path.write_bytes(data[:cut])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", journal_lib.JournalWarning)
            _, events = journal_lib.read(path)
        resumed = _search(
            evaluator,
            out,
            name,
            workers=workers,
            replay=loop.replay_from(events),
            journal=journal_lib.Journal.reopen(path),
        )
        assert _jobs(resumed) == _jobs(full), f"cut at byte {cut}"
        evs = journal_lib.read(path)[1]
        assert sorted(e["job"] for e in evs if e["event"] in ("paused", "end", "failed")) == list(range(len(full.runs)))


def test_journal_from_another_search_is_refused(evaluator, tmp_path):
    _search(evaluator, tmp_path / "a", "hyperband")
    events = journal_lib.read(tmp_path / "a" / "journal.jsonl")[1]
    j = journal_lib.Journal.create(tmp_path / "b" / "journal.jsonl", {}, 0)
    with pytest.raises(ValueError, match="the journal comes from another search"):
        _search(evaluator, tmp_path / "b", "asha", replay=loop.replay_from(events), journal=j)


def test_full_runs_as_jobs_match_the_strategy(evaluator):
    """Random search as a multi-fidelity strategy (every job a full run) finds what its
    runs' table rows say, charging full runs only."""
    base = strategies.random(evaluator.space, batch=1, candidates=evaluator.candidates())
    out = loop.run_search(mf.full_runs(EPOCHS, base=base), evaluator, loop.Budget(epochs=5 * EPOCHS), jax.random.key(2))
    assert [r.result.cost_epochs for r in out.runs] == [EPOCHS] * 5
    assert all(r.result.status == "completed" and r.start == 0 for r in out.runs)


def test_bad_input(evaluator, table):
    hb = _strategy(evaluator, "hyperband")
    with pytest.raises(ValueError, match="early stopping is for whole runs"):
        list(loop.iter_search(hb, evaluator, loop.Budget(epochs=40), jax.random.key(0), stop_rule=margin_rule()))
    arrays = ArrayEvaluator(evaluator.candidates(), np.arange(len(evaluator.candidates())), evaluator.space)
    with pytest.raises(ValueError, match="cannot pause and resume runs"):
        list(loop.iter_search(hb, arrays, loop.Budget(epochs=40), jax.random.key(0)))
    with pytest.raises(ValueError, match="workers must be >= 1"):
        list(loop.iter_search(hb, evaluator, loop.Budget(epochs=40), jax.random.key(0), workers=0))


def test_short_curve_fails_the_job(evaluator):
    enc = evaluator.candidates()[0]
    r = evaluator.evaluate_job(enc, 0, trial=0, start=2, epochs=EPOCHS + 3)
    assert r.status == "failed" and "has 8 epochs" in r.error and r.cost_epochs == EPOCHS - 2
    p = evaluator.evaluate_job(enc, 0, trial=0, start=2, epochs=5)
    assert p.status == "paused" and p.final is None and len(p.curve) == 5 and len(p.epoch_metrics) == 3
    c = evaluator.evaluate_job(enc, 0, trial=0, start=5, epochs=EPOCHS)
    assert c.status == "completed" and c.final == c.curve[-1] == evaluator.evaluate(enc, 0).final


class _LastFirst(InProcessExecutor):
    """Jobs finish in the reverse of the order they were submitted (workers of unequal
    speed): the asynchronous order the driver must follow, tell and journal. Ray's real
    completion order is tested in test_search_ray.py (slow tier)."""

    def take(self, task=None):
        if task is None:
            evaluator, t = self._queue.pop()
            return t, run_task(evaluator, t)
        return super().take(task)


def test_asynchronous_completion_order_is_journaled_and_resumed(evaluator, tmp_path):
    def search(out, executor, replay=None):
        path = out / "journal.jsonl"
        j = journal_lib.Journal.reopen(path) if replay else journal_lib.Journal.create(path, {}, 0)
        try:
            return loop.run_search(
                _strategy(evaluator, "asha"),
                evaluator,
                loop.Budget(epochs=50),
                jax.random.key(4),
                executor=executor,
                journal=j,
                replay=replay,
                workers=3,
            )
        finally:
            j.close()

    lifo = search(tmp_path, _LastFirst())
    fifo = loop.run_search(
        _strategy(evaluator, "asha"), evaluator, loop.Budget(epochs=50), jax.random.key(4), workers=3
    )
    assert _jobs(lifo) != _jobs(fifo)  # the order results arrive in is what ASHA decides on
    assert lifo.runs[0].job == 2 and lifo.runs[1].job == 3 and lifo.epochs_spent <= 50  # the latest first
    events = (tmp_path / "journal.jsonl").read_bytes().split(b"\n")
    for keep in (len(events) - 1, len(events) // 2):
        out = tmp_path / f"cut{keep}"
        out.mkdir()
        (out / "journal.jsonl").write_bytes(b"\n".join(events[:keep]) + b"\n")
        replay = loop.replay_from(journal_lib.read(out / "journal.jsonl")[1])
        again = search(out, InProcessExecutor(), replay)  # resumed in order of arrival, then first in first out
        n = len(replay.order)
        assert _jobs(again)[:n] == _jobs(lifo)[:n]
        if keep == len(events) - 1:
            assert _jobs(again) == _jobs(lifo)


class _DiscardSpy(CurveTableEvaluator):
    """The table evaluator with a checkpoint store: records jobs and deletions in order."""

    def __init__(self, table, dataset):
        super().__init__(table, dataset)
        self.events: list[tuple[str, int]] = []

    def evaluate_job(self, enc, seed, trial, start, epochs):
        self.events.append(("job", trial))
        return super().evaluate_job(enc, seed, trial, start, epochs)

    def discard(self, trial):
        self.events.append(("discard", trial))
        return 1


def test_halving_drops_the_checkpoints_of_trials_it_did_not_promote_at_once(table, tmp_path):
    ev = _DiscardSpy(table, "beta")
    out = _search(ev, tmp_path, "halving", budget=60)
    jobs = [t for kind, t in ev.events if kind == "job"]
    dropped = [i for i, (kind, _) in enumerate(ev.events) if kind == "discard"]
    for i in dropped:  # a deleted checkpoint is never asked for again
        assert ev.events[i][1] not in [t for kind, t in ev.events[i + 1 :] if kind == "job"]
    last_status = {r.run: r.result.status for r in out.runs}
    left_paused = {t for t, s in last_status.items() if s == "paused"}
    assert left_paused <= {ev.events[i][1] for i in dropped}  # nothing left on disk
    last_job = max(i for i, (kind, _) in enumerate(ev.events) if kind == "job")
    # the first rung's losers go when the rung is promoted, long before the search ends
    early = {ev.events[i][1] for i in dropped if i < last_job}
    assert len(early) >= 4 and len(set(jobs)) >= 8
