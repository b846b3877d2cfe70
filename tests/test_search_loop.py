"""The run loop: determinism, exact resume after a kill at any point, budgets, faults."""

from __future__ import annotations

import json
import warnings

import jax
import numpy as np
import pytest
from test_search_support import EPOCHS, margin_rule, simulated_curve_csv

from nax import tables
from nax.search import journal as journal_lib
from nax.search import loop, strategies
from nax.search.config import SearchConfig, build, execute
from nax.search.evaluators import CurveTableEvaluator


@pytest.fixture(scope="module")
def curve_csv(tmp_path_factory):
    return simulated_curve_csv(tmp_path_factory.mktemp("tables") / "sim.csv")


@pytest.fixture(scope="module")
def evaluator(curve_csv):
    return CurveTableEvaluator(tables.load_curves(curve_csv), "beta")


def _run(evaluator, out, *, strategy="evolution", budget=24 * EPOCHS, replay=None, journal=None, seed=3, batch=1):
    strat = (
        strategies.evolution(evaluator.space, population=5, sample=3, batch=batch, candidates=evaluator.candidates())
        if strategy == "evolution"
        else strategies.random(evaluator.space, batch=batch, candidates=evaluator.candidates())
    )
    if journal is None:
        journal = journal_lib.Journal.create(out / "journal.jsonl", {"strategy": strategy, "batch": batch}, seed)
    try:
        return loop.run_search(
            strat,
            evaluator,
            loop.Budget(epochs=budget),
            jax.random.key(seed),
            journal=journal,
            stop_rule=margin_rule(),
            replay=replay,
        )
    finally:
        journal.close()


def _events(path):
    return journal_lib.read(path)[1]


def _runs(outcome):
    return [
        (
            r.run,
            r.result.arch,
            r.result.status,
            r.result.curve,
            r.result.final,
            r.result.predicted_final,
            r.result.cost_epochs,
        )
        for r in outcome.runs
    ]


@pytest.mark.slow
def test_same_seed_same_journal(evaluator, tmp_path):
    a = _run(evaluator, tmp_path / "a")
    _run(evaluator, tmp_path / "b")
    ja, jb = _events(tmp_path / "a" / "journal.jsonl"), _events(tmp_path / "b" / "journal.jsonl")
    assert journal_lib.strip_clock(ja) == journal_lib.strip_clock(jb)
    # the search really used early stopping and spent its budget
    assert a.summary()["runs_stopped"] > 0 and a.epochs_saved > 0
    assert 23 * EPOCHS < a.epochs_spent <= 24 * EPOCHS
    c = _run(evaluator, tmp_path / "c", seed=4)
    assert _runs(c) != _runs(a)


def _resume(evaluator, cut_bytes, out, **kw):
    out.mkdir()
    path = out / "journal.jsonl"
    path.write_bytes(cut_bytes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", journal_lib.JournalWarning)
        _, events = journal_lib.read(path)
    journal = journal_lib.Journal.reopen(path)
    return _run(evaluator, out, replay=loop.replay_from(events), journal=journal, **kw)


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 3])
def test_resume_after_kill_at_any_point_continues_exactly(evaluator, tmp_path, batch):
    full = _run(evaluator, tmp_path / "full", batch=batch, budget=10 * EPOCHS)
    data = (tmp_path / "full" / "journal.jsonl").read_bytes()
    ends = [i + 1 for i, c in enumerate(data) if c == ord("\n")]
    # kills after the header, after a start line, inside a run's epochs, after an end
    # line, at the very end, and torn writes in the middle of lines
    rng = np.random.default_rng(batch)
    cuts = {
        ends[0],
        ends[1],
        ends[-1],
        *rng.choice(ends, 8, replace=False).tolist(),
        *(int(x) for x in rng.integers(ends[0] + 1, len(data), 5)),
    }
    for k, cut in enumerate(sorted(cuts)):
        resumed = _resume(evaluator, data[:cut], tmp_path / f"r{k}", batch=batch, budget=10 * EPOCHS)
        assert _runs(resumed) == _runs(full), f"cut at byte {cut}"
        # the resumed journal now holds every finished run exactly once
        evs = _events(tmp_path / f"r{k}" / "journal.jsonl")
        done = [e["run"] for e in evs if e["event"] in ("end", "stopped", "failed")]
        assert sorted(done) == list(range(len(full.runs)))


def test_truncated_last_line_is_skipped_with_warning(tmp_path):
    path = tmp_path / "journal.jsonl"
    j = journal_lib.Journal.create(path, {"a": 1}, 0)
    j.append({"event": "start", "run": 0, "seed": 0, "arch": "x"})
    j.close()
    path.write_bytes(path.read_bytes() + b'{"event":"end","ru')
    with pytest.warns(journal_lib.JournalWarning, match="incomplete"):
        head, events = journal_lib.read(path)
    assert head["config"] == {"a": 1} and [e["event"] for e in events] == ["start"]
    journal_lib.Journal.reopen(path).close()  # cuts the torn line before appending
    assert path.read_bytes().endswith(b'"arch":"x"}\n')


def test_corrupt_line_is_a_clear_error(tmp_path):
    path = tmp_path / "journal.jsonl"
    j = journal_lib.Journal.create(path, {"a": 1}, 0)
    j.append({"event": "start", "run": 0, "arch": "x", "seed": 0})
    j.append({"event": "start", "run": 1, "arch": "y", "seed": 0})
    j.close()
    lines = path.read_bytes().split(b"\n")
    lines[1] = b'{"event": "start", "run": 0 GARBAGE'
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(ValueError, match=r"journal.jsonl:2: corrupt journal line"):
        journal_lib.read(path)
    lines[1] = b'{"event": "launch", "run": 0}'
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(ValueError, match=r":2: corrupt journal line: event 'launch'"):
        journal_lib.read(path)
    lines[1] = b'{"event": "start", "run": 0, "seed": 0}'
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(ValueError, match=r":2: corrupt journal line: start event lacks \['arch'\]"):
        journal_lib.read(path)


def test_header_mismatch_is_refused(tmp_path):
    path = tmp_path / "journal.jsonl"
    journal_lib.Journal.create(path, {"dataset": "beta", "batch": 1, "executor": "local"}, 0).close()
    head, _ = journal_lib.read(path)
    journal_lib.check_header(head, {"dataset": "beta", "batch": 1, "executor": "ray"}, 0, ignore=("executor",))
    with pytest.raises(ValueError, match=r"batch: journal 1, now 2"):
        journal_lib.check_header(head, {"dataset": "beta", "batch": 2, "executor": "local"}, 0)
    with pytest.raises(ValueError, match=r"seed: journal 0, now 1"):
        journal_lib.check_header(head, {"dataset": "beta", "batch": 1, "executor": "local"}, 1)
    head = {**head, "nax_version": "0.0.1"}
    with pytest.raises(ValueError, match=r"written by nax 0.0.1"):
        journal_lib.check_header(head, {"dataset": "beta", "batch": 1, "executor": "local"}, 0)


def _strategy(evaluator, batch=1):
    return strategies.evolution(evaluator.space, population=5, sample=3, batch=batch, candidates=evaluator.candidates())


@pytest.mark.parametrize("batch", [1, 3])
def test_the_epoch_budget_is_never_exceeded(evaluator, batch):
    """A run starts only if a whole run fits into what is left (with the whole runs handed out
    in its batch): stopped runs leave the spend off the run grid, and the search ends with
    less than one run left rather than overshoot."""
    budget = 20 * EPOCHS + 5
    out = loop.run_search(
        _strategy(evaluator, batch), evaluator, loop.Budget(epochs=budget), jax.random.key(0), stop_rule=margin_rule()
    )
    assert out.summary()["runs_stopped"] > 0
    assert budget - EPOCHS < out.epochs_spent <= budget
    assert out.epochs_spent == sum(r.result.cost_epochs for r in out.runs)
    # without stopping every run costs EPOCHS: the 21st would end at 168 > 165, so it is not started
    plain = loop.run_search(_strategy(evaluator, batch), evaluator, loop.Budget(epochs=budget), jax.random.key(0))
    assert len(plain.runs) == 20 and plain.epochs_spent == 20 * EPOCHS
    with pytest.raises(ValueError, match=r"budget \(5 epochs\) is less than one run \(8 epochs\)"):
        loop.run_search(_strategy(evaluator), evaluator, loop.Budget(epochs=5), jax.random.key(0))


def test_the_stream_is_the_search_and_until_ends_it(evaluator):
    """``iter_search`` yields the runs ``run_search`` returns, with the running totals; ``until``
    ends the search after the first run it holds for, leaving a prefix of the full search."""
    budget, key = loop.Budget(epochs=15 * EPOCHS), jax.random.key(5)
    full = loop.run_search(_strategy(evaluator), evaluator, budget, key, stop_rule=margin_rule())
    steps = list(loop.iter_search(_strategy(evaluator), evaluator, budget, key, stop_rule=margin_rule()))
    assert _runs(loop.SearchOutcome([s.run for s in steps], 0, 0.0, EPOCHS, "beta")) == _runs(full)
    assert not any(s.replayed for s in steps)
    assert [s.epochs for s in steps] == np.cumsum([r.result.cost_epochs for r in full.runs]).tolist()
    finals = [r.result.final if r.result.status == "completed" else -1.0 for r in full.runs]
    assert [s.best for s in steps][-1] == max(finals) and steps[-1].epochs == full.epochs_spent
    target = sorted(f for f in finals if f > 0)[-2]  # the second-best final: reached before the end
    seen = []
    short = loop.run_search(
        _strategy(evaluator),
        evaluator,
        budget,
        key,
        stop_rule=margin_rule(),
        until=lambda s: s.best is not None and s.best >= target,
        on_run=lambda run, best, spent: seen.append(spent),
    )
    first = next(i for i, s in enumerate(steps) if s.best is not None and s.best >= target)
    assert _runs(short) == _runs(full)[: first + 1] and short.epochs_spent == steps[first].epochs
    assert seen == [s.epochs for s in steps[: first + 1]] and len(short.runs) < len(full.runs)


def test_budget_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        loop.Budget(epochs=0)
    with pytest.raises(ValueError, match="budget-epochs must be positive"):
        SearchConfig(dataset="beta", budget_epochs=0)
    with pytest.raises(ValueError, match="budget-minutes must be positive"):
        SearchConfig(dataset="beta", budget_minutes=-1)
    with pytest.raises(ValueError, match="exactly one budget"):
        loop.Budget()


def test_unknown_strategy_and_dataset(curve_csv):
    with pytest.raises(ValueError, match="unknown strategy 'hill'; accepted: transfer, evolution, random"):
        SearchConfig(dataset="beta", strategy="hill")
    cfg = SearchConfig(
        dataset="delta", strategy="random", evaluator="table", tables=(str(curve_csv),), early_stop=False
    )
    with pytest.raises(ValueError, match="unknown dataset 'delta'.*available: alpha, beta, gamma"):
        build(cfg)
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        build(SearchConfig(dataset="nope", strategy="random", early_stop=False))


def test_a_run_that_raises_is_failed_and_the_search_goes_on(evaluator, tmp_path):
    # the pool holds one architecture the table lacks: evaluating it raises inside the evaluator
    space = evaluator.space
    cands = evaluator.candidates()
    missing = next(e for e in space.enumerate()[::97] if space.index(e) not in set(space.index(cands).tolist()))
    pool = np.concatenate([missing[None], cands])
    strat = strategies.random(space, candidates=pool)
    budget = loop.Budget(epochs=(len(cands) + 1) * EPOCHS)  # enough to ask for every pool member
    j = journal_lib.Journal.create(tmp_path / "journal.jsonl", {}, 0)
    out = loop.run_search(strat, evaluator, budget, jax.random.key(0), journal=j)
    j.close()
    failed = [r for r in out.runs if r.result.status == "failed"]
    assert len(failed) == 1 and failed[0].result.arch == space.to_string(missing)
    assert "KeyError" in failed[0].result.error and "has no curve" in failed[0].result.error
    assert failed[0].result.value is None
    # the search went on: every other pool member was evaluated, and more runs followed the failure
    assert {r.result.arch for r in out.runs if r.result.status == "completed"} == {space.to_string(c) for c in cands}
    assert out.runs[-1].result.status == "completed" and out.runs.index(failed[0]) < len(out.runs) - 1
    ev = [e for e in _events(tmp_path / "journal.jsonl") if e["event"] == "failed"]
    assert len(ev) == 1 and ev[0]["arch"] == space.to_string(missing) and "KeyError" in ev[0]["error"]


def test_execute_writes_outputs_and_refuses_a_changed_config(curve_csv, tmp_path):
    cfg = SearchConfig(
        dataset="beta",
        strategy="evolution",
        evaluator="table",
        tables=(str(curve_csv),),
        early_stop=False,
        budget_epochs=6 * EPOCHS,
        population=3,
        sample=2,
    )
    logs = []
    summary = execute(cfg, tmp_path, log=logs.append)
    assert summary["runs"] == 6 and summary["epochs_spent"] == 6 * EPOCHS
    assert summary["best_accuracy"] == round(
        max(
            json.loads(l)["final"]
            for l in (tmp_path / "journal.jsonl").read_text().splitlines()[1:]
            if json.loads(l)["event"] == "end"
        ),
        summary["accuracy_decimals"],
    )
    assert {p.name for p in tmp_path.iterdir()} >= {"journal.jsonl", "summary.json", "curves.png", "progress.png"}
    assert sum(l.startswith("run ") for l in logs) == 6 and "best" in logs[-1]
    with pytest.raises(ValueError, match="already holds a search"):
        execute(cfg, tmp_path, log=logs.append)
    other = SearchConfig(**{**cfg.__dict__, "population": 4})
    with pytest.raises(ValueError, match=r"population: journal 3, now 4"):
        execute(other, tmp_path, resume=True, log=logs.append)
    # resuming a finished search replays it and evaluates nothing new
    again = execute(cfg, tmp_path, resume=True, log=logs.append)
    assert again["best_arch"] == summary["best_arch"] and again["epochs_spent"] == summary["epochs_spent"]


def test_a_table_search_ends_when_every_architecture_has_run(curve_csv, tmp_path):
    cfg = SearchConfig(
        dataset="alpha",
        strategy="random",
        evaluator="table",
        tables=(str(curve_csv),),
        early_stop=False,
        budget_minutes=10**6,
    )
    summary = execute(cfg, tmp_path, log=lambda m: None)
    n_archs = len(CurveTableEvaluator(tables.load_curves(curve_csv), "alpha").candidates())
    assert summary["runs"] == n_archs and summary["epochs_spent"] == n_archs * EPOCHS
