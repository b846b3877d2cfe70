"""Partial learning curves as the model sees them: validated, masked, in normalised time.

Accuracies (fractions in [0, 1]) are modelled as they are. Losses and perplexities
(``minimize=True``) must be non-negative and are mapped to ``exp(-value)``, which is in
(0, 1] and increases as the loss falls (for a cross-entropy loss it is the geometric mean
probability of the correct class); predictions are mapped back with ``-log``.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Observed:
    """A batch of ``N`` curves padded to ``T`` epochs.

    ``y``: float32 [N, T] values on the model scale (0 where unobserved); ``mask``: bool
    [N, T]; ``t``: float32 [N, T] epoch / horizon; ``horizon``: int [N] epochs of full
    training; ``dataset``: int32 [N] index into ``dataset_names``.
    """

    y: np.ndarray
    mask: np.ndarray
    t: np.ndarray
    horizon: np.ndarray
    dataset: np.ndarray
    dataset_names: tuple[str, ...]
    minimize: bool

    @property
    def num_curves(self) -> int:
        return self.y.shape[0]


def to_model_scale(values: np.ndarray, minimize: bool) -> np.ndarray:
    """Table values (accuracy fraction, or loss if ``minimize``) -> model scale (0, 1]."""
    values = np.asarray(values, dtype=np.float64)
    return np.exp(-values) if minimize else values


def from_model_scale(y, minimize: bool):
    """Model scale -> table units (inverse of :func:`to_model_scale`)."""
    if not minimize:
        return y
    return -np.log(np.clip(np.asarray(y, dtype=np.float64), 1e-12, None))


def prepare(
    values: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    epochs: np.ndarray | None = None,
    horizon: int | np.ndarray | None = None,
    dataset: np.ndarray | None = None,
    dataset_names: tuple[str, ...] = ("target",),
    minimize: bool = False,
) -> Observed:
    """Validate a batch of partial curves and put it on the model scale.

    ``values``: [N, T] per-epoch values (NaN where not observed); ``mask``: bool [N, T],
    default ``isfinite(values)``; gaps inside a curve are simply unobserved epochs.
    ``epochs``: int [T] the epoch of each column, default 1..T; ``horizon``: epochs of
    full training, int or int [N], default the last epoch. Raises ``ValueError`` for a
    NaN at an observed position, a curve with nothing observed, values observed after
    the horizon, accuracies outside [0, 1] or negative losses.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[None]
    if values.ndim != 2:
        raise ValueError(f"curves must be a [curves, epochs] array, got shape {values.shape}")
    n, num_t = values.shape
    if mask is None:
        mask = np.isfinite(values)
    else:
        mask = np.asarray(mask, dtype=bool).reshape(values.shape)
        bad = mask & ~np.isfinite(values)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise ValueError(f"curve {r} has a non-finite value at observed column {c}; mark it unobserved in the mask")
    empty = ~mask.any(axis=1)
    if empty.any():
        raise ValueError(f"{int(empty.sum())} curve(s) have no observed value (first: row {int(np.argmax(empty))})")
    epochs = np.arange(1, num_t + 1) if epochs is None else np.asarray(epochs)
    if epochs.shape != (num_t,):
        raise ValueError(f"epochs must have shape ({num_t},), got {epochs.shape}")
    if horizon is None:
        horizon = int(epochs[-1])
    horizon = np.broadcast_to(np.asarray(horizon, dtype=np.int64), (n,)).copy()
    if (horizon <= 0).any():
        raise ValueError("horizon (epochs of full training) must be positive")
    last_obs = np.where(mask, epochs[None, :], -1).max(axis=1)
    too_long = last_obs > horizon
    if too_long.any():
        r = int(np.argmax(too_long))
        raise ValueError(
            f"curve {r} is observed up to epoch {int(last_obs[r])}, beyond its training length "
            f"(horizon) of {int(horizon[r])} epochs"
        )
    obs = values[mask]
    if minimize:
        if (obs < 0).any():
            raise ValueError("minimize=True expects non-negative losses; found a negative value")
    elif (obs < 0).any() or (obs > 1).any():
        hint = " (percentages? divide by 100)" if obs.max() > 1 and obs.max() <= 100 else ""
        raise ValueError(
            f"accuracy values must be fractions in [0, 1], found range [{obs.min():.4g}, {obs.max():.4g}]{hint}; "
            "use minimize=True (--minimize) for losses"
        )
    y = np.where(mask, to_model_scale(np.where(mask, values, 0.0), minimize), 0.0)
    t = np.clip(epochs[None, :] / horizon[:, None], 0.0, None)
    dataset = np.zeros(n, np.int32) if dataset is None else np.asarray(dataset, np.int32)
    return Observed(
        y=y.astype(np.float32),
        mask=mask,
        t=t.astype(np.float32),
        horizon=horizon,
        dataset=dataset,
        dataset_names=tuple(dataset_names),
        minimize=bool(minimize),
    )
