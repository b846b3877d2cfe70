"""What evaluating an architecture gives: :class:`RunResult`, shared by every evaluator."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

#: ``should_stop(curve_so_far) -> (stop, predicted_final)``
StopFn = Callable[[tuple[float, ...]], tuple[bool, float | None]]

STATUSES = ("completed", "stopped", "diverged", "failed", "paused")


@dataclasses.dataclass(frozen=True)
class RunResult:
    """The outcome of evaluating one architecture.

    ``curve``: validation accuracy (fraction) per epoch trained; ``final``: the accuracy
    of the finished run (``curve[-1]`` when there is a curve); ``predicted_final``: the
    stopping rule's prediction for a stopped run; ``cost_epochs``: epochs charged;
    ``cost_s``: seconds charged (simulated for tables that record training time);
    ``wall_s``: seconds this evaluation really took. A job of a multi-fidelity search
    (``evaluate_job``) is ``"paused"`` when it reached its epochs below a full run;
    ``checkpoint``: where it left its training state (``path``, ``epoch``, ``bytes``),
    and ``warning``: a line to show (a checkpoint that could not be resumed).
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
    checkpoint: Mapping[str, Any] | None = None
    warning: str | None = None

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
            return (
                self.predicted_final if self.predicted_final is not None else (self.curve[-1] if self.curve else None)
            )
        return None


def job_result(arch, curve, start: int, epochs: int, max_epochs: int, sec_per_epoch, t0: float) -> RunResult:
    """The result of a job that brought a trial from ``start`` to ``len(curve)`` epochs,
    asked for ``epochs``: paused, completed (at ``max_epochs``) or failed (short)."""
    seen = tuple(float(v) for v in curve)
    trained = max(0, len(seen) - start)
    wall = time.perf_counter() - t0
    cost_s = trained * sec_per_epoch if sec_per_epoch is not None else wall
    new = tuple({"val_acc": v} for v in seen[start:])
    if len(seen) < epochs:
        err = f"the recorded curve has {len(seen)} epochs, the job asked for {epochs}"
        return RunResult(arch, "failed", seen, None, None, trained, float(cost_s), wall, err, new)
    status = "completed" if epochs >= max_epochs else "paused"
    final = seen[max_epochs - 1] if status == "completed" else None
    return RunResult(arch, status, seen, final, None, trained, float(cost_s), wall, None, new)
