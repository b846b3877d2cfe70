"""What one training run leaves: its per-epoch metrics and its record (small, immutable, JSON)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from nax import jsonio


class EpochMetrics(NamedTuple):
    epoch: int  # 1-based
    train_loss: float
    val_accuracy: float  # fraction in [0, 1]
    val_loss: float
    epoch_s: float  # wall seconds of this epoch (train + validation)


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """One training run. ``status`` is completed, stopped (by the callback), diverged, or
    paused (trained up to ``until_epoch`` with a checkpoint kept, so it can resume: ``nax.checkpoints``)."""

    arch: str
    dataset: str
    seed: int
    status: str
    epochs_planned: int
    curve: tuple[EpochMetrics, ...]
    test_accuracy: float | None = None
    num_params: int | None = None
    wall_s: float = 0.0
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def epochs_done(self) -> int:
        return len(self.curve)

    @property
    def val_accuracies(self) -> np.ndarray:
        return np.array([m.val_accuracy for m in self.curve], np.float64)

    @property
    def final_val_accuracy(self) -> float:
        return float(self.curve[-1].val_accuracy) if self.curve else float("nan")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["curve"] = [m._asdict() for m in self.curve]
        d["config"] = dict(self.config)
        return d

    def to_json(self) -> str:
        return jsonio.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping) -> RunRecord:
        d = dict(d)
        d["curve"] = tuple(EpochMetrics(**m) for m in d["curve"])
        return cls(**d)

    @classmethod
    def from_json(cls, s: str) -> RunRecord:
        return cls.from_dict(json.loads(s))
