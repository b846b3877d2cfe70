"""Evaluators: what evaluating one architecture means.

``evaluate(enc, seed, should_stop) -> RunResult``. ``should_stop(curve_so_far)`` is called
after every epoch but the last with the validation accuracies so far (fractions) and
returns ``(stop, predicted_final)``; it is how early termination cuts a run.

Evaluators that can pause a run and resume it later (multi-fidelity search) also have
``evaluate_job(enc, seed, trial, start, epochs) -> RunResult``: bring trial ``trial``
from the ``start`` epochs it has to ``epochs``. Its result holds the trial's whole curve
so far, ``epoch_metrics`` of the epochs it trained, ``cost_epochs`` those epochs only,
and status ``"paused"`` (below ``max_epochs``), ``"completed"`` (at ``max_epochs``) or a
failure. Table evaluators pause and resume for free (they slice the recorded curve).

- ``CurveTableEvaluator`` replays recorded learning curves of one dataset of a curve
  table, epoch by epoch, charging one epoch per replayed epoch, so early stopping saves
  exactly what it would save in real training.
- ``ArchTableEvaluator`` looks final accuracies up in an architecture table (NAS-Bench-201)
  and charges the full training a real run would cost (no curve, so nothing to stop).
- ``ArrayEvaluator`` reads known values of cells from arrays (simulated searches).
- ``TrainingEvaluator`` trains for real with ``nax.train.train_architecture``.

Table evaluators pick among repeated rows of one architecture with the run's ``seed``,
so a search is reproducible from its seed.
"""

from __future__ import annotations

import math
import time
from typing import Protocol

import numpy as np

from nax.search.results import STATUSES, RunResult, StopFn, job_result
from nax.search.train_evaluator import TrainingEvaluator
from nax.space import CellSpace, nb201
from nax.tables import ArchTable, CurveTable

__all__ = [
    "STATUSES",
    "ArchTableEvaluator",
    "ArrayEvaluator",
    "CurveTableEvaluator",
    "Evaluator",
    "RunResult",
    "StopFn",
    "TrainingEvaluator",
    "job_result",
]


class Evaluator(Protocol):
    dataset: str
    space: CellSpace
    #: epochs of a full run (what a run costs without early stopping)
    max_epochs: int

    def candidates(self) -> np.ndarray | None:
        """Encodings (n, E) this evaluator can evaluate; None when it can evaluate any."""

    def evaluate(self, enc: np.ndarray, seed: int, should_stop: StopFn | None = None) -> RunResult: ...


def _replay(
    arch: str, curve: np.ndarray, should_stop: StopFn | None, sec_per_epoch: float | None, t0: float
) -> RunResult:
    """Walk a recorded curve epoch by epoch, as training would produce it."""
    seen: list[float] = []
    n = len(curve)
    for e in range(n):
        seen.append(float(curve[e]))
        if should_stop is not None and e + 1 < n:
            stop, predicted = should_stop(tuple(seen))
            if stop:
                return _result(arch, "stopped", seen, None, predicted, sec_per_epoch, t0)
    return _result(arch, "completed", seen, seen[-1], None, sec_per_epoch, t0)


def _result(arch, status, seen, final, predicted, sec_per_epoch, t0) -> RunResult:
    wall = time.perf_counter() - t0
    cost_s = len(seen) * sec_per_epoch if sec_per_epoch is not None else wall
    return RunResult(
        arch,
        status,
        tuple(seen),
        final,
        None if predicted is None else float(predicted),
        len(seen),
        float(cost_s),
        wall,
        None,
        tuple({"val_acc": v} for v in seen),
    )


class CurveTableEvaluator:
    """Replays the curves of ``dataset`` in a ``nax.tables.CurveTable``.

    Architecture strings come from the table's ``arch_column`` meta column. A run is
    charged one epoch per replayed epoch and, if the table has ``seconds_column`` (total
    training seconds of a row), that time pro rata; otherwise the replay's wall time.
    ``epochs``: a full run is the first ``epochs`` epochs of each curve (default: all).
    """

    def __init__(
        self,
        table: CurveTable,
        dataset: str,
        space: CellSpace = nb201,
        *,
        arch_column: str = "arch",
        seconds_column: str = "train_time_s",
        epochs: int | None = None,
    ):
        if table.minimize:
            raise ValueError("the search maximises accuracy; this curve table holds losses (minimize)")
        if arch_column not in table.meta:
            raise ValueError(f"curve table {table.source} has no {arch_column!r} column of architecture strings")
        known = sorted(set(map(str, table.datasets)))
        if dataset not in known:
            raise ValueError(
                f"unknown dataset {dataset!r} in curve table {table.source}; available: {', '.join(known)}"
            )
        sel = table.datasets == dataset
        keep = table.epochs > 0
        # a row's seconds are spread over the epochs it recorded, whatever a full run here is
        recorded = np.isfinite(table.values[sel][:, keep]).sum(axis=1)
        if epochs is not None:  # a shorter full run: the first ``epochs`` epochs of each curve
            if epochs > keep.sum():
                raise ValueError(f"--max-epochs {epochs}: the table's curves have {int(keep.sum())} epochs")
            keep &= table.epochs <= epochs
        values = table.values[sel][:, keep]
        archs = table.meta[arch_column][sel]
        secs = table.meta[seconds_column][sel].astype(np.float64) if seconds_column in table.meta else None
        self.space, self.dataset = space, dataset
        self.max_epochs = int(keep.sum())
        self._rows: dict[str, list[tuple[np.ndarray, float | None]]] = {}
        for i, arch in enumerate(archs):
            curve = values[i][~np.isnan(values[i])]
            if len(curve) == 0:
                continue
            per_epoch = None if secs is None or not np.isfinite(secs[i]) else float(secs[i]) / int(recorded[i])
            self._rows.setdefault(space.to_string(space.from_string(str(arch))), []).append((curve, per_epoch))
        if not self._rows:
            raise ValueError(f"curve table {table.source} has no curve for dataset {dataset!r}")

    def candidates(self) -> np.ndarray:
        return np.stack([self.space.from_string(a) for a in self._rows])

    def _row(self, enc, seed: int):
        """(architecture, recorded curve, seconds per epoch) of the seed's run of ``enc``."""
        arch = self.space.to_string(enc)
        rows = self._rows.get(arch)
        if rows is None:
            raise KeyError(f"architecture {arch} has no curve for {self.dataset!r} in the table")
        curve, per_epoch = rows[seed % len(rows)]
        return arch, curve, per_epoch

    def evaluate(self, enc, seed: int, should_stop: StopFn | None = None) -> RunResult:
        t0 = time.perf_counter()
        arch, curve, per_epoch = self._row(enc, seed)
        return _replay(arch, curve, should_stop, per_epoch, t0)

    def evaluate_job(self, enc, seed: int, trial: int, start: int, epochs: int) -> RunResult:
        """Trial ``trial`` from ``start`` to ``epochs`` epochs: the recorded curve, sliced.
        A curve shorter than ``epochs`` (the table's row ended) fails the job."""
        del trial  # a table needs no state per trial: the curve is the same every time
        t0 = time.perf_counter()
        arch, curve, per_epoch = self._row(enc, seed)
        return job_result(arch, curve[:epochs], start, epochs, self.max_epochs, per_epoch, t0)


class ArchTableEvaluator:
    """Final accuracies of ``dataset`` from a ``nax.tables.ArchTable`` (NAS-Bench-201).

    A run is charged ``epochs`` epochs (NAS-Bench-201 trains 200) and, when the table
    has ``train_time_s``, that many seconds. Repeated rows of an architecture (seeds)
    are chosen by the run's seed, in ascending ``seed`` order. A table of scores (unit
    ``"score"``) gives its values higher-is-better (``ArchTable.oriented``: a loss negated).
    """

    def __init__(self, table: ArchTable, dataset: str, *, epochs: int = 200):
        known = sorted(set(map(str, table.datasets)))
        if dataset not in known:
            raise ValueError(
                f"unknown dataset {dataset!r} in architecture table {table.source}; available: {', '.join(known)}"
            )
        sel = np.flatnonzero(table.datasets == dataset)
        seeds = table.meta["seed"][sel] if "seed" in table.meta else np.zeros(len(sel))
        sel = sel[np.lexsort((seeds, np.asarray(table.archs, dtype=object)[sel].astype(str)))]
        acc = table.oriented[sel] if table.unit == "score" else table.accuracy_fraction[sel]
        secs = (
            table.meta["train_time_s"][sel].astype(np.float64)
            if "train_time_s" in table.meta
            else np.full(len(sel), np.nan)
        )
        self.space, self.dataset, self.max_epochs = table.space, dataset, int(epochs)
        self._rows: dict[str, list[tuple[float, float]]] = {}
        idx = self.space.index(table.encodings[sel])
        names = {
            int(k): self.space.to_string(table.encodings[sel[j]]) for k, j in zip(*np.unique(idx, return_index=True))
        }
        for k, v, s in zip(idx.tolist(), acc.tolist(), secs.tolist()):
            self._rows.setdefault(names[k], []).append((v, s))

    def candidates(self) -> np.ndarray:
        return np.stack([self.space.from_string(a) for a in self._rows])

    def evaluate(self, enc, seed: int, should_stop: StopFn | None = None) -> RunResult:
        t0 = time.perf_counter()
        arch = self.space.to_string(enc)
        rows = self._rows.get(arch)
        if rows is None:
            raise KeyError(f"architecture {arch} has no accuracy for {self.dataset!r} in the table")
        acc, secs = rows[seed % len(rows)]
        wall = time.perf_counter() - t0
        return RunResult(arch, "completed", (), acc, None, self.max_epochs, secs if math.isfinite(secs) else wall, wall)


class ArrayEvaluator:
    """Known values of cells, from arrays: a simulated search on a table already in memory.

    ``encodings`` (n, E) of ``space`` and their ``values`` (n,) (any units, higher is
    better); a run is charged ``epochs`` epochs (default 1: the budget counts evaluations)
    and no seconds. The values are returned as ``final`` unchanged.
    """

    def __init__(
        self,
        encodings: np.ndarray,
        values: np.ndarray,
        space: CellSpace = nb201,
        *,
        dataset: str = "target",
        epochs: int = 1,
    ):
        encodings = space.validate(encodings).reshape(-1, space.num_edges)
        values = np.asarray(values, np.float64)
        if len(values) != len(encodings):
            raise ValueError(f"{len(encodings)} encodings but {len(values)} values")
        self.space, self.dataset, self.max_epochs = space, dataset, int(epochs)
        self._encodings = encodings
        self._value = dict(zip(space.index(encodings).tolist(), values.tolist()))

    def candidates(self) -> np.ndarray:
        return self._encodings

    def evaluate(self, enc, seed: int, should_stop: StopFn | None = None) -> RunResult:
        value = self._value.get(int(self.space.index(np.asarray(enc)[None])[0]))
        if value is None:
            raise KeyError(f"architecture {self.space.to_string(enc)} has no value in the arrays")
        return RunResult(self.space.to_string(enc), "completed", (), value, None, self.max_epochs, 0.0, 0.0)
