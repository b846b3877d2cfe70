"""Point-prediction baselines for final values of partial curves.

* :func:`last_value` - the last observed value;
* :func:`pow3_least_squares` - Domhan's pow3 ``c - a * epoch^-alpha`` fitted by least
  squares to each curve's observed epochs (scipy); with fewer than three observed values
  it falls back to the last value;
* :func:`mmf_least_squares` - the MMF (Morgan-Mercer-Flodin) sigmoid of Domhan et al.,
  the same way; fewer than four observed values: the last value;
* :class:`SVRPredictor` - Baker et al. 2018: a nu-SVR (scikit-learn) from features of the
  observed part of the curve (values resampled at fixed fractions of the observed span,
  their first and second differences) and of the run's metadata (:func:`meta_features`:
  parameters, depth, learning rate, ... where the tables have them) to the final value,
  trained on curves of other datasets truncated at the same fraction of training; nu and
  C chosen by cross-validation grouped by source dataset (:data:`SVR_GRID`), on the
  sources only.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import NuSVR


def _last(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    idx = mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)
    return values[np.arange(len(values)), idx]


def last_value(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Last observed value of each curve, [N] (``values``, ``mask``: [N, T])."""
    return _last(np.asarray(values, np.float64), np.asarray(mask, bool))


def _pow3(x, c, a, alpha):
    return c - a * np.power(x, -alpha)


def pow3_least_squares(
    values: np.ndarray,
    mask: np.ndarray,
    epochs: np.ndarray,
    horizon,
    *,
    clip=(0.0, 1.0),
) -> np.ndarray:
    """pow3 extrapolation of each curve to epoch ``horizon`` (int or [N]), [N].

    Predictions are clipped to ``clip`` (None: no clipping); a failed or degenerate fit
    falls back to the last observed value.
    """
    values, mask = np.asarray(values, np.float64), np.asarray(mask, bool)
    epochs = np.asarray(epochs, np.float64)
    horizon = np.broadcast_to(np.asarray(horizon, np.float64), (len(values),))
    out = last_value(values, mask)
    for i in range(len(values)):
        x, y = epochs[mask[i]], values[i, mask[i]]
        x = np.maximum(x, 1.0)  # pow3 is undefined at epoch 0
        if len(x) < 3:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            try:
                p, _ = curve_fit(_pow3, x, y, p0=(y[-1], max(y[-1] - y[0], 1e-3), 0.5), maxfev=2000)
            except (RuntimeError, ValueError):
                continue
        pred = _pow3(horizon[i], *p)
        if np.isfinite(pred):
            out[i] = pred
    return np.clip(out, *clip) if clip is not None else out


def _mmf(x, alpha, beta, kappa, delta):
    return alpha - (alpha - beta) / (1.0 + np.power(np.maximum(kappa * x, 1e-12), delta))


def mmf_least_squares(
    values: np.ndarray,
    mask: np.ndarray,
    epochs: np.ndarray,
    horizon,
    *,
    clip=(0.0, 1.0),
) -> np.ndarray:
    """MMF ``alpha - (alpha - beta) / (1 + (kappa * epoch)^delta)`` extrapolated to
    ``horizon``, [N]; bounded least squares (values of an accuracy-like scale: the bounds
    keep the asymptote ``alpha`` in [0, 1.5]). Fewer than four observed values or a failed
    fit: the last observed value."""
    values, mask = np.asarray(values, np.float64), np.asarray(mask, bool)
    epochs = np.asarray(epochs, np.float64)
    horizon = np.broadcast_to(np.asarray(horizon, np.float64), (len(values),))
    out = last_value(values, mask)
    for i in range(len(values)):
        x, y = np.maximum(epochs[mask[i]], 1.0), values[i, mask[i]]
        if len(x) < 4:
            continue
        p0 = (min(y[-1] + 0.05, 1.0), min(max(y[0], 0.0), 1.0), 1.0 / np.median(x), 1.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            try:
                p, _ = curve_fit(_mmf, x, y, p0=p0, bounds=([0, 0, 1e-4, 0.05], [1.5, 1.0, 10.0, 10.0]), maxfev=4000)
            except (RuntimeError, ValueError):
                continue
        pred = _mmf(horizon[i], *p)
        if np.isfinite(pred):
            out[i] = pred
    return np.clip(out, *clip) if clip is not None else out


def curve_features(values: np.ndarray, mask: np.ndarray, *, num_points: int = 10) -> np.ndarray:
    """Baker-style features [N, 3 * num_points - 3]: each curve's observed values linearly
    resampled at ``num_points`` equally spaced positions of its observed span, then their
    first and second differences."""
    values, mask = np.asarray(values, np.float64), np.asarray(mask, bool)
    out = np.empty((len(values), num_points))
    for i in range(len(values)):
        y = values[i, mask[i]]
        out[i] = np.interp(np.linspace(0, len(y) - 1, num_points), np.arange(len(y)), y)
    d1 = np.diff(out, axis=1)
    return np.concatenate([out, d1, np.diff(d1, axis=1)], axis=1)


#: metadata columns known before training (architecture, hyperparameters) under one name
#: each, with the names the tables use; outcome columns (test accuracy, wall time) never
META_COLUMNS = {
    "num_params": ("num_params", "params"),
    "depth": ("depth", "num_layers"),
    "lr": ("lr", "learning_rate"),
    "batch_size": ("batch_size",),
    "weight_decay": ("weight_decay",),
    "momentum": ("momentum",),
    "max_dropout": ("max_dropout",),
    "max_units": ("max_units",),
    "num_blocks": ("num_blocks",),
    "num_filters": ("num_filters",),
    "filter_size": ("filter_size",),
}
#: scale parameters: log10 (positive by construction)
_LOG = {"num_params", "lr", "weight_decay", "batch_size", "max_units", "num_filters"}


def _meta_column(meta: dict, name: str):
    for alias in META_COLUMNS[name]:
        col = meta.get(alias)
        if col is not None and np.asarray(col).dtype.kind in "iuf":
            col = np.asarray(col, np.float64)
            if np.all(np.isfinite(col)) and (name not in _LOG or np.all(col > 0)):
                return col
    return None


def shared_meta_columns(metas) -> tuple[str, ...]:
    """The :data:`META_COLUMNS` every table's metadata (``CurveTable.meta``) has."""
    return tuple(n for n in META_COLUMNS if all(_meta_column(m, n) is not None for m in metas))


def meta_features(meta: dict, columns) -> np.ndarray:
    """[N, len(columns)] features of the named metadata columns (log10 of scales)."""
    cols = [_meta_column(meta, n) for n in columns]
    cols = [np.log10(c) if n in _LOG else c for n, c in zip(columns, cols)]
    return np.stack(cols, axis=1) if cols else np.empty((0, 0))


#: (nu, C) candidates of the grouped cross-validation
SVR_GRID = tuple((nu, c) for nu in (0.25, 0.5, 0.75) for c in (0.1, 1.0, 10.0))


class SVRPredictor:
    """nu-SVR from curve (and metadata) features to final value (Baker et al. 2018), one
    per cutoff.

    ``fit(..., groups=)`` with two or more source datasets chooses (nu, C) from
    :data:`SVR_GRID` by grouped K-fold cross-validation (each fold leaves whole source
    datasets out, as the target is left out), then refits on every source curve; without
    groups the given ``nu``, ``C``; the cross-validation runs on a seeded subsample of at
    most ``max_cv`` curves. ``choice`` records what was chosen.
    """

    def __init__(
        self,
        *,
        nu: float = 0.5,
        C: float = 1.0,
        num_points: int = 10,
        max_train: int | None = 3000,
        max_cv: int | None = 400,
        seed: int = 0,
    ):
        self.nu, self.C = nu, C
        self.max_cv = max_cv
        self.num_points = num_points
        self.max_train = max_train
        self.seed = seed
        self.choice: dict = {"nu": nu, "C": C, "cv_mae": None}
        self.model = self._pipeline(nu, C)

    @staticmethod
    def _pipeline(nu, C):
        return make_pipeline(StandardScaler(), NuSVR(nu=nu, C=C, kernel="rbf"))

    def _x(self, values, mask, extra):
        x = curve_features(values, mask, num_points=self.num_points)
        return x if extra is None or extra.size == 0 else np.concatenate([x, extra], axis=1)

    def fit(self, values: np.ndarray, mask: np.ndarray, final: np.ndarray, *, extra=None, groups=None) -> SVRPredictor:
        """Train on truncated curves [N, T] (+ mask), their final values [N], optional
        metadata features ``extra`` [N, F] and source-dataset ``groups`` [N]."""
        x = self._x(values, mask, extra)
        y = np.asarray(final, np.float64)
        g = None if groups is None else np.asarray(groups)
        if self.max_train is not None and len(x) > self.max_train:
            keep = np.sort(np.random.default_rng(self.seed).choice(len(x), self.max_train, replace=False))
            x, y = x[keep], y[keep]
            g = None if g is None else g[keep]
        if g is not None and len(np.unique(g)) >= 2:
            cv = GroupKFold(n_splits=min(3, len(np.unique(g))))
            # the choice is made on a seeded subsample (an SVR fit grows ~ quadratically
            # with the rows, and 27 fits on 2 shared cores take minutes); the refit uses all
            sub = np.arange(len(x))
            if self.max_cv is not None and len(x) > self.max_cv:
                sub = np.sort(np.random.default_rng(self.seed + 1).choice(len(x), self.max_cv, replace=False))
            xs, ys, gs = x[sub], y[sub], g[sub]
            scores = {}
            for nu, c in SVR_GRID:
                err = [
                    np.mean(np.abs(self._pipeline(nu, c).fit(xs[tr], ys[tr]).predict(xs[te]) - ys[te]))
                    for tr, te in cv.split(xs, ys, gs)
                ]
                scores[nu, c] = float(np.mean(err))
            (self.nu, self.C), best = min(scores.items(), key=lambda kv: kv[1])
            self.choice = {"nu": self.nu, "C": self.C, "cv_mae": best}
        self.model = self._pipeline(self.nu, self.C).fit(x, y)
        return self

    def predict(self, values: np.ndarray, mask: np.ndarray, *, extra=None) -> np.ndarray:
        """Predicted final values [N] of truncated curves [N, T]."""
        return self.model.predict(self._x(values, mask, extra))
