"""Real training as a search evaluator, with pause and resume for multi-fidelity jobs."""

from __future__ import annotations

import math
import os
import time
from typing import Any

from nax.search.results import RunResult, StopFn
from nax.space import CellSpace, nb201


class TrainingEvaluator:
    """Real training with ``nax.train.train_architecture`` on a bundled dataset.

    ``dataset``: a bundled dataset's name, or ``nax.train.Splits`` arrays. ``cfg``: a
    ``nax.train.TrainConfig`` (its seed is replaced by each run's seed). A diverged run
    (non-finite loss) keeps its partial curve and counts as a failure for the strategy.
    ``checkpoints``: the folder where jobs of a multi-fidelity search keep each paused
    trial's training state (``nax.checkpoints``, one sub-folder per trial).
    """

    def __init__(
        self,
        dataset: Any,
        cfg: Any = None,
        space: CellSpace = nb201,
        data_dir: str | os.PathLike | None = None,
        checkpoints: str | os.PathLike | None = None,
    ):
        from nax import data, train

        if isinstance(dataset, train.Splits):  # arrays in hand (tests, custom data)
            self.dataset, self._splits, self._keep = dataset.name, dataset, True
        else:
            data.info(dataset)  # unknown name: ValueError listing the bundled datasets
            self.dataset, self._splits, self._keep = dataset, None, False
        self.space, self.data_dir = space, data_dir
        self.cfg = cfg if cfg is not None else train.preset("cpu")
        self.max_epochs = int(self.cfg.epochs)
        # absolute: Ray workers on this machine write the same folders
        self.checkpoints = None if checkpoints is None else os.path.abspath(checkpoints)

    def __getstate__(self):
        # each (Ray) worker loads the arrays itself rather than receiving them
        return self.__dict__ if self._keep else {**self.__dict__, "_splits": None}

    def splits(self):
        """The dataset's arrays, loaded once per process."""
        from nax import train

        if self._splits is None:
            self._splits = train.load_splits(self.dataset, self.cfg, self.data_dir)
        return self._splits

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
        rec = train.train_architecture(
            enc, self.splits(), self.cfg.replace(seed=int(seed)), callback=callback, space=self.space
        )
        wall = time.perf_counter() - t0
        # a diverged epoch has no validation accuracy: the curve is the finite prefix
        curve = tuple(float(m.val_accuracy) for m in rec.curve if math.isfinite(m.val_accuracy))
        metrics = tuple(
            {"val_acc": m.val_accuracy, "val_loss": m.val_loss, "train_loss": m.train_loss, "epoch_s": m.epoch_s}
            for m in rec.curve
        )
        status = rec.status
        error = "non-finite training loss" if status == "diverged" else None
        final = curve[-1] if status == "completed" and curve else None
        return RunResult(
            rec.arch,
            status,
            curve,
            final,
            predicted[0] if status == "stopped" else None,
            len(rec.curve),
            wall,
            wall,
            error,
            metrics,
        )

    def evaluate_job(self, enc, seed: int, trial: int, start: int, epochs: int) -> RunResult:
        """Train trial ``trial`` from its checkpoint at ``start`` epochs (or a later one: a
        killed search may have saved past its journal) until it has ``epochs``. The
        schedule's horizon stays ``max_epochs``, so the curve is the uninterrupted run's. A
        missing or corrupt checkpoint restarts the trial from epoch 0 with one warning line
        (``RunResult.warning``), charged every epoch it trains."""
        from nax import checkpoints as ck_lib
        from nax import train

        if self.checkpoints is None:
            raise ValueError("pausing and resuming training runs needs a checkpoint folder (checkpoints=...)")
        ck = ck_lib.RunCheckpoints(self.checkpoints, run_id(trial))
        t0 = time.perf_counter()
        rec = train.train_architecture(
            enc,
            self.splits(),
            self.cfg.replace(seed=int(seed)),
            space=self.space,
            checkpoints=ck,
            # a first job killed after a checkpoint resumes from it too
            resume=start > 0 or ck.latest() is not None,
            until_epoch=int(epochs),
        )
        wall = time.perf_counter() - t0
        # a job charges the epochs from its start (epochs a killed search trained past it and
        # checkpointed count too, as they would have uninterrupted); a restart from 0, all
        trained = len(rec.curve) - min(int(start), ck.resumed_epoch)
        curve = tuple(float(m.val_accuracy) for m in rec.curve if math.isfinite(m.val_accuracy))
        metrics = tuple(
            {"val_acc": m.val_accuracy, "val_loss": m.val_loss, "train_loss": m.train_loss, "epoch_s": m.epoch_s}
            for m in rec.curve[len(rec.curve) - trained :]
        )
        status = rec.status if rec.status in ("paused", "completed", "diverged") else "failed"
        error = {"diverged": "non-finite training loss", "failed": f"training ended {rec.status}"}.get(status)
        final = curve[self.max_epochs - 1] if status == "completed" and len(curve) >= self.max_epochs else None
        saved = None if ck.saved is None else dict(ck.saved._asdict())
        return RunResult(rec.arch, status, curve, final, None, trained, wall, wall, error, metrics, saved, ck.warning)

    def discard(self, trial: int) -> int:
        """Delete trial ``trial``'s checkpoints (it can no longer resume); bytes freed."""
        if self.checkpoints is None:
            return 0
        from nax import checkpoints as ck_lib

        return ck_lib.delete_run(self.checkpoints, run_id(trial))

    def disk_bytes(self) -> int:
        """Bytes the checkpoints of paused trials hold now."""
        if self.checkpoints is None or not os.path.isdir(self.checkpoints):
            return 0
        from nax import checkpoints as ck_lib

        return ck_lib.usage(self.checkpoints).bytes


def run_id(trial: int) -> str:
    """The checkpoint folder of a trial (``nax.checkpoints``' run id)."""
    return f"trial-{int(trial):06d}"
