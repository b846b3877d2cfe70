"""Evaluators: what evaluating one architecture means.

``evaluate(enc, seed, should_stop) -> RunResult``. ``should_stop(curve_so_far)`` is called
after every epoch but the last with the validation accuracies so far (fractions) and
returns ``(stop, predicted_final)``; it is how early termination cuts a run.

- ``CurveTableEvaluator`` replays recorded learning curves of one dataset of a curve
  table, epoch by epoch, charging one epoch per replayed epoch, so early stopping saves
  exactly what it would save in real training.
- ``ArchTableEvaluator`` looks final accuracies up in an architecture table (NAS-Bench-201)
  and charges the full training a real run would cost (no curve, so nothing to stop).
- ``TrainingEvaluator`` trains for real with ``nax.train.train_architecture``.

Table evaluators pick among repeated rows of one architecture with the run's ``seed``,
so a search is reproducible from its seed.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Any, Callable, Mapping, Protocol

import numpy as np
import pandas as pd

from nax.space import CellSpace, nb201

#: ``should_stop(curve_so_far) -> (stop, predicted_final)``
StopFn = Callable[[tuple[float, ...]], tuple[bool, float | None]]

STATUSES = ("completed", "stopped", "diverged", "failed")


@dataclasses.dataclass(frozen=True)
class RunResult:
    """The outcome of evaluating one architecture.

    ``curve``: validation accuracy (fraction) per epoch trained; ``final``: the accuracy
    of the finished run (``curve[-1]`` when there is a curve); ``predicted_final``: the
    stopping rule's prediction for a stopped run; ``cost_epochs``: epochs charged;
    ``cost_s``: seconds charged (simulated for tables that record training time);
    ``wall_s``: seconds this evaluation really took.
    """

    arch: str
    status: str
    curve: tuple[float, ...] = ()
    final: float | None = None
    predicted_final: float | None = None
    cost_epochs: int = 0
    cost_s: float = 0.0
    wall_s: float = 0.0
    error: str | None = None
    epoch_metrics: tuple[Mapping[str, float], ...] = ()

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"unknown run status {self.status!r}; accepted: {', '.join(STATUSES)}")

    @property
    def value(self) -> float | None:
        """What the search maximises: the final accuracy, predicted for a stopped run;
        None for a failed or diverged run."""
        if self.status == "completed":
            return self.final
        if self.status == "stopped":
            return self.predicted_final if self.predicted_final is not None else (self.curve[-1] if self.curve else None)
        return None


class Evaluator(Protocol):
    dataset: str
    space: CellSpace
    #: epochs of a full run (what a run costs without early stopping)
    max_epochs: int

    def candidates(self) -> np.ndarray | None:
        """Encodings (n, E) this evaluator can evaluate; None when it can evaluate any."""

    def evaluate(self, enc: np.ndarray, seed: int, should_stop: StopFn | None = None) -> RunResult: ...


def _replay(arch: str, curve: np.ndarray, should_stop: StopFn | None, sec_per_epoch: float | None,
            t0: float) -> RunResult:
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
    return RunResult(arch, status, tuple(seen), final, None if predicted is None else float(predicted),
                     len(seen), float(cost_s), wall, None, tuple({"val_acc": v} for v in seen))


class CurveTableEvaluator:
    """Replays the curves of ``dataset`` in a curve table (``nax.tables`` format).

    ``df``: a curve table; its architecture strings in ``arch_column``, per-epoch values in
    ``<prefix><epoch>`` columns (``acc_0`` ignored), its dataset in ``dataset_column``
    (a table without that column is one dataset). Rows whose architecture is not in
    ``space`` raise ValueError. ``seconds_column`` (total training seconds of a row), if
    present, is charged pro rata per epoch; otherwise the replay's wall time is.
    """

    def __init__(self, df: pd.DataFrame, dataset: str, space: CellSpace = nb201, *, prefix: str = "acc_",
                 dataset_column: str = "training_dataset", arch_column: str = "arch",
                 seconds_column: str = "train_time_s"):
        if arch_column not in df.columns:
            raise ValueError(f"curve table has no {arch_column!r} column of architecture strings")
        if dataset_column in df.columns:
            known = sorted(map(str, df[dataset_column].unique()))
            if dataset not in known:
                raise ValueError(f"unknown dataset {dataset!r} in curve table; available: {', '.join(known)}")
            df = df[df[dataset_column].astype(str) == dataset]
        cols = sorted(((int(c[len(prefix):]), c) for c in df.columns
                       if c.startswith(prefix) and c[len(prefix):].isdigit() and int(c[len(prefix):]) > 0))
        if not cols:
            raise ValueError(f"curve table has no per-epoch columns named {prefix}<epoch>")
        self.space, self.dataset = space, dataset
        self.max_epochs = len(cols)
        values = df[[c for _, c in cols]].to_numpy(np.float64)
        secs = df[seconds_column].to_numpy(np.float64) if seconds_column in df.columns else None
        self._rows: dict[str, list[tuple[np.ndarray, float | None]]] = {}
        for i, arch in enumerate(df[arch_column].astype(str)):
            enc = space.from_string(arch)
            curve = values[i][~np.isnan(values[i])]
            if len(curve) == 0:
                continue
            per_epoch = None if secs is None or not np.isfinite(secs[i]) else secs[i] / len(curve)
            self._rows.setdefault(space.to_string(enc), []).append((curve, per_epoch))
        if not self._rows:
            raise ValueError(f"curve table has no curve for dataset {dataset!r}")

    def candidates(self) -> np.ndarray:
        return np.stack([self.space.from_string(a) for a in self._rows])

    def evaluate(self, enc, seed: int, should_stop: StopFn | None = None) -> RunResult:
        t0 = time.perf_counter()
        arch = self.space.to_string(enc)
        rows = self._rows.get(arch)
        if rows is None:
            raise KeyError(f"architecture {arch} has no curve for {self.dataset!r} in the table")
        curve, per_epoch = rows[seed % len(rows)]
        return _replay(arch, curve, should_stop, per_epoch, t0)


class ArchTableEvaluator:
    """Final accuracies of ``dataset`` from an architecture table (``arch,dataset,accuracy``).

    Accuracies above 1 are read as percent (NAS-Bench-201) and divided by 100. A run is
    charged ``epochs`` epochs and, when the table has ``train_time_s``, that many seconds.
    """

    def __init__(self, df: pd.DataFrame, dataset: str, space: CellSpace = nb201, *, epochs: int = 200):
        missing = {"arch", "dataset", "accuracy"} - set(df.columns)
        if missing:
            raise ValueError(f"architecture table lacks columns {sorted(missing)}")
        known = sorted(map(str, df["dataset"].unique()))
        if dataset not in known:
            raise ValueError(f"unknown dataset {dataset!r} in architecture table; available: {', '.join(known)}")
        df = df[df["dataset"].astype(str) == dataset]
        if "seed" in df.columns:
            df = df.sort_values(["arch", "seed"], kind="stable")
        acc = df["accuracy"].to_numpy(np.float64)
        scale = 100.0 if np.nanmax(acc) > 1.0 else 1.0
        secs = df["train_time_s"].to_numpy(np.float64) if "train_time_s" in df.columns else np.full(len(df), np.nan)
        self.space, self.dataset, self.max_epochs = space, dataset, int(epochs)
        self._rows: dict[str, list[tuple[float, float]]] = {}
        for a, v, s in zip(df["arch"].astype(str), acc / scale, secs):
            self._rows.setdefault(a, []).append((float(v), float(s)))
        # canonical strings, so that lookups by encoding always hit
        self._rows = {space.to_string(space.from_string(a)): r for a, r in self._rows.items()}

    def candidates(self) -> np.ndarray:
        return np.stack([self.space.from_string(a) for a in self._rows])

    def evaluate(self, enc, seed: int, should_stop: StopFn | None = None) -> RunResult:
        t0 = time.perf_counter()
        arch = self.space.to_string(enc)
        rows = self._rows.get(arch)
        if rows is None:
            raise KeyError(f"architecture {arch} has no accuracy for {self.dataset!r} in the table")
        acc, secs = rows[seed % len(rows)]
        if not math.isfinite(acc):
            return RunResult(arch, "diverged", (), None, None, self.max_epochs, 0.0 if math.isnan(secs) else secs,
                             time.perf_counter() - t0, "table records a non-finite accuracy")
        wall = time.perf_counter() - t0
        return RunResult(arch, "completed", (), acc, None, self.max_epochs, secs if math.isfinite(secs) else wall, wall)


class TrainingEvaluator:
    """Real training with ``nax.train.train_architecture`` on a bundled or TFDS dataset.

    ``cfg`` is a ``nax.train.TrainConfig`` (its seed is replaced by each run's seed).
    """

    def __init__(self, dataset: str, cfg: Any = None, space: CellSpace = nb201, data_dir: str | os.PathLike | None = None):
        from nax import train

        self.dataset, self.space, self.data_dir = dataset, space, data_dir
        self.cfg = cfg if cfg is not None else train.preset("cpu")
        self.max_epochs = int(self.cfg.epochs)

    def candidates(self) -> None:
        return None

    def evaluate(self, enc, seed: int, should_stop: StopFn | None = None) -> RunResult:
        from nax import train

        predicted: list[float | None] = [None]

        def callback(record) -> bool:
            if should_stop is None:
                return False
            stop, predicted[0] = should_stop(tuple(float(v) for v in record.val_accuracies))
            return bool(stop)

        t0 = time.perf_counter()
        rec = train.train_architecture(enc, self.dataset, self.cfg.replace(seed=int(seed)), callback=callback,
                                       data_dir=self.data_dir, space=self.space)
        wall = time.perf_counter() - t0
        curve = tuple(float(m.val_accuracy) for m in rec.curve)
        metrics = tuple({"val_acc": m.val_accuracy, "val_loss": m.val_loss, "train_loss": m.train_loss,
                         "epoch_s": m.epoch_s} for m in rec.curve)
        status = rec.status
        error = "non-finite training loss" if status == "diverged" else None
        final = curve[-1] if status == "completed" and curve else None
        return RunResult(rec.arch, status, curve, final, predicted[0] if status == "stopped" else None,
                         len(rec.curve), wall, wall, error, metrics)
