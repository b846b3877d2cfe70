"""Search strategies: optax-style NamedTuples of pure functions over explicit state.

A strategy is ``Strategy(init, ask, tell)``::

    state = strategy.init(key, space)
    encs_BxE, state = strategy.ask(state, key)      # b architectures to evaluate next
    state = strategy.tell(state, observations)      # what their evaluations gave

``ask`` and ``tell`` never modify their input state; they return a new one, so a search
is reproduced exactly by replaying the same keys and observations (this is how
``nax search --resume`` rebuilds a search from its journal).

Candidates come from a *pool*: the whole space by default, or a given array of encodings
(a table evaluator can only replay architectures its table holds). A strategy never asks
for an architecture it has already asked for, unless every pool member has been asked.

Values are maximised (accuracy as a fraction); an observation with value ``None`` is a
failed run: the architecture counts as evaluated but informs nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from nax.space import CellSpace


class Observation(NamedTuple):
    """One evaluated architecture: encoding ``(E,)`` int32 and the value to maximise."""

    enc: np.ndarray
    value: float | None


class Strategy(NamedTuple):
    """``init(key, space) -> state``; ``ask(state, key) -> (encs [b, E], state)``;
    ``tell(state, observations) -> state``."""

    init: Callable[[jax.Array, CellSpace], Any]
    ask: Callable[[Any, jax.Array], tuple[np.ndarray, Any]]
    tell: Callable[[Any, Sequence[Observation]], Any]


class Pool(NamedTuple):
    """Static part of a state: the candidate encodings and where each one sits."""

    encs_PxE: np.ndarray
    position: dict[int, int]  # space.index(enc) -> row of encs_PxE
    space: CellSpace


def make_pool(space: CellSpace, candidates: np.ndarray | None = None) -> Pool:
    """The candidate set: ``candidates`` (n, E) if given (deduplicated, order kept), else the space."""
    encs = space.enumerate() if candidates is None else space.validate(candidates).reshape(-1, space.num_edges)
    idx = space.index(encs)
    _, first = np.unique(idx, return_index=True)
    keep = np.sort(first)
    encs = encs[keep]
    if len(encs) == 0:
        raise ValueError("the candidate pool is empty")
    return Pool(encs, {int(i): p for p, i in enumerate(idx[keep])}, space)


def _rng(key: jax.Array) -> np.random.Generator:
    """A numpy Generator determined by a jax key (cheap per-draw sampling on the host)."""
    return np.random.default_rng(np.asarray(jax.random.key_data(key), np.uint32).ravel().tolist())


def _positions(pool: Pool, encs) -> list[int | None]:
    encs = pool.space.validate(encs).reshape(-1, pool.space.num_edges)
    return [pool.position.get(int(i)) for i in pool.space.index(encs)]


def _mark(asked_P: np.ndarray, positions: Sequence[int | None]) -> np.ndarray:
    new = [p for p in positions if p is not None and not asked_P[p]]
    if not new:
        return asked_P
    out = asked_P.copy()
    out[new] = True
    return out


def _draw_unasked(rng: np.random.Generator, asked_P: np.ndarray) -> int:
    """A uniformly chosen pool position not asked yet; any position once all are asked."""
    free = np.flatnonzero(~asked_P)
    if len(free) == 0:
        return int(rng.integers(len(asked_P)))
    return int(free[rng.integers(len(free))])


def _check_space(pool: Pool, space: CellSpace) -> None:
    if space is not None and space.name != pool.space.name:
        raise ValueError(f"strategy was built for space {pool.space.name!r}, init got {space.name!r}")


# ---------------------------------------------------------------------------- random
class RandomState(NamedTuple):
    pool: Pool
    asked_P: np.ndarray  # bool (P,): asked (pending or evaluated)
    n_told: int


def random(space: CellSpace, batch: int = 1, candidates: np.ndarray | None = None) -> Strategy:
    """Uniform sampling without replacement from the pool, ``batch`` architectures per ask."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    pool = make_pool(space, candidates)

    def init(key: jax.Array, space_: CellSpace = space) -> RandomState:
        del key
        _check_space(pool, space_)
        return RandomState(pool, np.zeros(len(pool.encs_PxE), bool), 0)

    def ask(state: RandomState, key: jax.Array) -> tuple[np.ndarray, RandomState]:
        rng = _rng(key)
        asked, picks = state.asked_P, []
        for _ in range(batch):
            p = _draw_unasked(rng, asked)
            picks.append(p)
            asked = _mark(asked, [p])
        return state.pool.encs_PxE[picks], state._replace(asked_P=asked)

    def tell(state: RandomState, observations: Sequence[Observation]) -> RandomState:
        pos = _positions(state.pool, [o.enc for o in observations]) if observations else []
        return state._replace(asked_P=_mark(state.asked_P, pos), n_told=state.n_told + len(observations))

    return Strategy(init, ask, tell)


# ---------------------------------------------------------------------------- evolution
class EvolutionState(NamedTuple):
    pool: Pool
    asked_P: np.ndarray
    population: tuple[tuple[int, float], ...]  # (pool position, value), oldest first
    n_random: int  # random architectures asked so far (the initial population)


def _mutate_in_pool(rng: np.random.Generator, pool: Pool, asked_P: np.ndarray, parent: int) -> int:
    """One-edge mutation of ``parent``: uniform among its one-edge neighbours
    (``space.neighbours``) that are unasked pool members, which is ``space.mutate``
    redrawn until it lands on one. If there is none, the nearest unasked pool member by
    Hamming distance (ties at random); the parent itself once the pool is exhausted."""
    space = pool.space
    enc = pool.encs_PxE[parent]
    near = [pool.position.get(int(i)) for i in space.index(space.neighbours(enc))]
    near = [p for p in near if p is not None and not asked_P[p]]
    if near:
        return int(near[rng.integers(len(near))])
    free = np.flatnonzero(~asked_P)
    if len(free) == 0:
        return parent
    dist = (pool.encs_PxE[free] != enc).sum(axis=1)
    nearest = free[dist == dist.min()]
    return int(nearest[rng.integers(len(nearest))])


def evolution(
    space: CellSpace,
    population: int = 20,
    sample: int = 5,
    batch: int = 1,
    candidates: np.ndarray | None = None,
) -> Strategy:
    """Regularized evolution (Real et al. 2019): a random initial population of
    ``population`` architectures, then children of the best of ``sample`` members drawn
    at random, one-edge mutation, and aging (the oldest member leaves)."""
    if population < 1 or sample < 1 or batch < 1:
        raise ValueError(f"population, sample and batch must be >= 1, got {population}, {sample}, {batch}")
    pool = make_pool(space, candidates)

    def init(key: jax.Array, space_: CellSpace = space) -> EvolutionState:
        del key
        _check_space(pool, space_)
        return EvolutionState(pool, np.zeros(len(pool.encs_PxE), bool), (), 0)

    def ask(state: EvolutionState, key: jax.Array) -> tuple[np.ndarray, EvolutionState]:
        rng = _rng(key)
        asked, n_random, picks = state.asked_P, state.n_random, []
        for _ in range(batch):
            if n_random < population or not state.population:
                p = _draw_unasked(rng, asked)
                n_random += 1
            else:
                members = rng.integers(len(state.population), size=sample)
                parent = max(members, key=lambda m: (state.population[m][1], -m))
                p = _mutate_in_pool(rng, state.pool, asked, state.population[parent][0])
            picks.append(p)
            asked = _mark(asked, [p])
        return state.pool.encs_PxE[picks], state._replace(asked_P=asked, n_random=n_random)

    def tell(state: EvolutionState, observations: Sequence[Observation]) -> EvolutionState:
        pos = _positions(state.pool, [o.enc for o in observations]) if observations else []
        pop = list(state.population)
        for p, o in zip(pos, observations):
            if p is not None and o.value is not None and np.isfinite(o.value):
                pop.append((p, float(o.value)))
        # architectures told without being asked (a warm start) stand for random initial members
        unasked = len({p for p in pos if p is not None and not state.asked_P[p]})
        return state._replace(
            asked_P=_mark(state.asked_P, pos), population=tuple(pop[-population:]), n_random=state.n_random + unasked
        )

    return Strategy(init, ask, tell)


# ---------------------------------------------------------------------------- warm start
def warm_start(strategy: Strategy, observations: Sequence[Observation]) -> Strategy:
    """``strategy`` as if ``observations`` (evaluations made before the search) had been
    told before its first ask: they count as asked (never proposed again), inform what the
    strategy learns, and in ``evolution`` seed the population as members of its random
    initial population."""
    observations = tuple(observations)

    def init(key: jax.Array, space: CellSpace = None) -> Any:
        state = strategy.init(key, space) if space is not None else strategy.init(key)
        return strategy.tell(state, observations) if observations else state

    return Strategy(init, strategy.ask, strategy.tell)
