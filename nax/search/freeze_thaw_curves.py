"""Freeze-thaw's curve posterior (:mod:`nax.search.freeze_thaw`): each paused trial's
predictive at its next job's end, from the one stopping rule's predictions (its prior,
inference, context of the target's completed runs and within-target adaptation), with an
optional look-ahead calibration (:mod:`nax.search.ahead_calibration`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from nax.curves.predict import compose_draws, predict
from nax.curves.stopping import Finished, StopRule
from nax.search.freeze_thaw_decision import expected_improvement


class CurveModel(NamedTuple):
    """The curve posterior as freeze-thaw uses it (:func:`curve_model` builds it from a
    stopping rule; tests build exact ones):

    - ``init(key) -> state``;
    - ``update(state, completed_curves, key) -> state``: the within-target adaptation
      after runs completed (each curve [horizon]);
    - ``fit(state, curves, epochs, seed) -> list``: one opaque prediction per partial
      curve of its accuracy at ``epochs[i]`` (past its last epoch);
    - ``improvement(state, fitted, best_N) -> [N]``: each prediction's expected improvement
      over ``best_N[i]`` under the state's current calibration;
    - ``observe(state, prediction, value) -> state`` (optional): a resumed trial showed
      ``value`` at the epoch ``prediction`` was about (the look-ahead's within-target
      calibration, :mod:`nax.search.ahead_calibration`).
    """

    init: Callable[[jax.Array], Any]
    update: Callable[[Any, Sequence[np.ndarray], jax.Array], Any]
    fit: Callable[[Any, Sequence[np.ndarray], Sequence[int], int], list]
    improvement: Callable[[Any, list, np.ndarray], np.ndarray]
    observe: Callable[[Any, Any, float], Any] | None = None


class _Ahead(NamedTuple):
    """Model-scale draw components of one trial's accuracy at its next epoch
    (:meth:`nax.curves.predict.Prediction.draw_components`), recomposable under any
    calibration: ``y``, ``ext`` [S]; ``gap``, ``head`` scalars; ``scale``; ``ok``: the fit
    succeeded."""

    y: np.ndarray
    ext: np.ndarray | None
    gap: Any
    head: Any
    scale: Any
    ok: bool
    at: int = 0  # epochs of the prefix it was predicted from
    to: int = 0  # the epoch it predicts


class ModelState(NamedTuple):
    """:func:`curve_model`'s state: the stopping rule's (``rule``) and the target's own
    look-ahead ratios per step (``seen``, :meth:`AheadCalibration.observe`)."""

    rule: Any
    seen: tuple = ()


def draws_of(state, fitted: Sequence[_Ahead], prior) -> np.ndarray:
    """Predictive draws [S, N] (table units) of fitted trials at their next epoch, composed
    under the state's calibration (the prior's before any adaptation)."""
    cal = state.calibration if state.calibration is not None else prior.calibration
    return np.stack(
        [compose_draws(a.y, a.ext if cal is not None else None, a.gap, a.head, cal, False, a.scale) for a in fitted],
        axis=-1,
    )


def curve_model(rule: StopRule, ahead=None) -> CurveModel:
    """Freeze-thaw's curve posterior from the one stopping rule: predictions as the rule's
    checks make them (its prior, inference, context of the target's completed runs), drawn
    at each trial's next epoch and composed under the rule's adapted calibration, adapted by
    the rule's ``update``. ``ahead``: an
    :class:`~nax.search.ahead_calibration.AheadCalibration` learned on the sources, whose
    factor rescales each trial's draws around their median (None: as composed)."""
    if rule.prior is None:
        raise ValueError("freeze-thaw needs a transferred curve prior (fit one on the source datasets' curves)")
    if rule.config.minimize:
        raise ValueError("freeze-thaw maximises accuracy; this stopping rule minimises a loss")
    H = rule.horizon
    prior = rule.prior

    def init(key):
        return ModelState(rule.init(key), ahead.empty_seen() if ahead is not None else ())

    def update(state, completed, key):
        done = [Finished(np.asarray(c, np.float64), True) for c in completed]
        return state._replace(rule=rule.update(state.rule, done, key))

    def fit(state, curves, epochs, seed):
        state = state.rule
        # always [n, H] wide, so every prefix length reuses one compiled program
        padded = np.full((len(curves), H), np.nan)
        for i, c in enumerate(curves):
            padded[i, : len(c)] = c
        ctx = state.context if len(state.context) else None
        pred = predict(
            prior,
            padded,
            horizon=H,
            context=ctx,
            inference=rule.config.inference,
            seed=int(seed),
            calibration=state.calibration,
        )
        y, ext, gap, head = pred.draw_components(np.asarray(epochs)[:, None])
        one = lambda a, i: None if a is None else a[..., i, 0]
        return [
            _Ahead(one(y, i), one(ext, i), one(gap, i), one(head, i), pred.scale, bool(pred.ok), len(curves[i]), int(e))
            for i, e in enumerate(epochs)
        ]

    def improvement(state, fitted, best_N):
        draws = draws_of(state.rule, fitted, prior)
        if ahead is not None:
            draws = ahead.rescale(draws, [a.at for a in fitted], H, state.seen)
        ei = expected_improvement(draws, best_N)
        # a failed fit never drops a run (the stopping rule's convention): it is resumed
        ok = np.array([a.ok for a in fitted]) & np.isfinite(ei)
        return np.where(ok, ei, np.inf)

    def observe(state, a, value):
        if not a.ok or not np.isfinite(value):
            return state
        r = ahead.ratio(draws_of(state.rule, [a], prior), value)
        return state._replace(seen=ahead.observe(state.seen, a.at, H, r))

    return CurveModel(init, update, fit, improvement, observe if ahead is not None else None)


__all__ = ["CurveModel", "ModelState", "curve_model", "draws_of"]
