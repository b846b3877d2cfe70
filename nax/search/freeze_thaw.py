"""The transferred freeze-thaw decision: continue a paused trial, or start a new architecture.

Freeze-thaw search (Swersky et al. 2014; ifBO, DyHPO) keeps runs paused and, at each
decision, spends the next epochs where they are worth most. nax values a choice with both
of its transfers:

- a paused trial ``i`` with ``e_i`` epochs: draws of its accuracy at the horizon from the
  transferred curve model (``nax.curves.predict(...).draws`` of its partial curve, with
  the target's finished runs as context and the within-target adapted calibration);
- a fresh architecture (no epochs yet): draws of its final accuracy from the
  characteristic model's posterior score (``nax.characteristics.sample_scores``), the
  architecture prior standing in for a curve that does not exist yet.

The value of a choice is its **expected improvement over the incumbent at the horizon per
epoch of cost** (the default, ``criterion="ei"``)::

    EI_i = mean_s max(draw_si - incumbent, 0),    cost_i = horizon - e_i,    score_i = EI_i / cost_i

so a paused trial that is nearly done needs few epochs to deliver its improvement, and a
new architecture pays the whole horizon. The alternative ``criterion="pi"`` uses the
probability of improvement, ``mean_s [draw_si > incumbent]``, per epoch: it ignores by how
much a trial would improve, so it prefers near-certain small gains (it exploits more and
is insensitive to the upper tail that makes an uncertain new architecture worth a try);
EI weighs both. The incumbent is the best final accuracy of a completed run; before any,
0 (accuracies are fractions in [0, 1], so EI is then the mean predicted accuracy).

Choosing "continue trial i" resumes it by ``delta`` epochs (not past the horizon), after
which the decision is taken again with its longer curve: the curve model's update is how
the within-target adaptation enters. This module is the decision only; draws are inputs,
so it is tested without fitting a model.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import jax
import numpy as np

CRITERIA = ("ei", "pi")


class Decision(NamedTuple):
    """``action``: ``"continue"`` (resume paused trial ``index`` for ``epochs`` epochs) or
    ``"new"`` (start fresh candidate ``index`` for ``epochs`` epochs). ``score``: the
    chosen option's value per epoch; ``scores_paused`` [N], ``scores_new`` [M]: every
    option's (``-inf`` for a paused trial already at the horizon)."""

    action: str
    index: int
    epochs: int
    score: float
    scores_paused: np.ndarray
    scores_new: np.ndarray


def improvement_value(draws_SxN: np.ndarray, incumbent: float | None, criterion: str = "ei") -> np.ndarray:
    """Per column: expected improvement ``mean max(d - incumbent, 0)`` (``"ei"``) or
    probability of improvement ``mean [d > incumbent]`` (``"pi"``) over the draws."""
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; accepted: {', '.join(CRITERIA)}")
    d = np.asarray(draws_SxN, np.float64)
    inc = 0.0 if incumbent is None else float(incumbent)
    if criterion == "ei":
        return np.mean(np.maximum(d - inc, 0.0), axis=0)
    return np.mean(d > inc, axis=0)


def _draws(x, name: str, columns: int | None) -> np.ndarray:
    a = np.asarray(x, np.float64)
    if a.ndim == 1 and columns is not None and columns <= 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} must be draws [S, N], got shape {a.shape}")
    if columns is not None and a.shape[1] != columns:
        raise ValueError(f"{name} has {a.shape[1]} columns, expected {columns}")
    if np.isnan(a).any():
        raise ValueError(f"{name} holds NaN draws")
    return a


def decide(
    key: jax.Array,
    paused_draws_SxN: np.ndarray,
    paused_epochs_N: np.ndarray,
    new_draws_SxM: np.ndarray | None,
    *,
    horizon: int,
    incumbent: float | None,
    delta: int = 1,
    criterion: Literal["ei", "pi"] = "ei",
) -> Decision:
    """Continue a paused trial by ``delta`` epochs or start a new architecture.

    Args:
      key: breaks exact ties between best options uniformly (nothing else is random).
      paused_draws_SxN: draws of each paused trial's accuracy at ``horizon`` (fraction);
        ``N`` may be 0.
      paused_epochs_N: epochs each paused trial already has (``< horizon`` to be eligible).
      new_draws_SxM: draws of the final accuracy of ``M`` fresh candidates (the
        characteristic model's posterior score); ``None`` or ``M = 0``: no new one can start.
      horizon: epochs of a full run (the fidelity the value is measured at).
      incumbent: best final accuracy of a completed run so far; None before the first.
      delta: epochs to resume a paused trial by (capped at its remaining epochs); a new
        trial also starts for ``min(delta, horizon)`` epochs.
      criterion: ``"ei"`` (expected improvement) or ``"pi"`` (probability of improvement).

    Returns:
      The best option by value per epoch of cost to reach the horizon.

    Raises:
      ValueError: bad shapes, NaN draws, a non-positive horizon or delta, or no option.
    """
    if int(horizon) < 1 or int(delta) < 1:
        raise ValueError(f"horizon and delta must be positive epochs, got horizon={horizon}, delta={delta}")
    epochs_N = np.asarray(paused_epochs_N, np.int64).reshape(-1)
    n = len(epochs_N)
    paused = _draws(paused_draws_SxN, "paused_draws_SxN", n) if n else np.zeros((1, 0))
    if n and (epochs_N < 0).any():
        raise ValueError("paused_epochs_N must be non-negative")
    fresh = np.zeros((1, 0)) if new_draws_SxM is None else _draws(new_draws_SxM, "new_draws_SxM", None)

    remaining = horizon - epochs_N
    value_p = improvement_value(paused, incumbent, criterion)
    scores_p = np.where(remaining > 0, value_p / np.maximum(remaining, 1), -np.inf)
    scores_n = improvement_value(fresh, incumbent, criterion) / horizon
    all_scores = np.concatenate([scores_p, scores_n])
    if len(all_scores) == 0 or not np.isfinite(all_scores).any():
        raise ValueError("no option: every paused trial is at the horizon and no new candidate was given")
    best = np.flatnonzero(all_scores == all_scores.max())
    pick = int(best[int(jax.random.randint(key, (), 0, len(best)))]) if len(best) > 1 else int(best[0])
    if pick < n:
        return Decision("continue", pick, int(min(delta, remaining[pick])), float(all_scores[pick]), scores_p, scores_n)
    return Decision("new", pick - n, int(min(delta, horizon)), float(all_scores[pick]), scores_p, scores_n)
