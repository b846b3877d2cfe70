"""How ASHA ranks a rung before it promotes (``rank=`` of :func:`nax.search.halving.asha`).

ASHA (Li et al. 2020) promotes, from a rung, a trial among the top ``floor(n / eta)`` of the
rung's ``n`` told results, ranked by their accuracy *at the rung*. On curves whose early
rankings disagree with the final ones (the meta-dataset's 12-epoch runs, NOTES §8) that
discards good trials. A :class:`Rank` replaces only that ranking: the number of promotable
trials, the order of the rungs, the proposals and everything else stay ASHA's.

:func:`predicted_final` ranks by the transferred curve posterior's **median prediction of
the final value** from the trial's prefix at the rung: the one stopping rule's prediction
(its prior fitted on the source datasets, the target's completed runs as context, its
within-target adapted calibration), the same predictions freeze-thaw makes
(:func:`nax.search.freeze_thaw_curves.curve_model`), asked at the horizon. Each prefix is
fitted once (when a ranking first needs it) and its draws recomposed under the latest
calibration, as freeze-thaw does; a failed fit ranks first (the stopping rule's convention:
a failed prediction never drops a run).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from nax.search.freeze_thaw_curves import curve_model, draws_of
from nax.search.multifidelity import MFStrategy, TrialResult, _ranked


class Rank(NamedTuple):
    """A promotion ranking for ASHA:

    - ``init(key) -> state``;
    - ``tell(state, told) -> state``: ``told`` = ``[(trial, rung_epochs, result)]`` as results
      arrive (a result at the top rung is a completed run);
    - ``order(state, results, epochs, key) -> (ranked, state)``: a rung's told
      ``(trial, value)`` pairs (values at ``epochs``; ``-inf`` for a dead trial), best first,
      dead trials last.
    """

    init: Callable[[jax.Array], Any]
    tell: Callable[[Any, Sequence[tuple[int, int, TrialResult]]], Any]
    order: Callable[[Any, Sequence[tuple[int, float]], int, jax.Array], tuple[list[tuple[int, float]], Any]]


def by_value() -> Rank:
    """ASHA's own ranking (the value at the rung, ties to the older trial) as a :class:`Rank`:
    ``asha(..., rank=by_value())`` asks exactly the jobs of ``asha(...)`` (tested)."""
    order = lambda state, results, epochs, key: (_ranked(results), state)
    return Rank(lambda key: None, lambda state, told: state, order)


class FinalState(NamedTuple):
    model: Any  # the curve model's state (the stopping rule's)
    prefixes: dict  # (trial, epochs) -> the trial's curve up to the rung
    fitted: dict  # (trial, epochs) -> its prediction at the horizon
    scores: dict  # (trial, epochs) -> predicted final under the current calibration
    completed: int
    key: jax.Array


def predicted_final(rule) -> Rank:
    """Rank a rung by each trial's median predicted final accuracy under the transferred curve
    posterior of the stopping rule ``rule`` (``nax.curves.stopping.stop_rule`` of a prior
    fitted on the source datasets); completed runs adapt it as they do the rule."""
    model = curve_model(rule)
    H, prior = rule.horizon, rule.prior

    def init(key):
        k_model, k_tell = jax.random.split(key)
        return FinalState(model.init(k_model), {}, {}, {}, 0, k_tell)

    def tell(state, told):
        prefixes, done = dict(state.prefixes), []
        for trial, epochs, r in told:
            if r.status != "completed" or len(r.curve) < epochs:
                continue
            if epochs >= H:
                done.append(np.asarray(r.curve[:H], np.float64))
            else:
                prefixes[(trial, epochs)] = tuple(map(float, r.curve[:epochs]))
        if not done:
            return state._replace(prefixes=prefixes)
        n = state.completed + len(done)
        m = model.update(state.model, done, jax.random.fold_in(state.key, n))
        # the calibration moved: every prediction is recomposed under it when next asked
        return state._replace(model=m, prefixes=prefixes, scores={}, completed=n)

    def order(state, results, epochs, key):
        alive = [t for t, v in results if v > -math.inf]
        stale = [t for t in alive if (t, epochs) not in state.fitted]
        fitted, scores = state.fitted, dict(state.scores)
        if stale:
            seed = int(jax.random.randint(key, (), 0, 2**30))
            prefixes = [np.asarray(state.prefixes[(t, epochs)]) for t in stale]
            preds = model.fit(state.model, prefixes, [H] * len(stale), seed)
            fitted = {**fitted, **{(t, epochs): p for t, p in zip(stale, preds)}}
        missing = [t for t in alive if (t, epochs) not in scores]
        if missing:
            preds = [fitted[(t, epochs)] for t in missing]
            med = np.median(draws_of(state.model.rule, preds, prior), axis=0)
            for t, p, s in zip(missing, preds, med):
                scores[(t, epochs)] = float(s) if p.ok and np.isfinite(s) else math.inf
        value = dict(results)
        ranked = sorted(alive, key=lambda t: (-scores[(t, epochs)], t))
        dead = [tv for tv in _ranked(results) if tv[1] == -math.inf]
        return [(t, value[t]) for t in ranked] + dead, state._replace(fitted=fitted, scores=scores)

    return Rank(init, tell, order)


def asha_from_models(
    min_epochs: int,
    max_epochs: int,
    eta: float,
    *,
    space,
    candidates: np.ndarray | None = None,
    model=None,
    prior=None,
    stop_config=None,
) -> MFStrategy:
    """ASHA with nax's transfers, the one builder of ``nax search --strategy asha
    --asha-transfer`` and of the experiment's ``asha_selection`` / ``asha_transfer``: new
    trials proposed by the characteristic ``model`` (``transfer.strategy_from_model``; None:
    uniform, the paper's), and with a curve ``prior`` each rung's promotions ranked by
    :func:`predicted_final` of the stopping rule of ``stop_config`` (None: by the value at the
    rung)."""
    from nax.curves.stopping import StopConfig, stop_rule
    from nax.search import halving, transfer

    base = None if model is None else transfer.strategy_from_model(model, space, candidates=candidates)
    rank = None
    if prior is not None:
        rank = predicted_final(stop_rule(prior, max_epochs, stop_config or StopConfig()))
    return halving.asha(min_epochs, max_epochs, eta, space=space, candidates=candidates, base=base, rank=rank)


__all__ = ["FinalState", "Rank", "asha_from_models", "by_value", "predicted_final"]
