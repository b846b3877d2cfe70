"""Simulated searches on a table of known accuracies, and the metrics reported on them.

A search is simulated on ``candidates`` (encodings ``(m, E)`` with true accuracies
``(m,)``): it starts from the indices of ``k`` random evaluations and returns the indices
it evaluates next, in order. Evaluating a cell means reading its accuracy from the table.

The searches that decide as they go (``model_guided``, ``regularized_evolution``) run
through the search driver (:func:`nax.search.loop.run_search`, one epoch charged per
evaluation, the ``k`` evaluations told to the strategy first) with the strategies
``nax search`` uses, so an architecture is never evaluated twice; ``static_order`` and
``random_order`` are orders fixed in advance.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import numpy as np
import scipy.stats

from nax import space as space_lib
from nax.characteristics import model as model_lib
from nax.search import loop, strategies
from nax.search.evaluators import ArrayEvaluator
from nax.search.strategies import Observation, Pool, Strategy

TOP_FRACTION = 0.01


def top_mask(accuracy: np.ndarray, fraction: float = TOP_FRACTION) -> np.ndarray:
    """True for the cells whose accuracy is at least that of the ``ceil(fraction m)``-th best."""
    n_top = max(1, int(np.ceil(fraction * len(accuracy))))
    threshold = np.sort(accuracy)[-n_top]
    return accuracy >= threshold


def ranking_metrics(pred: np.ndarray, accuracy: np.ndarray) -> dict:
    """Spearman and Kendall correlation of ``pred`` with ``accuracy``, and top-1% precision.

    A constant prediction carries no ranking: both correlations are then 0 (scipy would
    return NaN), and its "top 1%" is the first cells in table order.
    """
    true_top = top_mask(accuracy)
    n_top = int(np.ceil(TOP_FRACTION * len(accuracy)))
    pred_top = np.argsort(-pred, kind="stable")[:n_top]
    if np.ptp(pred) == 0:
        return dict(spearman=0.0, kendall=0.0, top1_precision=float(true_top[pred_top].mean()))
    return dict(
        spearman=float(scipy.stats.spearmanr(pred, accuracy).statistic),
        kendall=float(scipy.stats.kendalltau(pred, accuracy).statistic),
        top1_precision=float(true_top[pred_top].mean()),
    )


def search_metrics(proposed: np.ndarray, init: np.ndarray, accuracy: np.ndarray, at: int = 50) -> dict:
    """Evaluations until the first proposal in the true top 1%, and regret after ``at`` proposals.

    ``evals_to_top1`` counts the search's own proposals (not the ``k`` initial random
    evaluations), 1 if the first proposal is a top-1% cell; ``None`` if none of the
    proposals is. ``regret_at_50`` is the best accuracy of all cells minus the best among
    the initial evaluations and the first ``at`` proposals (accuracy units of the table).
    """
    hit = np.flatnonzero(top_mask(accuracy)[proposed])
    seen = np.concatenate([init, proposed[:at]]).astype(np.int64)
    return dict(
        evals_to_top1=int(hit[0] + 1) if len(hit) else None,
        regret_at_50=float(accuracy.max() - accuracy[seen].max()),
    )


def static_order(pred: np.ndarray, init: np.ndarray, steps: int) -> np.ndarray:
    """Propose the unevaluated cells in decreasing order of a fixed prediction."""
    order = np.argsort(-pred, kind="stable")
    return order[~np.isin(order, init)][:steps]


def random_order(rng: np.random.Generator, m: int, init: np.ndarray, steps: int | None = None) -> np.ndarray:
    """Random search without repeats (all ``m`` cells, less ``init``, when ``steps`` is None)."""
    order = rng.permutation(m)
    return order[~np.isin(order, init)][:steps]


def _search(
    strategy: Strategy,
    encodings: np.ndarray,
    accuracy: np.ndarray,
    init: np.ndarray,
    steps: int,
    min_steps: int,
    key: jax.Array,
    space: space_lib.CellSpace,
) -> np.ndarray:
    """Run ``strategy`` (warm-started with the ``init`` evaluations) for at most ``steps``
    evaluations, ending once at least ``min_steps`` were made and one is in the true top 1%;
    the indices it evaluated, in order."""
    init = np.asarray(init, np.int64)
    evaluator = ArrayEvaluator(encodings, accuracy, space)
    warm = strategies.warm_start(strategy, [Observation(encodings[i], float(accuracy[i])) for i in init])
    row = {int(i): n for n, i in enumerate(space.index(encodings))}
    top = top_mask(accuracy)
    hits = []

    def until(step: loop.Step) -> bool:
        hits.append(bool(top[row[int(space.index(step.run.enc[None])[0])]]))
        return any(hits) and len(hits) >= min_steps

    out = loop.run_search(
        warm, evaluator, loop.Budget(epochs=steps), key, until=until, max_runs=len(encodings) - len(set(init.tolist()))
    )
    return np.array(
        [row[int(i)] for i in space.index(np.stack([r.enc for r in out.runs]))] if out.runs else [], np.int64
    )


class GreedyState(NamedTuple):
    pool: Pool
    asked_P: np.ndarray
    observed: tuple[tuple[int, float], ...]  # (pool position, value), in the order told


def _greedy(
    model: model_lib.CharacteristicModel, space: space_lib.CellSpace, encodings: np.ndarray, transfer: bool
) -> Strategy:
    """Greedy on the posterior mean: each ask takes the unasked cell of highest mean under
    the model conditioned on every value told so far (``transfer`` False: the target alone)."""
    pool = strategies.make_pool(space, encodings)

    def init(key: jax.Array, space_: space_lib.CellSpace = space) -> GreedyState:
        del key
        return GreedyState(pool, np.zeros(len(pool.encs_PxE), bool), ())

    def ask(state: GreedyState, key: jax.Array) -> tuple[np.ndarray, GreedyState]:
        del key
        idx = [p for p, _ in state.observed]
        post = model_lib.update(
            model, (pool.encs_PxE[idx], np.array([v for _, v in state.observed])), transfer=transfer
        )
        mean, _ = model_lib.score(post, pool.encs_PxE, return_std=False)
        mean[state.asked_P] = -np.inf
        pick = int(np.argmax(mean))
        return pool.encs_PxE[[pick]], state._replace(asked_P=strategies._mark(state.asked_P, [pick]))

    def tell(state: GreedyState, observations: Sequence[Observation]) -> GreedyState:
        pos = strategies._positions(pool, [o.enc for o in observations]) if observations else []
        obs = state.observed + tuple((p, float(o.value)) for p, o in zip(pos, observations) if p is not None)
        return state._replace(asked_P=strategies._mark(state.asked_P, pos), observed=obs)

    return Strategy(init, ask, tell)


def model_guided(
    model: model_lib.CharacteristicModel,
    encodings: np.ndarray,
    accuracy: np.ndarray,
    init: np.ndarray,
    steps: int,
    *,
    min_steps: int = 50,
    transfer: bool = True,
    space: space_lib.CellSpace = space_lib.nb201,
) -> np.ndarray:
    """Greedy search on the posterior mean, updating the target with every result.

    Stops after ``steps`` proposals, or earlier once at least ``min_steps`` have been made
    and one of them is in the true top 1%.
    """
    return _search(
        _greedy(model, space, encodings, transfer),
        encodings,
        accuracy,
        init,
        steps,
        min_steps,
        jax.random.key(0),
        space,
    )


def regularized_evolution(
    rng: np.random.Generator,
    encodings: np.ndarray,
    accuracy: np.ndarray,
    init: np.ndarray,
    steps: int,
    *,
    population: int = 20,
    sample: int = 5,
    min_steps: int = 50,
    space: space_lib.CellSpace = space_lib.nb201,
) -> np.ndarray:
    """Regularized evolution (Real et al. 2019) as ``nax search`` runs it
    (:func:`nax.search.strategies.evolution`): population 20, tournament 5, one-edge
    mutation to a cell not evaluated yet. The ``k`` initial evaluations seed the population
    as part of its random initial members. Stops like ``model_guided``; its key is drawn
    from ``rng``.
    """
    strategy = strategies.evolution(space, population, sample, candidates=encodings)
    key = jax.random.key(int(rng.integers(2**31 - 1)))
    return _search(strategy, encodings, accuracy, init, steps, min_steps, key, space)
