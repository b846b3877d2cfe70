"""Early termination: stop a run that will probably not beat the best run so far.

The rule is pure: a run is stopped when ``P(final value better than best so far) < delta``
under the posterior predictive, and only after ``min_epochs`` observed epochs. "Better"
is higher for accuracies and lower for losses (``Prediction.minimize``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from nax.curves import calibration
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


def adapt_checkpoints(horizon: int, min_epochs: int, n: int = 3) -> np.ndarray:
    """Up to ``n`` epochs, from ``min_epochs`` to the one before the last, at which a
    finished run is predicted again to adapt the calibration to the target."""
    if min_epochs >= horizon:
        return np.zeros(0, int)
    return np.unique(np.round(np.linspace(min_epochs, horizon - 1, n)).astype(int))


def finished_evidence(
    prior: CurvePrior,
    finished: np.ndarray,
    context: np.ndarray | None,
    checks,
    *,
    first_id: int = 0,
    minimize: bool = False,
    num_samples: int = 300,
    num_steps: int = 800,
    seed: int = 0,
) -> list:
    """:class:`~nax.curves.calibration.Evidence` of finished runs ``finished`` [M, horizon]:
    each predicted from its prefix at every epoch of ``checks`` (one joint fit per epoch),
    with ``context`` (the target's curves before these runs) as context; run ids from
    ``first_id``. Failed fits give no evidence."""
    horizon = finished.shape[1]
    ids = first_id + np.arange(len(finished))
    out = []
    for e in checks:
        prefix = np.where(np.arange(horizon) < e, finished, np.nan)
        pred = predict(
            prior,
            prefix,
            horizon=horizon,
            context=context if context is not None and len(context) else None,
            minimize=minimize,
            num_samples=num_samples,
            num_steps=num_steps,
            seed=seed + 7919 * int(e),
        )
        if pred.ok:
            out.append(
                calibration.evidence(pred, finished[:, -1], np.arange(len(finished)), run_ids=ids)
            )
    return out


class StoppingState(NamedTuple):
    """State of :func:`early_stopping`: the best final value so far (table units), the
    finished curves of the dataset ([M, horizon], NaN padded) used as context, and the
    extrapolation noise adapted to the finished runs among them (``calibration``, None: the
    prior's; ``evidence``; ``learned``: context rows already learned from)."""

    best: float
    context: np.ndarray
    step: int
    calibration: dict | None = None
    evidence: tuple = ()
    learned: int = 0


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
    adapt: bool = True,
    adapt_checks: int = 3,
) -> EarlyStopping:
    """Build the per-epoch stopping rule for runs of ``horizon`` epochs on one dataset.

    ``prior``: the transferred :class:`CurvePrior` (None: no transfer). ``delta``: the
    probability threshold; ``min_epochs``: never stop before this many observed epochs.
    ``adapt`` (with a calibrated prior): before its next prediction, the rule learns the
    extrapolation noise from the runs ``tell`` reported finished
    (:func:`nax.curves.calibration.adapt`), each predicted again at ``adapt_checks``
    epochs, as the search's rule does.
    """
    worst = np.inf if minimize else -np.inf
    adapting = adapt and prior is not None and prior.calibration is not None
    checks = adapt_checkpoints(horizon, min_epochs, adapt_checks)

    def learn(state: StoppingState) -> StoppingState:
        new = state.context[state.learned :]
        done = new[np.isfinite(new[:, -1])]
        if not adapting or not len(done) or not len(checks):
            return state._replace(learned=len(state.context))
        ev = finished_evidence(
            prior,
            done,
            state.context[: state.learned],
            checks,
            first_id=state.learned,
            minimize=minimize,
            num_samples=num_samples,
            num_steps=num_steps,
            seed=seed + 104729 * state.learned,
        )
        evidence = state.evidence + tuple(ev)
        return state._replace(
            evidence=evidence,
            calibration=calibration.adapt(prior.calibration, list(evidence)),
            learned=len(state.context),
        )

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
        state = learn(state)
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
            calibration=state.calibration,
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
