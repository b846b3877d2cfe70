"""The one search driver: ask -> evaluate (with early stopping) -> tell -> journal, until the budget is spent.

    for step in iter_search(strategy, evaluator, Budget(epochs=240), key):   # the stream
        print(step.run.run, step.best, step.epochs)
    outcome = run_search(strategy, evaluator, Budget(epochs=240), key, until=lambda s: s.best > 0.9)

:func:`iter_search` yields one :class:`Step` per run as it finishes (replayed runs of a
resume included); :func:`run_search` consumes that stream into a :class:`SearchOutcome`
and ends early the first time ``until(step)`` is true. Progress displays, the acceleration
experiment and the characteristic benchmark's simulated searches all read this one stream.

Two kinds of strategy run through the same loop (:mod:`nax.search.jobs` turns each into
tasks): a :class:`nax.search.strategies.Strategy` gives whole runs, a batch at a time;
a multi-fidelity :class:`nax.search.multifidelity.MFStrategy` (Hyperband, ASHA,
freeze-thaw) gives *jobs*, "train trial t until it has e epochs", one per free worker
(``workers``), which pause a trial and resume it later from the epochs it has: a job is
charged only the epochs it adds, and its step's ``run.result`` holds the trial's whole
curve so far (status ``"paused"`` below a full run). ``best`` counts a trial only once it
completed a full run, so a step stream is the anytime trace (best accuracy vs epochs
spent) of either kind::

    strat = halving.hyperband(1, 12, 3, space=ev.space, candidates=ev.candidates())
    trace = [(s.epochs, s.best) for s in iter_search(strat, ev, Budget(epochs=300), key)]

Early stopping: ``stop_rule`` is the curves rule (:func:`nax.curves.stopping.stop_rule`):
each batch's runs get its per-run test (:func:`nax.curves.stopping.run_check`, against
the best completed run so far), and the runs that ended are told to it after the batch.

Everything random derives from one key: the strategy's asks use ``fold_in(k_ask, batch)``
(a job: ``fold_in(k_ask, job)``), each run's seed ``fold_in(k_seed, run)``, the stopping
rule ``fold_in(k_stop, batch)``. Resuming replays the journal through the same code: each
batch (job) is asked again, runs (jobs) the journal finished are told from the journal
instead of evaluated, in the order the journal recorded them (so an asynchronous search
on Ray resumes exactly too), and those without a terminal event (in flight at the kill)
are evaluated afresh (a training job resumes from its trial's last checkpoint). For
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
the runs started before it ran out finish. A job is charged the epochs it adds to its
trial, and is started only if they fit beside the jobs in flight (see :mod:`nax.search.jobs`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Iterator
from typing import NamedTuple

import jax
import numpy as np

from nax.curves.stopping import StopRule
from nax.search import jobs as jobs_lib
from nax.search import journal as journal_lib
from nax.search.evaluators import Evaluator, RunResult
from nax.search.executors import InProcessExecutor, Task
from nax.search.jobs import finished
from nax.search.multifidelity import MFStrategy
from nax.search.strategies import Strategy

__all__ = ["Budget", "Replay", "Run", "SearchOutcome", "Step", "finished", "iter_search", "replay_from", "run_search"]


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
    """One run of the search: its id, batch, seed, encoding and result.

    A job of a multi-fidelity search: ``run`` is its trial, ``job`` its number (also in
    ``batch``), ``start`` the epochs the trial had before it; ``result`` holds the
    trial's whole curve so far and charges the job's epochs only."""

    run: int
    batch: int
    seed: int
    enc: np.ndarray
    result: RunResult
    job: int | None = None
    start: int = 0


@dataclasses.dataclass
class SearchOutcome:
    runs: list[Run]
    epochs_spent: int
    seconds_spent: float
    max_epochs: int
    dataset: str
    #: the most bytes paused trials' checkpoints held at once (multi-fidelity training)
    checkpoint_bytes_peak: int = 0

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
        jobs = [r for r in self.runs if r.job is not None]
        # a multi-fidelity search: a trial's state is its last job's (paused, completed, failed)
        last = list({r.run: r for r in self.runs}.values()) if jobs else self.runs
        statuses = ("completed", "stopped", "diverged", "failed") + (("paused",) if jobs else ())
        counts = {s: sum(r.result.status == s for r in last) for s in statuses}
        extra = {"jobs": len(jobs), "checkpoint_bytes_peak": self.checkpoint_bytes_peak} if jobs else {}
        return {
            "dataset": self.dataset,
            "best_arch": best.result.arch if best else None,
            "best_accuracy": best.result.final if best else None,
            "best_run": best.run if best else None,
            "epochs_spent": self.epochs_spent,
            "seconds_spent": self.seconds_spent,
            "epochs_saved_by_stopping": self.epochs_saved,
            "epochs_per_full_run": self.max_epochs,
            "runs": len(last),
            **{f"runs_{k}": v for k, v in counts.items()},
            **extra,
        }


# ---------------------------------------------------------------------------- the loop
#: the journal's view of results (moved to nax.search.journal; kept here for callers)
Replay = journal_lib.Replay
replay_from = journal_lib.replay_from


class Step(NamedTuple):
    """One element of the search's stream: a run (or a multi-fidelity job) that finished,
    and the search after it.

    ``best``: the best final accuracy of a completed run so far (None before the first;
    a multi-fidelity trial counts once it completed a full run); ``epochs``, ``seconds``:
    charged so far by finished runs or jobs, this one included; ``replayed``: told from
    the journal of a resumed search rather than evaluated now; ``disk``: bytes the
    paused trials' checkpoints hold after it (evaluators that keep checkpoints).
    """

    run: Run
    best: float | None
    epochs: int
    seconds: float
    replayed: bool
    disk: int = 0


class _Pending(NamedTuple):
    task: Task
    cost: int  # epochs it may charge at most
    replayed: RunResult | None  # its result in the journal of a resumed search


def iter_search(
    strategy: Strategy | MFStrategy,
    evaluator: Evaluator,
    budget: Budget,
    key: jax.Array,
    *,
    executor=None,
    journal: journal_lib.Journal | None = None,
    stop_rule: StopRule | None = None,
    replay: Replay | None = None,
    max_runs: int | None = None,
    workers: int = 1,
) -> Iterator[Step]:
    """The search as a stream: one :class:`Step` per run or job, as each finishes.

    ``strategy``: a :class:`Strategy` (whole runs, a batch at a time, with ``stop_rule``)
    or an :class:`nax.search.multifidelity.MFStrategy` (jobs that pause and resume trials,
    up to ``workers`` at once; the evaluator needs ``evaluate_job``). Ends when ``budget``
    is spent (see the module docstring), after ``max_runs`` runs or trials (a table
    evaluator has nothing new to show once its every architecture has run), when the
    strategy has nothing more to ask, or when the consumer stops iterating: the runs in
    flight that were not yet yielded are then not evaluated (in process) or their
    results are dropped (Ray), and a resumed search evaluates them again. ``journal``:
    where new events go (already holding the header); ``replay``: what a journal
    already holds (resume).
    """
    multi = isinstance(strategy, MFStrategy)
    if stop_rule is not None and multi:
        raise ValueError("early stopping is for whole runs; a multi-fidelity strategy decides itself which to continue")
    if not multi and budget.epochs is not None and budget.epochs < evaluator.max_epochs:
        raise ValueError(f"the budget ({budget.epochs:g} epochs) is less than one run ({evaluator.max_epochs} epochs)")
    executor = executor or InProcessExecutor()
    replay = replay or Replay({}, {})
    keys = jobs_lib.Keys.of(key)
    sched = (
        jobs_lib.Jobs(strategy, evaluator, keys, workers, max_runs)
        if multi
        else jobs_lib.Batches(strategy, evaluator, keys, stop_rule, max_runs)
    )
    recorded = {j: n for n, j in enumerate(replay.order)}  # job -> position its result was told at
    epochs, seconds, best = 0, 0.0, None
    dataset = evaluator.dataset
    flight: list[_Pending] = []
    paused: set[int] = set()  # trials whose last job paused them
    disk_bytes, disk = getattr(evaluator, "disk_bytes", None), 0
    try:
        while True:
            held = epochs + sum(p.cost for p in flight)
            fits = functools.partial(_fits, budget, held, seconds)
            tasks = sched.ask(fits, len(flight), best)
            if tasks:
                fresh = jobs_lib.hand_out(tasks, sched, evaluator, replay, journal, dataset, executor)
                flight += [_Pending(t, sched.cost(t), done) for t, done in zip(tasks, fresh)]
            if not flight:
                # the search is over: no paused trial can resume
                jobs_lib.discard(evaluator, journal, paused)
                return
            # whole runs in run order; jobs as they finish (the journal's order first on resume)
            told = [i for i, p in enumerate(flight) if p.replayed is not None]
            if sched.ordered:
                i = 0
            elif told:
                i = min(told, key=lambda i: recorded[flight[i].task.job])
            else:
                i = None  # whichever job finishes first
            if i is not None:
                p = flight.pop(i)
                result = p.replayed if p.replayed is not None else executor.take(p.task)[1]
            else:
                t, result = executor.take(None)
                p = flight.pop(next(k for k, q in enumerate(flight) if q.task.key == t.key))
            task, new = p.task, p.replayed is None
            if new and journal is not None:
                journal.extend(jobs_lib.result_events(task, result, dataset))
            epochs += result.cost_epochs
            seconds += result.cost_s
            if result.status == "completed" and result.final is not None and (best is None or result.final > best):
                best = result.final
            run = Run(task.run, sched.group(task), task.seed, np.asarray(task.enc), result, task.job, task.start)
            (paused.add if result.status == "paused" else paused.discard)(task.run)
            if disk_bytes is not None and new and task.job is not None:
                disk = disk_bytes()
            yield Step(run, best, epochs, seconds, not new, disk)
            sched.tell(task, result)
            if task.job is not None:
                # checkpoints of trials that can no longer resume: ended, or (if the strategy
                # says which may) left behind by it
                keep = paused if strategy.resumable is None else paused & set(strategy.resumable(sched.state))
                gone = ({task.run} if sched.ends_trial(result) else set()) | (paused - keep)
                paused -= gone
                jobs_lib.discard(evaluator, journal, gone)
    finally:
        cancel = getattr(executor, "cancel", None)
        if cancel is not None:
            cancel()


def _fits(budget: Budget, held: float, seconds: float, more: float, cost: float) -> bool:
    """A task costing up to ``cost`` fits beside ``held`` epochs (charged or in flight) and
    ``more`` handed out before it in the same ask."""
    return budget.fits(held + more, seconds, cost)


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
    workers: int = 1,
) -> SearchOutcome:
    """Search until ``budget`` is spent, or until ``until(step)`` is true after a run.

    Consumes :func:`iter_search` (same arguments). ``on_run(run, best_so_far,
    epochs_spent)`` is called for every run, replayed or new, in order (a progress
    display); ``until(step)`` ends the search after the run it is true for.
    """
    runs: list[Run] = []
    epochs, seconds, disk = 0, 0.0, 0
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
        workers=workers,
    )
    for step in stream:
        runs.append(step.run)
        epochs, seconds = step.epochs, step.seconds
        disk = max(disk, step.disk)
        if on_run is not None:
            on_run(step.run, step.best, step.epochs)
        if until is not None and until(step):
            stream.close()
            break
    return SearchOutcome(runs, epochs, seconds, evaluator.max_epochs, evaluator.dataset, disk)
