"""Point-prediction baselines for final values of partial curves.

* :func:`last_value` - the last observed value;
* :func:`pow3_least_squares` - Domhan's pow3 ``c - a * epoch^-alpha`` fitted by least
  squares to each curve's observed epochs (scipy); with fewer than three observed values
  it falls back to the last value;
* :class:`SVRPredictor` - Baker et al. 2018: a nu-SVR (scikit-learn) from features of the
  observed part of the curve (values resampled at fixed fractions of the observed span,
  and their first differences) to the final value, trained on curves of other datasets
  truncated at the same fraction of training.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit
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


def curve_features(values: np.ndarray, mask: np.ndarray, *, num_points: int = 10) -> np.ndarray:
    """Baker-style features [N, 2 * num_points - 1]: each curve's observed values linearly
    resampled at ``num_points`` equally spaced positions of its observed span, then the
    first differences of those."""
    values, mask = np.asarray(values, np.float64), np.asarray(mask, bool)
    out = np.empty((len(values), num_points))
    for i in range(len(values)):
        y = values[i, mask[i]]
        out[i] = np.interp(np.linspace(0, len(y) - 1, num_points), np.arange(len(y)), y)
    return np.concatenate([out, np.diff(out, axis=1)], axis=1)


class SVRPredictor:
    """nu-SVR from curve features to final value (Baker et al. 2018), one per cutoff."""

    def __init__(
        self,
        *,
        nu: float = 0.5,
        C: float = 1.0,
        num_points: int = 10,
        max_train: int | None = 3000,
        seed: int = 0,
    ):
        self.num_points = num_points
        self.max_train = max_train
        self.seed = seed
        self.model = make_pipeline(StandardScaler(), NuSVR(nu=nu, C=C, kernel="rbf"))

    def fit(self, values: np.ndarray, mask: np.ndarray, final: np.ndarray) -> SVRPredictor:
        """Train on truncated curves [N, T] (+ mask) and their final values [N]."""
        x = curve_features(values, mask, num_points=self.num_points)
        y = np.asarray(final, np.float64)
        if self.max_train is not None and len(x) > self.max_train:
            keep = np.random.default_rng(self.seed).choice(len(x), self.max_train, replace=False)
            x, y = x[keep], y[keep]
        self.model.fit(x, y)
        return self

    def predict(self, values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Predicted final values [N] of truncated curves [N, T]."""
        return self.model.predict(curve_features(values, mask, num_points=self.num_points))
