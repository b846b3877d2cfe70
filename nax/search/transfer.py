"""The transfer strategy: Thompson sampling from the characteristic model.

The model (``nax.characteristics``) is fitted once on the transfer-from datasets; on the
target it is conditioned on every result told so far (``update``), and each ask draws
joint posterior samples of the scores of all unasked candidates (``sample_scores``) and
takes the best of each draw. Before the first result the draws come from the population
alone, so the first architectures are the ones strong on the earlier datasets, with the
posterior spread providing exploration.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
import scipy.stats

from nax import characteristics as ch
from nax.search.strategies import (
    Observation,
    Pool,
    Strategy,
    _check_space,
    _draw_unasked,
    _mark,
    _positions,
    _rng,
    make_pool,
)
from nax.space import CellSpace


class TransferState(NamedTuple):
    pool: Pool
    asked_P: np.ndarray
    observed: tuple[tuple[int, float], ...]  # (pool position, value) of successful runs
    posterior: Any  # the model conditioned on ``observed`` (a CharacteristicModel before any)


def strategy_from_model(
    model: ch.CharacteristicModel, space: CellSpace, *, batch: int = 1, candidates: np.ndarray | None = None
) -> Strategy:
    """Thompson sampling over ``candidates`` (default: the space) with a fitted ``model``."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    pool = make_pool(space, candidates)

    def init(key: jax.Array, space_: CellSpace = space) -> TransferState:
        del key
        _check_space(pool, space_)
        return TransferState(pool, np.zeros(len(pool.encs_PxE), bool), (), model)

    def ask(state: TransferState, key: jax.Array) -> tuple[np.ndarray, TransferState]:
        k_draw, k_rand = jax.random.split(key)
        asked = state.asked_P
        free = np.flatnonzero(~asked)
        picks: list[int] = []
        if len(free):
            draws = ch.sample_scores(state.posterior, state.pool.encs_PxE[free], None, k_draw, n=batch)
            for d in draws:
                d = d.copy()
                d[np.isin(free, picks)] = -np.inf
                if np.isfinite(d).any():
                    picks.append(int(free[int(np.argmax(d))]))
        rng = _rng(k_rand)
        while len(picks) < batch:  # the pool is exhausted: repeats, uniformly
            picks.append(_draw_unasked(rng, _mark(asked, picks)))
        return state.pool.encs_PxE[picks], state._replace(asked_P=_mark(asked, picks))

    def tell(state: TransferState, observations: Sequence[Observation]) -> TransferState:
        pos = _positions(state.pool, [o.enc for o in observations]) if observations else []
        obs = list(state.observed)
        for p, o in zip(pos, observations):
            if p is not None and o.value is not None and np.isfinite(o.value):
                obs.append((p, float(o.value)))
        posterior = state.posterior
        if len(obs) != len(state.observed):
            idx = [p for p, _ in obs]
            posterior = ch.update(model, (state.pool.encs_PxE[idx], np.array([v for _, v in obs])))
        return state._replace(asked_P=_mark(state.asked_P, pos), observed=tuple(obs), posterior=posterior)

    return Strategy(init, ask, tell)


def strategy(
    space: CellSpace,
    table,
    sources: Sequence[str],
    *,
    seed: int = 0,
    batch: int = 1,
    candidates: np.ndarray | None = None,
) -> Strategy:
    """Fit the characteristic model on ``sources`` of the architecture table ``table``
    (``nax.tables.ArchTable``, final accuracies) and search by Thompson sampling."""
    model = ch.fit(table, list(sources), seed=seed, space=space)
    return strategy_from_model(model, space, batch=batch, candidates=candidates)


def scores_to_accuracy(score_draws: np.ndarray, finals: np.ndarray) -> np.ndarray:
    """Characteristic-model score draws (normal scores of the target's ranks, the model's
    Gaussian copula) as accuracies: the inverse of the copula on the target's own final
    accuracies ``finals`` (at least two distinct). Between the observed scores the map is
    piecewise linear; beyond them it continues with the least-squares slope of accuracy on
    score (a clamp would make a new architecture never better than the best seen). The
    result is clipped to [0, 1]."""
    y = np.sort(np.asarray(finals, np.float64).reshape(-1))
    if len(y) < 2 or not np.all(np.isfinite(y)) or y[0] == y[-1]:
        raise ValueError(f"mapping scores to accuracies needs at least two distinct finite final accuracies, got {y}")
    z = scipy.stats.norm.ppf((np.arange(1, len(y) + 1) - 0.5) / len(y))
    slope = max(float(np.polyfit(z, y, 1)[0]), 0.0)
    s = np.asarray(score_draws, np.float64)
    out = np.interp(s, z, y)
    out = np.where(s > z[-1], y[-1] + slope * (s - z[-1]), out)
    out = np.where(s < z[0], y[0] + slope * (s - z[0]), out)
    return np.clip(out, 0.0, 1.0)
