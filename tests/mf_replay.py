"""Replay a multi-fidelity strategy against a curve table: pausing and resuming are free.

A test harness, not library code: nax has one search driver (``nax.search.loop``), and the
multi-fidelity strategies (issue 14) run here only until that driver runs jobs that pause
and resume; then this simulator goes.

``replay(strategy, pool, budget_epochs, key, workers=...)`` simulates ``workers`` parallel
workers training the strategy's jobs on recorded curves. A job ``Job(trial, enc, epochs)``
costs ``epochs`` minus the epochs the trial already has, in epochs and in simulated time
(one time unit per epoch), and returns the table's curve up to ``epochs``. Jobs finish in
the order of the simulated clock (ties: the job asked first), each result told at once,
so ASHA runs asynchronously exactly as it would on ``workers`` machines of equal speed.

The budget in epochs is never overshot: a job whose cost would take the charged epochs
(of all jobs asked so far, finished or in flight) past the budget is not started, and the
search ends there (the jobs in flight finish). The strategy's state from before that ask
is kept: ask is pure, so the refused job never happened.

The trajectory records, after each finished job, the epochs charged so far by finished
jobs and the best *final* accuracy found: the accuracy at ``max_epochs`` of a trial that
completed a job at ``max_epochs``. A trial paused at a lower rung is not a result: its
accuracy at a few epochs is not the accuracy of the trained network a user would deploy,
and counting it would credit multi-fidelity methods with partial runs that a full-run
search (the regularized evolution baseline, whose trace counts completed runs only) is not
credited with.
"""

from __future__ import annotations

import heapq
from typing import NamedTuple

import jax
import numpy as np

from nax.search.multifidelity import Job, MFStrategy, TrialResult


class CurvePool(NamedTuple):
    """Recorded curves: row ``p`` is architecture ``encs_PxE[p]`` with validation accuracy
    ``curves_PxT[p, e - 1]`` after epoch ``e`` (NaN after a row's last epoch)."""

    encs_PxE: np.ndarray
    curves_PxT: np.ndarray
    space: object

    @property
    def max_epochs(self) -> int:
        return int(self.curves_PxT.shape[1])

    def curve(self, enc) -> np.ndarray:
        idx = int(self.space.index(enc))
        row = self._rows().get(idx)
        if row is None:
            raise KeyError(f"architecture {self.space.to_string(enc)} is not in the curve pool")
        return self.curves_PxT[row]

    def _rows(self) -> dict[int, int]:
        return {int(i): p for p, i in enumerate(self.space.index(self.encs_PxE))}


def table_pool(table, dataset: str, space, *, arch_column: str | None = "arch", seed: int = 0) -> CurvePool:
    """The curves of ``dataset`` in a ``nax.tables.CurveTable`` (epochs 1..T).

    Repeated rows of an architecture: row ``seed % repeats`` of them (as the table
    evaluator picks). ``arch_column=None`` (tables of networks outside any nax space, such
    as Baker et al.'s): row ``i`` is identified by the space's ``i``-th encoding, an
    identifier only, as the acceleration experiment does.
    """
    if table.minimize:
        raise ValueError("multi-fidelity replay maximises accuracy; this curve table holds losses (minimize)")
    sel = np.flatnonzero(np.asarray(table.datasets).astype(str) == dataset)
    if len(sel) == 0:
        known = sorted(set(map(str, table.datasets)))
        raise ValueError(f"unknown dataset {dataset!r} in curve table {table.source}; available: {', '.join(known)}")
    keep = np.asarray(table.epochs) > 0
    epochs = np.asarray(table.epochs)[keep]
    if not np.array_equal(epochs, np.arange(1, len(epochs) + 1)):
        raise ValueError(f"curve table {table.source} must have every epoch 1..T for a replay, got {epochs.tolist()}")
    values = np.asarray(table.values)[sel][:, keep]
    if arch_column is None:
        encs = space.enumerate()[: len(sel)]
        if len(encs) < len(sel):
            raise ValueError(f"{len(sel)} rows need more identifiers than the space has ({len(encs)})")
    else:
        if arch_column not in table.meta:
            raise ValueError(f"curve table {table.source} has no {arch_column!r} column of architecture strings")
        encs = np.stack([space.from_string(str(a)) for a in np.asarray(table.meta[arch_column])[sel]])
    idx = space.index(encs)
    order = np.lexsort((np.arange(len(idx)), idx))
    uniq, first, counts = np.unique(idx[order], return_index=True, return_counts=True)
    rows = order[first + seed % counts]
    rows = np.sort(rows)
    return CurvePool(encs[rows], values[rows], space)


class Trajectory(NamedTuple):
    """After each finished job: ``epochs`` charged so far by finished jobs and ``best``
    final accuracy found (NaN before the first trial completed at ``max_epochs``);
    ``jobs``, ``trials`` (architectures started) and ``full_runs`` (trials trained to
    ``max_epochs``) in all; ``charged``: epochs of every job run (== ``epochs[-1]``)."""

    epochs: np.ndarray
    best: np.ndarray
    jobs: int
    trials: int
    full_runs: int
    charged: int

    def best_within(self, budget: float) -> float:
        """Best final accuracy once ``budget`` epochs had been charged (NaN if none yet)."""
        ok = self.epochs <= budget
        return float(self.best[ok][-1]) if ok.any() and np.isfinite(self.best[ok][-1]) else float("nan")

    def reach(self, target: float) -> float | None:
        """Epochs charged when the best final accuracy first reached ``target``; None if never."""
        hit = np.flatnonzero(self.best >= target)
        return float(self.epochs[hit[0]]) if len(hit) else None


def replay(
    strategy: MFStrategy,
    pool: CurvePool,
    budget_epochs: int,
    key: jax.Array,
    *,
    workers: int = 1,
    max_epochs: int | None = None,
) -> Trajectory:
    """Run ``strategy`` on ``pool``'s curves with ``workers`` simulated workers until it
    has nothing more to ask or the next job would overshoot ``budget_epochs``.

    The asks for job ``i`` use ``fold_in(key, i)`` (an ask that returns no job leaves
    ``i`` unchanged, so the keys do not depend on how often a worker found nothing to do);
    the strategy's ``init`` gets ``key`` itself.
    ``max_epochs`` (default: the pool's) is the fidelity a found result must reach.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if not budget_epochs > 0:
        raise ValueError(f"budget_epochs must be positive, got {budget_epochs}")
    horizon = pool.max_epochs if max_epochs is None else int(max_epochs)
    rows = pool._rows()
    state = strategy.init(key)
    have: dict[int, int] = {}  # trial -> epochs trained (asked)
    heap: list[tuple[int, int, Job, int]] = []  # (finish time, ask number, job, cost)
    n_ask, clock, charged, done_epochs = 0, 0, 0, 0
    full, best = set(), -np.inf
    eps, bests = [], []
    asking = True
    while True:
        while asking and len(heap) < workers:
            job, new_state = strategy.ask(state, jax.random.fold_in(key, n_ask))
            if job is None:
                state = new_state
                break
            cost = int(job.epochs) - have.get(job.trial, 0)
            if cost <= 0 or job.epochs > horizon:
                raise ValueError(
                    f"job {job} asks for {job.epochs} epochs of a trial that has "
                    f"{have.get(job.trial, 0)} (horizon {horizon})"
                )
            if charged + cost > budget_epochs:
                asking = False
                break
            state, charged = new_state, charged + cost
            have[job.trial] = int(job.epochs)
            heapq.heappush(heap, (clock + cost, n_ask, job, cost))
            n_ask += 1
        if not heap:
            break
        clock, _, job, cost = heapq.heappop(heap)
        row = rows.get(int(pool.space.index(job.enc)))
        if row is None:
            raise KeyError(f"architecture {pool.space.to_string(job.enc)} is not in the curve pool")
        curve = pool.curves_PxT[row, : job.epochs]
        curve = curve[np.isfinite(curve)]
        status = "completed" if len(curve) == job.epochs else "failed"
        state = strategy.tell(state, [TrialResult(job.trial, tuple(map(float, curve)), status)])
        done_epochs += cost
        if status == "completed" and job.epochs >= horizon:
            full.add(job.trial)
            best = max(best, float(curve[horizon - 1]))
        eps.append(done_epochs)
        bests.append(best if np.isfinite(best) else np.nan)
    return Trajectory(np.asarray(eps, float), np.asarray(bests, float), len(eps), len(have), len(full), done_epochs)
