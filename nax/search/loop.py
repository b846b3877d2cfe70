"""The search driver: ask -> evaluate (with early stopping) -> tell -> journal, until the budget is spent.

    for step in iter_search(strategy, evaluator, Budget(epochs=240), key):   # the stream
        print(step.run.run, step.best, step.epochs)
    outcome = run_search(strategy, evaluator, Budget(epochs=240), key, until=lambda s: s.best > 0.9)

:func:`iter_search` yields one :class:`Step` per run as it finishes (replayed runs of a
resume included); :func:`run_search` consumes that stream into a :class:`SearchOutcome`
and ends early the first time ``until(step)`` is true. Progress displays, the acceleration
experiment and the characteristic benchmark's simulated searches all read this one stream.

Early stopping: ``stop_rule`` is the curves rule (:func:`nax.curves.stopping.stop_rule`):
each batch's runs get its per-run test (:func:`nax.curves.stopping.run_check`, against
the best completed run so far), and the runs that ended are told to it after the batch.

Everything random derives from one key: the strategy's asks use ``fold_in(k_ask, batch)``,
each run's seed ``fold_in(k_seed, run)``, the stopping rule ``fold_in(k_stop, batch)``.
Resuming replays the journal through the same code: each batch is asked again, runs the
journal finished are told from the journal instead of evaluated, and the first run
without a terminal event (the one in flight at the kill) is evaluated afresh. For
deterministic evaluators (tables) the resumed search is therefore exactly the
uninterrupted one.

Budget: ``epochs`` counts epochs charged by runs (a stopped run is charged what it
trained); ``minutes`` counts the seconds runs charge (wall time of training, or the
training time a table records), summed over parallel workers. The epoch budget is never
exceeded: a run is started only if a whole run (``evaluator.max_epochs``) fits into the
epochs left, counting the whole runs already handed out in its batch; a run that would
not fit is not started (it is not shortened: a cut run has no final accuracy to report),
so a search with early stopping may end with fewer than ``max_epochs`` epochs unspent.
A minutes budget cannot be known before a run ends: it is checked before each run, and
the runs started before it ran out finish.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import jax
import numpy as np

from nax.curves.stopping import Finished, StopRule, run_check
from nax.search import journal as journal_lib
from nax.search.evaluators import Evaluator, RunResult
from nax.search.executors import InProcessExecutor, Task
from nax.search.strategies import Observation, Strategy


def finished(results: Sequence[RunResult]) -> list[Finished]:
    """What the stopping rule learns from a batch: the runs that ended with a curve
    (completed, or stopped by the rule; not failed or diverged)."""
    return [
        Finished(np.asarray(r.curve, np.float64), r.status == "completed")
        for r in results
        if r.status in ("completed", "stopped")
    ]


@dataclasses.dataclass(frozen=True)
class Budget:
    """At most one of epochs (charged epochs) and minutes (charged seconds / 60)."""

    epochs: float | None = None
    minutes: float | None = None

    def __post_init__(self):
        if (self.epochs is None) == (self.minutes is None):
            raise ValueError("give exactly one budget: epochs or minutes")
        v = self.epochs if self.epochs is not None else self.minutes
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ValueError(f"the budget must be a positive number, got {v!r}")

    def spent(self, epochs: float, seconds: float) -> bool:
        """Nothing is left: no run may start."""
        return epochs >= self.epochs if self.epochs is not None else seconds >= 60.0 * self.minutes

    def fits(self, epochs: float, seconds: float, run_epochs: float) -> bool:
        """Whether a run costing up to ``run_epochs`` may start after spending ``epochs``
        and ``seconds``: it fits into the epochs left; any run while minutes are left."""
        if self.epochs is not None:
            return epochs + run_epochs <= self.epochs
        return seconds < 60.0 * self.minutes


@dataclasses.dataclass
class Run:
    """One run of the search: its id, batch, seed, encoding and result."""

    run: int
    batch: int
    seed: int
    enc: np.ndarray
    result: RunResult


@dataclasses.dataclass
class SearchOutcome:
    runs: list[Run]
    epochs_spent: int
    seconds_spent: float
    max_epochs: int
    dataset: str

    @property
    def best(self) -> Run | None:
        """The completed run with the highest final accuracy (ties: the earliest)."""
        done = [r for r in self.runs if r.result.status == "completed" and r.result.final is not None]
        return max(done, key=lambda r: (r.result.final, -r.run)) if done else None

    @property
    def epochs_saved(self) -> int:
        """Epochs early stopping saved: full training minus what stopped runs trained."""
        return int(sum(self.max_epochs - r.result.cost_epochs for r in self.runs if r.result.status == "stopped"))

    def summary(self) -> dict:
        best = self.best
        counts = {
            s: sum(r.result.status == s for r in self.runs) for s in ("completed", "stopped", "diverged", "failed")
        }
        return {
            "dataset": self.dataset,
            "best_arch": best.result.arch if best else None,
            "best_accuracy": best.result.final if best else None,
            "best_run": best.run if best else None,
            "epochs_spent": self.epochs_spent,
            "seconds_spent": self.seconds_spent,
            "epochs_saved_by_stopping": self.epochs_saved,
            "epochs_per_full_run": self.max_epochs,
            "runs": len(self.runs),
            **{f"runs_{k}": v for k, v in counts.items()},
        }


# ---------------------------------------------------------------------------- journal <-> runs
def _result_event(run: Run, dataset: str) -> dict:
    r = run.result
    kind = {"completed": "end", "stopped": "stopped"}.get(r.status, "failed")
    ev = {
        "event": kind,
        "run": run.run,
        "arch": r.arch,
        "dataset": dataset,
        "status": r.status,
        "epoch": len(r.curve),
        "metrics": {"val_acc": r.final if r.status == "completed" else (r.curve[-1] if r.curve else None)},
        "curve": list(r.curve),
        "final": r.final,
        "cost_epochs": r.cost_epochs,
        "cost_s": r.cost_s,
        "wall_s": r.wall_s,
    }
    if kind == "stopped":
        ev["predicted_final"] = r.predicted_final
    if kind == "failed":
        ev["error"] = r.error
    return ev


def _result_from_event(ev: dict) -> RunResult:
    return RunResult(
        ev["arch"],
        ev["status"],
        tuple(float(v) for v in ev["curve"]),
        ev.get("final"),
        ev.get("predicted_final"),
        int(ev["cost_epochs"]),
        float(ev["cost_s"]),
        float(ev.get("wall_s") or 0.0),
        ev.get("error"),
        tuple({"val_acc": float(v)} for v in ev["curve"]),
    )


class Replay(NamedTuple):
    """What a journal recorded: start events and finished results by run id."""

    starts: dict[int, dict]
    finished: dict[int, RunResult]


def replay_from(events: Sequence[dict]) -> Replay:
    starts, finished = {}, {}
    for ev in events:
        if ev["event"] == "start":
            starts[ev["run"]] = ev
        elif ev["event"] in ("end", "stopped", "failed"):
            finished[ev["run"]] = _result_from_event(ev)
    return Replay(starts, finished)


# ---------------------------------------------------------------------------- the loop
# jitted: one dispatch per run instead of several (the same numbers; a simulated search
# on a table spends most of its time here otherwise)
_fold_in = jax.jit(jax.random.fold_in)
_seed = jax.jit(lambda key, run: jax.random.randint(jax.random.fold_in(key, run), (), 0, 2**31 - 1))


def _run_seed(key: jax.Array, run: int) -> int:
    return int(_seed(key, run))


class Step(NamedTuple):
    """One element of the search's stream: a run that finished, and the search after it.

    ``best``: the best final accuracy of a completed run so far (None before the first);
    ``epochs``, ``seconds``: charged so far, this run included; ``replayed``: told from
    the journal of a resumed search rather than evaluated now.
    """

    run: Run
    best: float | None
    epochs: int
    seconds: float
    replayed: bool


def iter_search(
    strategy: Strategy,
    evaluator: Evaluator,
    budget: Budget,
    key: jax.Array,
    *,
    executor=None,
    journal: journal_lib.Journal | None = None,
    stop_rule: StopRule | None = None,
    replay: Replay | None = None,
    max_runs: int | None = None,
) -> Iterator[Step]:
    """The search as a stream: one :class:`Step` per run, in run order, as each finishes.

    Ends when ``budget`` is spent (see the module docstring), after ``max_runs`` runs (a
    table evaluator has nothing new to show once its every architecture has run), or when
    the consumer stops iterating: the runs of the batch in flight that were not yet
    yielded are then not evaluated (in process) or their results are dropped (Ray), and
    a resumed search evaluates them again. ``journal``: where new events go (already
    holding the header); ``replay``: runs a journal already holds (resume).
    """
    if budget.epochs is not None and budget.epochs < evaluator.max_epochs:
        raise ValueError(f"the budget ({budget.epochs:g} epochs) is less than one run ({evaluator.max_epochs} epochs)")
    executor = executor or InProcessExecutor()
    replay = replay or Replay({}, {})
    k_init, k_ask, k_seed, k_stop_init, k_stop = jax.random.split(key, 5)
    state = strategy.init(k_init, evaluator.space)
    rule_state = stop_rule.init(k_stop_init) if stop_rule else None
    epochs, seconds, best = 0, 0.0, None
    next_run, batch = 0, 0
    dataset = evaluator.dataset
    while (max_runs is None or next_run < max_runs) and budget.fits(epochs, seconds, evaluator.max_epochs):
        encs, state = strategy.ask(state, _fold_in(k_ask, batch))
        should_stop = run_check(stop_rule, rule_state, best) if stop_rule else None
        tasks = []
        # every run of a batch may train to the end: hand out only the whole runs that fit
        for enc in encs:
            if (max_runs is not None and next_run >= max_runs) or not budget.fits(
                epochs + len(tasks) * evaluator.max_epochs, seconds, evaluator.max_epochs
            ):
                break
            tasks.append(Task(next_run, enc, _run_seed(k_seed, next_run), should_stop))
            next_run += 1
        for t in tasks:
            if t.run in replay.starts:
                was = replay.starts[t.run]["arch"]
                if was != evaluator.space.to_string(t.enc):
                    raise ValueError(
                        f"journal run {t.run} evaluated {was} but this search asks for "
                        f"{evaluator.space.to_string(t.enc)}: the journal comes from another search"
                    )
        todo = [t for t in tasks if t.run not in replay.finished]
        if journal is not None and todo:
            journal.extend(
                {
                    "event": "start",
                    "run": t.run,
                    "batch": batch,
                    "arch": evaluator.space.to_string(t.enc),
                    "dataset": dataset,
                    "seed": t.seed,
                    "time": time.time(),
                }
                for t in todo
            )
        fresh = executor.map(evaluator, todo) if todo else iter(())
        batch_runs = []
        for t in tasks:
            new = t.run not in replay.finished
            result = next(fresh) if new else replay.finished[t.run]
            run = Run(t.run, batch, t.seed, np.asarray(t.enc), result)
            if new and journal is not None:
                journal.extend(
                    [
                        *(
                            {
                                "event": "epoch",
                                "run": t.run,
                                "arch": result.arch,
                                "dataset": dataset,
                                "epoch": e,
                                "metrics": dict(m),
                            }
                            for e, m in enumerate(result.epoch_metrics, start=1)
                        ),
                        _result_event(run, dataset),
                    ]
                )
            epochs += result.cost_epochs
            seconds += result.cost_s
            if result.status == "completed" and result.final is not None and (best is None or result.final > best):
                best = result.final
            batch_runs.append(run)
            yield Step(run, best, epochs, seconds, not new)
        state = strategy.tell(state, [Observation(r.enc, r.result.value) for r in batch_runs])
        if stop_rule is not None:
            rule_state = stop_rule.update(rule_state, finished([r.result for r in batch_runs]), _fold_in(k_stop, batch))
        batch += 1


def run_search(
    strategy: Strategy,
    evaluator: Evaluator,
    budget: Budget,
    key: jax.Array,
    *,
    stop_rule: StopRule | None = None,
    until: Callable[[Step], bool] | None = None,
    on_run: Callable[[Run, float | None, int], None] | None = None,
    executor=None,
    journal: journal_lib.Journal | None = None,
    replay: Replay | None = None,
    max_runs: int | None = None,
) -> SearchOutcome:
    """Search until ``budget`` is spent, or until ``until(step)`` is true after a run.

    Consumes :func:`iter_search` (same arguments). ``on_run(run, best_so_far,
    epochs_spent)`` is called for every run, replayed or new, in order (a progress
    display); ``until(step)`` ends the search after the run it is true for.
    """
    runs: list[Run] = []
    epochs, seconds = 0, 0.0
    stream = iter_search(
        strategy,
        evaluator,
        budget,
        key,
        executor=executor,
        journal=journal,
        stop_rule=stop_rule,
        replay=replay,
        max_runs=max_runs,
    )
    for step in stream:
        runs.append(step.run)
        epochs, seconds = step.epochs, step.seconds
        if on_run is not None:
            on_run(step.run, step.best, step.epochs)
        if until is not None and until(step):
            stream.close()
            break
    return SearchOutcome(runs, epochs, seconds, evaluator.max_epochs, evaluator.dataset)
