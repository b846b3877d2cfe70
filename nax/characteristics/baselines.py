"""Pooled (non-hierarchical) predictors of the within-dataset score, for comparison.

Every baseline pools the rows of all given datasets, each dataset's accuracies turned into
normal scores first (``model.normal_scores``) so that datasets on different scales can be
pooled, and returns a function from encodings ``(n, E)`` to predicted scores ``(n,)``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import threadpoolctl
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import RidgeCV

from nax import space as space_lib
from nax.characteristics import featurize as feats

Predictor = Callable[[np.ndarray], np.ndarray]
RIDGE_ALPHAS = np.logspace(-3, 4, 15)


def _columns(space, prefix_ok) -> np.ndarray:
    _, names = feats.all_features(space)
    return np.array([prefix_ok(n) for n in names])


def _ridge(encodings, scores, space, cols) -> Predictor:
    X = feats.centered(encodings, space)[:, cols]
    # generalised cross-validation picks the penalty: no tuning on the target
    r = RidgeCV(alphas=RIDGE_ALPHAS).fit(X, scores)
    return lambda enc: r.predict(feats.centered(enc, space)[:, cols])


def ridge_onehot(encodings, scores, *, seed: int = 0, space=space_lib.nb201) -> Predictor:
    """Ridge regression on the one-hot operation of each edge (30 features on NB201)."""
    cols = _columns(space, lambda n: n.startswith("edge ") and " & " not in n)
    return _ridge(encodings, scores, space, cols)


def ridge_pairwise(encodings, scores, *, seed: int = 0, space=space_lib.nb201) -> Predictor:
    """Ridge regression on one-hot edge operations and all pairs of them (405 on NB201)."""
    cols = _columns(space, lambda n: n.startswith("edge "))
    return _ridge(encodings, scores, space, cols)


def ridge_characteristics(encodings, scores, *, seed: int = 0, space=space_lib.nb201) -> Predictor:
    """Ridge regression on exactly the characteristics the hierarchical model uses (771 on NB201).

    The model without its hierarchy: one penalty for every characteristic instead of a
    scale per kind, and the sources pooled instead of related through the population.
    """
    cols = np.ones(len(feats.all_features(space)[1]), bool)
    return _ridge(encodings, scores, space, cols)


def gbm(encodings, scores, *, seed: int = 0, space=space_lib.nb201) -> Predictor:
    """Gradient-boosted trees (sklearn HistGradientBoosting) on the edge operations as categories."""
    # small leaves: with a few dozen rows the default (20) cannot split at all
    model = HistGradientBoostingRegressor(
        max_iter=200,
        learning_rate=0.1,
        min_samples_leaf=5,
        categorical_features=[True] * space.num_edges,
        early_stopping=False,
        random_state=seed,
    )
    model.fit(np.asarray(encodings), scores)
    return lambda enc: model.predict(np.atleast_2d(np.asarray(enc)))


BASELINES: dict[str, Callable[..., Predictor]] = {
    "ridge_onehot": ridge_onehot,
    "ridge_pairwise": ridge_pairwise,
    "ridge_characteristics": ridge_characteristics,
    "gbm": gbm,
}


def fit_pooled(name: str, encodings, scores, *, seed: int = 0, space=space_lib.nb201) -> Predictor:
    """Fit baseline ``name`` on pooled rows ``encodings (n, E)``, normal ``scores (n,)``."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; available: {', '.join(BASELINES)}")
    # one thread: OpenMP/BLAS pools on small problems on a shared machine only spin
    with threadpoolctl.threadpool_limits(1):
        predict = BASELINES[name](np.asarray(encodings), np.asarray(scores, np.float64), seed=seed, space=space)

    def predict_1thread(enc):
        with threadpoolctl.threadpool_limits(1):
            return predict(enc)

    return predict_1thread
