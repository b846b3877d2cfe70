"""The spread of a target's predictive, recalibrated on the target's own prefixes.

Why: the extrapolation noise (:mod:`nax.curves.calibration`) is fitted on the *sources*;
on a target unlike them the 90 % interval of the final value covers far from 90 % (issue
13's matrix: 0.36-0.64 on the nax/metadata families cross-family, 0.74 on Baker and 0.96
on LCBench leave-one-out), while the point prediction is fine. At prediction time the
target says one thing about its own predictability: how well the same model, fitted on
the first half of each observed prefix, predicts the rest of it (the prequential check
the strength choice already runs, :mod:`nax.curves.strength`). This module turns that
check into one factor ``k`` per target dataset that widens or narrows the predictive
around its unchanged median.

The rule, fixed a priori (before it was measured on any reported family; benchmarks/NOTES.md
section 6 says what was known when it was written):

1. **Check values.** Every curve with at least :data:`MIN_CHECK_EPOCHS` observed epochs is
   cut after ``max(n // 2, 1)`` of its ``n`` observed epochs; the chosen candidate (same
   prior, strength, scale and calibration as the final prediction) is fitted on the cut
   prefixes jointly and predicts each curve's value at its last observed epoch. When the
   strength was chosen on the target's finished runs (rule ``"finished"``) the check
   values are those runs' final values, predicted from their cut prefixes. Where the
   strength choice already fitted the chosen candidate on these prefixes, that fit is
   the check (no extra fit).
2. **Normalised error** of a check value ``v`` with check draws of median ``m`` and 5 / 95 %
   quantiles ``q05``, ``q95`` (model scale): ``r = (v - m) / (q95 - m)`` above the median,
   ``(m - v) / (m - q05)`` below. The check predictive scaled by ``k`` about its median
   holds ``v`` in its central 90 % interval exactly when ``r <= k``.
3. **Factor** ``k`` = the ``ceil(LEVEL (n + 1))``-th smallest of the ``n`` errors: the
   split-conformal quantile (with exchangeable check values, a new one falls inside the
   scaled interval with probability at least :data:`LEVEL`), clipped to
   :data:`FACTOR_BOUNDS`. With fewer than :data:`MIN_CHECK` values (the smallest ``n``
   for which that order statistic exists) or a failed check fit: ``k = 1``, the sources'
   calibration as before (no evidence to move away from it; rule ``"fallback"``).
4. **Rescaling.** Every predictive draw of a target curve becomes ``m + k (y - m)`` on the
   model scale, ``m`` the curve's median draw at that epoch: the median, so
   ``Prediction.point`` and the MAE, does not move; the log density is the scaled
   density ``p(m + (y - m) / k) / k``.

The assumption the rule rests on: the model's spread is off by about the same factor
half a prefix ahead as at the final epoch. It cannot see what the prefixes do not show
(a learning-rate drop after the last observed epoch), and a target observed for one
epoch per curve has no check at all (rule ``"fallback"``).
"""

from __future__ import annotations

import math

import numpy as np

#: the central interval whose coverage the factor targets
LEVEL = 0.9
#: fewest observed epochs of a curve for a check value (its first half predicts the rest)
MIN_CHECK_EPOCHS = 2


def conformal_rank(n: int) -> int:
    """The 1-based order statistic of ``n`` errors that is the split-conformal ``LEVEL``
    quantile: ``ceil(LEVEL (n + 1))`` (a hair below, so that 0.9 * 10 is 9, not 10)."""
    return math.ceil(LEVEL * (n + 1) - 1e-9)


#: fewest check values: ``conformal_rank(n) <= n`` first holds at n = 9
MIN_CHECK = next(n for n in range(1, 1000) if conformal_rank(n) <= n)
#: the factor is kept within an order of magnitude either way (a priori: a check of a
#: few flat prefixes can give errors of ~0, a diverged run an error of ~inf)
FACTOR_BOUNDS = (0.1, 10.0)


def normalised_errors(draws, truth) -> np.ndarray:
    """``r`` of each check value: ``draws`` [S, n] model-scale check draws, ``truth`` [n]
    model-scale values -> [n] (NaN where the check interval has no width on that side)."""
    draws = np.asarray(draws, np.float64)
    truth = np.asarray(truth, np.float64)
    lo, m, hi = np.quantile(draws, [(1 - LEVEL) / 2, 0.5, (1 + LEVEL) / 2], axis=0)
    width = np.where(truth >= m, hi - m, m - lo)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(width > 0, np.abs(truth - m) / width, np.nan)


def factor(errors) -> tuple[float, dict]:
    """The factor ``k`` from check errors ``r`` [n] and its record (JSON-ready): ``factor``,
    ``rule`` (``"prequential"`` / ``"finished"`` are set by the caller; here
    ``"conformal"`` or ``"fallback"``), ``values`` used and a ``reason`` for a fallback."""
    r = np.asarray(errors, np.float64)
    r = r[np.isfinite(r)]
    n = len(r)
    if n < MIN_CHECK:
        return 1.0, {"factor": 1.0, "rule": "fallback", "values": n, "reason": f"{n} check values < {MIN_CHECK}"}
    rank = conformal_rank(n)  # <= n since n >= MIN_CHECK
    k = float(np.clip(np.sort(r)[rank - 1], *FACTOR_BOUNDS))
    return k, {"factor": k, "rule": "conformal", "values": n}


def rescale(draws, k, axis: int = 0) -> np.ndarray:
    """``m + k (y - m)`` of draws along ``axis`` (``m``: their median), ``k`` broadcasting
    against the draws without that axis (a scalar, or [N] for [S, N, ...] draws)."""
    draws = np.asarray(draws, np.float64)
    m = np.median(draws, axis=axis, keepdims=True)
    k = np.asarray(k, np.float64)
    k = np.expand_dims(k.reshape(k.shape + (1,) * (draws.ndim - 1 - k.ndim)), axis)
    return m + k * (draws - m)


def unscaled_values(values, median, k) -> np.ndarray:
    """Where a value of the rescaled predictive came from: ``m + (y - m) / k``; its log
    density is the unscaled one there minus ``log k``."""
    median = np.asarray(median, np.float64)
    return median + (np.asarray(values, np.float64) - median) / np.asarray(k, np.float64)


__all__ = ["FACTOR_BOUNDS", "LEVEL", "MIN_CHECK", "MIN_CHECK_EPOCHS", "factor", "normalised_errors", "rescale"]
