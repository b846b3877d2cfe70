"""What the search driver hands out: whole runs of a strategy, or jobs of a multi-fidelity one.

The one loop (:func:`nax.search.loop.iter_search`) asks a *scheduler* for tasks to start,
evaluates them, and tells it each result; the scheduler turns a strategy's asks and
tells into tasks. There are two:

- :class:`Batches` runs a :class:`nax.search.strategies.Strategy` (random search,
  regularized evolution, the transfer strategy): each ask gives a batch of
  architectures, each trained to the end (or stopped early by the stopping rule) in one
  task; the batch's runs are told together once all have finished, and the stopping
  rule learns from them. Tasks are taken in order (run order).
- :class:`Jobs` runs a :class:`nax.search.multifidelity.MFStrategy` (successive halving,
  Hyperband, ASHA, freeze-thaw, full runs): each ask gives one job, "train trial t
  until it has e epochs", for each free worker (``workers``); a job resumes the trial
  from the epochs it has, so it costs only the epochs it adds. Each result is told as
  it arrives (asynchronously on Ray: whichever job finishes first).

Budget: ``fits(committed, cost)`` says whether a task costing up to ``cost`` epochs may
start given the epochs ``committed`` by the tasks handed out in this ask before it (the
driver adds the epochs charged and those of the tasks in flight). A run is never cut to
fit: a task that does not fit is not started. A refused job ends the asking until the
jobs in flight have finished; asked once more then (ask is pure, so a refused job never
happened), a job that still does not fit ends the search.

Keys: ``init``, ``ask``, ``seed``, ``stop_init``, ``stop`` from one split of the search
key. Batch ``b`` is asked with ``fold_in(ask, b)``, job ``j`` with ``fold_in(ask, j)``
(a refused or empty ask leaves ``j`` unchanged); run or trial ``r``'s seed comes from
``fold_in(seed, r)``; the stopping rule's update after batch ``b`` uses ``fold_in(stop, b)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from nax.curves.stopping import Finished, StopRule, run_check
from nax.search import journal as journal_lib
from nax.search.evaluators import RunResult
from nax.search.executors import Task
from nax.search.multifidelity import MFStrategy, TrialResult
from nax.search.strategies import Observation, Strategy

#: ``fits(committed, cost)``: may a task costing up to ``cost`` epochs start now
Fits = Callable[[float, float], bool]

# jitted: one dispatch per run instead of several (the same numbers; a simulated search
# on a table spends most of its time here otherwise)
_fold_in = jax.jit(jax.random.fold_in)
_seed = jax.jit(lambda key, run: jax.random.randint(jax.random.fold_in(key, run), (), 0, 2**31 - 1))


def run_seed(key: jax.Array, run: int) -> int:
    return int(_seed(key, run))


class Keys(NamedTuple):
    init: jax.Array
    ask: jax.Array
    seed: jax.Array
    stop_init: jax.Array
    stop: jax.Array

    @classmethod
    def of(cls, key: jax.Array) -> Keys:
        return cls(*jax.random.split(key, 5))


def finished(results: Sequence[RunResult]) -> list[Finished]:
    """What the stopping rule learns from a batch: the runs that ended with a curve
    (completed, or stopped by the rule; not failed or diverged)."""
    return [
        Finished(np.asarray(r.curve, np.float64), r.status == "completed")
        for r in results
        if r.status in ("completed", "stopped")
    ]


class Batches:
    """Whole runs of a :class:`Strategy`, a batch at a time, with the stopping rule."""

    ordered = True

    def __init__(self, strategy: Strategy, evaluator, keys: Keys, stop_rule: StopRule | None, max_runs: int | None):
        self.strategy, self.keys, self.stop_rule, self.max_runs = strategy, keys, stop_rule, max_runs
        self.max_epochs = evaluator.max_epochs
        self.state = strategy.init(keys.init, evaluator.space)
        self.rule_state = stop_rule.init(keys.stop_init) if stop_rule else None
        self.batch, self.next_run, self.size = 0, 0, 0
        self.told: list[tuple[Task, RunResult]] = []

    def _room(self) -> bool:
        return self.max_runs is None or self.next_run < self.max_runs

    def ask(self, fits: Fits, in_flight: int, best: float | None) -> list[Task]:
        if in_flight or not self._room() or not fits(0, self.max_epochs):
            return []
        encs, self.state = self.strategy.ask(self.state, _fold_in(self.keys.ask, self.batch))
        should_stop = run_check(self.stop_rule, self.rule_state, best) if self.stop_rule else None
        tasks = []
        # every run of a batch may train to the end: hand out only the whole runs that fit
        for enc in encs:
            if not self._room() or not fits(len(tasks) * self.max_epochs, self.max_epochs):
                break
            tasks.append(Task(self.next_run, enc, run_seed(self.keys.seed, self.next_run), should_stop))
            self.next_run += 1
        self.size, self.told = len(tasks), []
        return tasks

    def cost(self, task: Task) -> int:
        return self.max_epochs

    def start_event(self, task: Task, arch: str, dataset: str) -> dict:
        return {
            "event": "start",
            "run": task.run,
            "batch": self.batch,
            "arch": arch,
            "dataset": dataset,
            "seed": task.seed,
        }

    def group(self, task: Task) -> int:
        """What ``Run.batch`` records: the batch the run was handed out in."""
        return self.batch

    def ends_trial(self, result: RunResult) -> bool:
        return True

    def tell(self, task: Task, result: RunResult) -> None:
        self.told.append((task, result))
        if len(self.told) < self.size:
            return  # the batch is told together, once all its runs have ended
        results = [r for _, r in self.told]
        self.state = self.strategy.tell(self.state, [Observation(t.enc, r.value) for t, r in self.told])
        if self.stop_rule is not None:
            self.rule_state = self.stop_rule.update(
                self.rule_state, finished(results), _fold_in(self.keys.stop, self.batch)
            )
        self.batch += 1


class Jobs:
    """Jobs of a :class:`MFStrategy` for up to ``workers`` workers at once."""

    ordered = False

    def __init__(self, strategy: MFStrategy, evaluator, keys: Keys, workers: int, max_runs: int | None):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if not callable(getattr(evaluator, "evaluate_job", None)):
            raise ValueError(
                f"{type(evaluator).__name__} cannot pause and resume runs (no evaluate_job): "
                "a multi-fidelity strategy needs learning curves (a curve table or real training)"
            )
        self.strategy, self.keys, self.workers, self.max_runs = strategy, keys, workers, max_runs
        self.max_epochs = evaluator.max_epochs
        self.state: Any = strategy.init(keys.init, evaluator.space)
        self.n_jobs = 0
        self.have: dict[int, int] = {}  # trial -> epochs it will have once its jobs end
        self.blocked = False

    def ask(self, fits: Fits, in_flight: int, best: float | None) -> list[Task]:
        if in_flight == 0:
            self.blocked = False  # once more, now that nothing else is committed
        tasks: list[Task] = []
        committed = 0
        while not self.blocked and in_flight + len(tasks) < self.workers:
            job, state = self.strategy.ask(self.state, _fold_in(self.keys.ask, self.n_jobs))
            if job is None:
                self.state = state  # waits for a rung, or has nothing more to ask
                break
            start, epochs = self.have.get(job.trial, 0), int(job.epochs)
            if not start < epochs <= self.max_epochs:
                raise ValueError(
                    f"the strategy asked for trial {job.trial} to reach {epochs} epochs; it has {start} "
                    f"and a full run has {self.max_epochs}"
                )
            new = job.trial not in self.have
            if (new and self.max_runs is not None and len(self.have) >= self.max_runs) or not fits(
                committed, epochs - start
            ):
                self.blocked = True
                break
            self.state = state
            seed = run_seed(self.keys.seed, job.trial)
            tasks.append(Task(int(job.trial), np.asarray(job.enc), seed, None, self.n_jobs, start, epochs))
            self.have[job.trial] = epochs
            self.n_jobs += 1
            committed += epochs - start
        return tasks

    def cost(self, task: Task) -> int:
        return task.epochs - task.start

    def start_event(self, task: Task, arch: str, dataset: str) -> dict:
        return {
            "event": "job",
            "job": task.job,
            "run": task.run,
            "arch": arch,
            "dataset": dataset,
            "seed": task.seed,
            "start": task.start,
            "epochs": task.epochs,
        }

    def group(self, task: Task) -> int:
        return task.job

    def ends_trial(self, result: RunResult) -> bool:
        return result.status != "paused"

    def tell(self, task: Task, result: RunResult) -> None:
        ok = result.status in ("paused", "completed") and len(result.curve) >= task.epochs
        status = "completed" if ok else ("failed" if result.status in ("paused", "completed") else result.status)
        self.state = self.strategy.tell(self.state, [TrialResult(task.run, tuple(result.curve), status)])


# ---------------------------------------------------------------------------- journal
def check_replayed(evaluator, task: Task, was: dict | None) -> None:
    if was is None:
        return
    now = evaluator.space.to_string(task.enc)
    same = was["arch"] == now and (task.job is None or (was["start"], was["epochs"]) == (task.start, task.epochs))
    if not same:
        what = f"{now}" if task.job is None else f"{now} from {task.start} to {task.epochs} epochs"
        got = was["arch"] if task.job is None else f"{was['arch']} from {was['start']} to {was['epochs']} epochs"
        raise ValueError(
            f"journal {'run' if task.job is None else 'job'} {task.job if task.job is not None else task.run} "
            f"evaluated {got} but this search asks for {what}: the journal comes from another search"
        )


def discard(evaluator, journal, trials) -> None:
    """Delete the checkpoints of ``trials`` (journaled with the bytes freed, when any)."""
    drop = getattr(evaluator, "discard", None)
    if drop is None:
        return
    for t in sorted(trials):
        freed = drop(t)
        if freed and journal is not None:
            journal.append({"event": "discarded", "run": t, "bytes": int(freed)})


def hand_out(
    tasks, sched, evaluator, replay: journal_lib.Replay, journal, dataset: str, executor
) -> list[RunResult | None]:
    """Journal the tasks' start events and submit the ones a resumed journal has no result for."""
    done, todo = [], []
    for t in tasks:
        was = replay.jobs.get(t.job) if t.job is not None else replay.starts.get(t.run)
        check_replayed(evaluator, t, was)
        r = replay.job_results.get(t.job) if t.job is not None else replay.finished.get(t.run)
        done.append(r)
        if r is None:
            todo.append(t)
    # a job the journal handed out already (in flight at the kill) is not handed out again;
    # a whole run's start is rewritten, as it always was
    new = [t for t in todo if t.job is None or t.job not in replay.jobs]
    if journal is not None and new:
        now = time.time()
        journal.extend({**sched.start_event(t, evaluator.space.to_string(t.enc), dataset), "time": now} for t in new)
    if todo:
        executor.submit(evaluator, todo)
    return done


def result_events(task: Task, result: RunResult, dataset: str) -> list[dict]:
    """A finished run's or job's epoch lines and its result line."""
    first = len(result.curve) - len(result.epoch_metrics) + 1
    return [
        *(
            {"event": "epoch", "run": task.run, "arch": result.arch, "dataset": dataset, "epoch": e, "metrics": dict(m)}
            for e, m in enumerate(result.epoch_metrics, start=first if task.job is not None else 1)
        ),
        journal_lib.result_event(task.run, result, dataset, task.job, task.start),
        *([{"event": "checkpoint", "run": task.run, **result.checkpoint}] if result.checkpoint else []),
    ]
