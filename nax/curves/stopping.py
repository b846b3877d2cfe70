"""Early termination: stop a run that will probably not beat the best run so far.

The rule is pure: a run is stopped when ``P(final value better than best so far) < delta``
under the posterior predictive, and only after ``min_epochs`` observed epochs. "Better"
is higher for accuracies and lower for losses (``Prediction.minimize``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from nax.curves.predict import Prediction, predict
from nax.curves.prior import CurvePrior


def prob_better(pred: Prediction, best_so_far) -> np.ndarray:
    """P(final value of each run beats ``best_so_far``) from the predictive draws, [N]."""
    best = np.asarray(best_so_far, np.float64)
    if pred.minimize:
        return (pred.samples < best).mean(0)
    return (pred.samples > best).mean(0)


def should_stop(pred: Prediction, best_so_far, *, delta: float = 0.05) -> np.ndarray:
    """Bool [N]: stop the runs whose probability of beating ``best_so_far`` is below ``delta``.

    A prediction whose inference failed (``pred.ok`` False) never stops a run: a failed
    fit must not end a search's candidates.
    """
    stop = prob_better(pred, best_so_far) < delta
    if not pred.ok:
        stop = np.zeros_like(stop)
    return stop


class StoppingState(NamedTuple):
    """State of :func:`early_stopping`: the best final value so far (table units) and the
    finished curves of the dataset ([M, horizon], NaN padded) used as context."""

    best: float
    context: np.ndarray
    step: int


class EarlyStopping(NamedTuple):
    """A pure early-stopping rule in the style of an optax transformation.

    ``init(best=None) -> state``; ``update(curves, state) -> (stop bool [N], state)`` with
    ``curves`` [N, e] (or [e]) the values observed so far; ``tell(curve, state) -> state``
    records a finished (or stopped) run: its curve joins the context and its last value
    may become the best.
    """

    init: Callable
    update: Callable
    tell: Callable


def early_stopping(
    prior: CurvePrior | None,
    *,
    horizon: int,
    delta: float = 0.05,
    min_epochs: int = 3,
    minimize: bool = False,
    method: str = "svi",
    num_samples: int = 300,
    num_steps: int = 800,
    seed: int = 0,
) -> EarlyStopping:
    """Build the per-epoch stopping rule for runs of ``horizon`` epochs on one dataset.

    ``prior``: the transferred :class:`CurvePrior` (None: no transfer). ``delta``: the
    probability threshold; ``min_epochs``: never stop before this many observed epochs.
    """
    worst = np.inf if minimize else -np.inf

    def init(best: float | None = None) -> StoppingState:
        return StoppingState(
            best=worst if best is None else float(best),
            context=np.zeros((0, horizon)),
            step=0,
        )

    def update(curves, state: StoppingState):
        curves = np.atleast_2d(np.asarray(curves, np.float64))
        n, e = curves.shape
        if e > horizon:
            raise ValueError(
                f"curves have {e} epochs, more than the horizon of {horizon}"
            )
        # always [n, horizon] wide, so every epoch reuses one compiled program
        curves = np.pad(curves, ((0, 0), (0, horizon - e)), constant_values=np.nan)
        state = state._replace(step=state.step + 1)
        if e < min_epochs or not np.isfinite(state.best):
            return np.zeros(n, bool), state
        pred = predict(
            prior,
            curves,
            horizon=horizon,
            context=state.context if len(state.context) else None,
            minimize=minimize,
            method=method,
            num_samples=num_samples,
            num_steps=num_steps,
            seed=seed + state.step,
        )
        return should_stop(pred, state.best, delta=delta), state

    def tell(curve, state: StoppingState) -> StoppingState:
        curve = np.asarray(curve, np.float64).ravel()[:horizon]
        row = np.full((1, horizon), np.nan)
        row[0, : curve.size] = curve
        finite = curve[np.isfinite(curve)]
        best = state.best
        # only a run trained to the end has a final value that counts as "found"
        if finite.size and np.isfinite(curve[-1]) and curve.size == horizon:
            best = min(best, finite[-1]) if minimize else max(best, finite[-1])
        return state._replace(best=best, context=np.concatenate([state.context, row]))

    return EarlyStopping(init, update, tell)
