"""Freeze-thaw's decision (:mod:`nax.search.freeze_thaw`): the value of each option as
DyHPO's multi-fidelity expected improvement one job ahead over the best accuracy shown at
that epoch, per epoch of the job, and the choice between continuing a paused trial and
starting a new one. Pure numpy on given improvements: no model here.

Where a job ends is :class:`Jobs`: a fixed number of epochs ``Δ`` (``e' = min(e + Δ, H)``,
the second version) or the next rung of the halving methods' ladder above ``e`` (the
fourth version, :func:`Jobs.on_rungs`). The value and the choice are the same for both."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import numpy as np

from nax.search.multifidelity import rungs


class Decision(NamedTuple):
    """``action``: ``"continue"`` (resume paused trial ``index`` for ``epochs`` epochs) or
    ``"new"`` (start fresh candidate ``index`` for ``epochs`` epochs). ``score``: the
    chosen option's value (expected improvement per epoch); ``scores_paused`` [N],
    ``scores_new`` [M]: every option's (``-inf`` for a paused trial already at the horizon)."""

    action: str
    index: int
    epochs: int
    score: float
    scores_paused: np.ndarray
    scores_new: np.ndarray


class Jobs(NamedTuple):
    """Where a freeze-thaw job ends: ``end(e)``, the epochs a trial paused at ``e`` (``0``: a
    new one) has after its next job. ``ladder`` None: ``min(e + delta, horizon)`` (fixed
    jobs of ``delta`` epochs); else the smallest fidelity of ``ladder`` (ascending, its last
    ``horizon``) above ``e``."""

    horizon: int
    delta: int | None = None
    ladder: tuple[int, ...] | None = None

    @classmethod
    def every(cls, delta: int, horizon: int) -> Jobs:
        if int(horizon) < 1 or int(delta) < 1:
            raise ValueError(f"horizon and delta must be positive epochs, got horizon={horizon}, delta={delta}")
        return cls(int(horizon), int(delta), None)

    @classmethod
    def on_rungs(cls, min_epochs: int, horizon: int, eta: float) -> Jobs:
        """The rungs Hyperband and ASHA pause at (:func:`nax.search.multifidelity.rungs`,
        the same function and the same one-line errors)."""
        return cls(int(horizon), None, rungs(min_epochs, horizon, eta))

    def end(self, epochs: int) -> int:
        e = int(epochs)
        if self.ladder is None:
            return min(e + self.delta, self.horizon)
        return next((r for r in self.ladder if r > e), self.horizon)

    def ends(self, epochs_N) -> np.ndarray:
        return np.array([self.end(e) for e in np.asarray(epochs_N, np.int64).reshape(-1)], np.int64)


def expected_improvement(draws_SxN, best_N) -> np.ndarray:
    """``E[max(y - best, 0)]`` per column of predictive draws ``draws_SxN`` [S, N]."""
    d = np.asarray(draws_SxN, np.float64)
    return np.maximum(d - np.asarray(best_N, np.float64)[None], 0.0).mean(0)


def _improvements(x, name: str, n: int | None) -> np.ndarray:
    a = np.asarray(x, np.float64).reshape(-1)
    if n is not None and len(a) != n:
        raise ValueError(f"{name} has {len(a)} values, expected {n}")
    if np.isnan(a).any() or (a < 0).any():
        raise ValueError(f"{name} must be expected improvements >= 0 (inf: nothing known yet), got {a}")
    return a


def decide(
    key: jax.Array,
    ei_paused_N,
    paused_epochs_N,
    ei_new_M=None,
    *,
    horizon: int,
    delta: int = 1,
    jobs: Jobs | None = None,
) -> Decision:
    """Continue a paused trial by one job or start a new architecture.

    Args:
      key: breaks exact ties between the best options uniformly (nothing else is random).
      ei_paused_N: each paused trial's expected improvement at its job's end ``jobs.end(e)``
        (``min(e + delta, horizon)`` by default) over the best accuracy shown at that epoch.
      paused_epochs_N: epochs each paused trial already has (``< horizon`` to be eligible).
      ei_new_M: the same for ``M`` fresh candidates at ``jobs.end(0)`` (``inf``: nothing
        known yet); ``None`` or empty: none can start.
      horizon: epochs of a full run; delta: epochs of a job (capped at what is left);
      jobs: where a job ends (:class:`Jobs`; None: ``Jobs.every(delta, horizon)``).

    Returns:
      The option with the largest expected improvement per epoch of its job (a new one
      when every value is 0).

    Raises:
      ValueError: bad shapes or values, a non-positive horizon or delta, or no option.
    """
    if jobs is None:
        jobs = Jobs.every(delta, horizon)
    elif int(jobs.horizon) != int(horizon):
        raise ValueError(f"jobs end at a horizon of {jobs.horizon} epochs, the decision's is {horizon}")
    epochs_N = np.asarray(paused_epochs_N, np.int64).reshape(-1)
    if (epochs_N < 0).any():
        raise ValueError("paused_epochs_N must be non-negative")
    n = len(epochs_N)
    ei_old = _improvements(ei_paused_N, "ei_paused_N", n)
    ei_new = np.zeros(0) if ei_new_M is None else _improvements(ei_new_M, "ei_new_M", None)
    remaining = horizon - epochs_N
    cost = np.where(remaining > 0, jobs.ends(np.minimum(epochs_N, horizon)) - epochs_N, 0)
    first = jobs.end(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        scores_p = np.where(remaining > 0, ei_old / np.where(cost > 0, cost, 1), -np.inf)
    scores_n = ei_new / first
    all_scores = np.concatenate([scores_p, scores_n])
    if len(all_scores) == 0 or not (all_scores > -np.inf).any():
        raise ValueError("no option: every paused trial is at the horizon and no new candidate was given")
    if all_scores.max() <= 0 and len(ei_new):
        best = n + np.arange(len(ei_new))  # nothing is expected to improve: explore
    else:
        best = np.flatnonzero(all_scores == all_scores.max())
    pick = int(best[int(jax.random.randint(key, (), 0, len(best)))]) if len(best) > 1 else int(best[0])
    if pick < n:
        return Decision("continue", pick, int(cost[pick]), float(all_scores[pick]), scores_p, scores_n)
    return Decision("new", pick - n, int(first), float(all_scores[pick]), scores_p, scores_n)


def best_at(curves: Sequence[Sequence[float]], epochs: int) -> float | None:
    """The best accuracy any curve shows at ``epochs`` (1-based); where none is that long,
    the best any shows at any epoch (DyHPO's reference for a fidelity no one has reached);
    None without a finite value."""
    at = [c[epochs - 1] for c in curves if len(c) >= epochs and np.isfinite(c[epochs - 1])]
    if at:
        return float(max(at))
    seen = [v for c in curves for v in c if np.isfinite(v)]
    return float(max(seen)) if seen else None


__all__ = ["Decision", "Jobs", "best_at", "decide", "expected_improvement"]
