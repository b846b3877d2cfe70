"""Simulated searches on a table of known accuracies, and the metrics reported on them.

A search is simulated on ``candidates`` (encodings ``(m, E)`` with true accuracies
``(m,)``): it starts from the indices of ``k`` random evaluations and returns the indices
it evaluates next, in order. Evaluating a cell means reading its accuracy from the table.
"""

from __future__ import annotations

import numpy as np
import scipy.stats

from nax import space as space_lib
from nax.characteristics import model as model_lib

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


def model_guided(
    model: model_lib.CharacteristicModel,
    encodings: np.ndarray,
    accuracy: np.ndarray,
    init: np.ndarray,
    steps: int,
    *,
    min_steps: int = 50,
    transfer: bool = True,
) -> np.ndarray:
    """Greedy search on the posterior mean, updating the target with every result.

    Stops after ``steps`` proposals, or earlier once at least ``min_steps`` have been made
    and one of them is in the true top 1%.
    """
    top = top_mask(accuracy)
    evaluated = list(int(i) for i in init)
    proposed = []
    found = False
    while len(proposed) < steps and not (found and len(proposed) >= min_steps):
        post = model_lib.update(model, (encodings[evaluated], accuracy[evaluated]), transfer=transfer)
        mean, _ = model_lib.score(post, encodings, return_std=False)
        mean[evaluated] = -np.inf
        nxt = int(np.argmax(mean))
        evaluated.append(nxt)
        proposed.append(nxt)
        found = found or bool(top[nxt])
    return np.asarray(proposed, np.int64)


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
    """Regularized evolution (Real et al. 2019): population 20, tournament 5, one-edge mutation.

    The ``k`` initial evaluations seed the population (the newest ``population`` of them);
    until it is full, proposals are random cells. Every evaluation counts, repeats included.
    Stops like ``model_guided``. ``encodings`` must be indexable by ``space.index`` order
    through ``lookup`` (all cells of the space present).
    """
    lookup = np.full(space.size, -1, np.int64)
    lookup[space.index(encodings)] = np.arange(len(encodings))
    top = top_mask(accuracy)
    pop = [int(i) for i in init][-population:]
    proposed = []
    found = False
    while len(proposed) < steps and not (found and len(proposed) >= min_steps):
        if len(pop) < population:
            child = int(rng.integers(len(encodings)))
        else:
            contenders = rng.choice(len(pop), size=sample, replace=False)
            parent = pop[max(contenders, key=lambda c: accuracy[pop[c]])]
            enc = encodings[parent].copy()
            edge = int(rng.integers(space.num_edges))
            enc[edge] = (enc[edge] + int(rng.integers(1, space.num_ops))) % space.num_ops
            child = int(lookup[space.index(enc)])
            if child < 0:  # the table lacks this cell: a failed evaluation, try again
                continue
            pop.pop(0)
        pop.append(child)
        proposed.append(child)
        found = found or bool(top[child])
    return np.asarray(proposed, np.int64)
