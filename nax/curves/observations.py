"""Partial learning curves as the model sees them: validated, masked, in normalised time.

Accuracies (fractions in [0, 1]) are modelled as they are. Losses and perplexities
(``minimize=True``) must be non-negative and are mapped to ``exp(-value)``, which is in
(0, 1] and increases as the loss falls (for a cross-entropy loss it is the geometric mean
probability of the correct class); predictions are mapped back with ``-log``.

Any other metric (a perplexity, values below 0 or above 1), or a target whose level is
not comparable with its sources', can instead be put on a :class:`DatasetScale`: an affine
map fitted on the target dataset's own prefixes, with the direction declared. Only the
shape of learning then transfers (``CurvePrior.at_strength(rho, "shape")``).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

#: where a :class:`DatasetScale` puts the target's typical start and its best observed
#: value on the model scale (a priori: the prefix spans [0.1, 0.5], so the model's (0, 1)
#: leaves room for later gains of up to 1.25x the observed range and for runs starting
#: a quarter of it worse than the typical start)
SCALE_LOW, SCALE_HIGH = 0.1, 0.5
#: quantile of the runs' first observed values taken as the start (towards the worse
#: end, robust to a single diverged run)
SCALE_START_QUANTILE = 0.25


class DirectionMismatch(ValueError):
    """Source datasets whose direction (loss vs accuracy) differs from the target's, with
    no declaration that mixing is intended. ``target``: its name; ``sources``: name (or
    file) -> ``minimize`` of every source whose direction differs."""

    def __init__(self, target: str, target_minimize: bool, sources: dict):
        self.target, self.target_minimize, self.sources = target, bool(target_minimize), dict(sources)
        kind = lambda m: "loss (minimize)" if m else "accuracy (maximize)"
        names = ", ".join(f"{n} [{kind(m)}]" for n, m in sorted(self.sources.items()))
        super().__init__(
            f"target {target} is a {kind(target_minimize)} but source(s) {names} are not; declare mixed "
            "directions explicitly (only the curve shape then transfers), or pass sources of the target's direction"
        )


def check_directions(target_minimize: bool, sources: dict, *, allow_mixed: bool = False, target: str = "target"):
    """Raise :class:`DirectionMismatch` if any source (name or file -> ``minimize``) runs in
    another direction than the target, unless ``allow_mixed``."""
    other = {n: bool(m) for n, m in sources.items() if bool(m) != bool(target_minimize)}
    if other and not allow_mixed:
        raise DirectionMismatch(target, target_minimize, other)


class DatasetScale(NamedTuple):
    """An affine map of one dataset's metric onto the model scale:
    ``y = SCALE_LOW + (SCALE_HIGH - SCALE_LOW) * (v - start) / (best - start)``.

    ``start``: a typical first value of the dataset's runs; ``best``: its best observed
    value (below ``start`` for a loss, so the direction is in the sign of the span);
    ``minimize``: the declared direction. Any real-valued metric works; predictions map
    back exactly (:meth:`from_model`), with no clipping.
    """

    start: float
    best: float
    minimize: bool

    @property
    def slope(self) -> float:
        return (SCALE_HIGH - SCALE_LOW) / (self.best - self.start)

    def to_model(self, values):
        return SCALE_LOW + self.slope * (np.asarray(values, np.float64) - self.start)

    def from_model(self, y):
        return self.start + (np.asarray(y, np.float64) - SCALE_LOW) / self.slope

    def log_jacobian(self) -> float:
        """``log |dy/dv|``: add to a model-scale log density to get one in table units."""
        return float(np.log(abs(self.slope)))

    def to_dict(self) -> dict:
        return {"start": float(self.start), "best": float(self.best), "minimize": bool(self.minimize)}


def dataset_scale(values, mask=None, *, minimize: bool) -> DatasetScale:
    """The :class:`DatasetScale` of a dataset from its (partial) curves ``values`` [N, T]
    (NaN / ``mask`` False where unobserved): start = the :data:`SCALE_START_QUANTILE`
    (worse side) of the runs' first observed values, best = the best observed value.
    A dataset whose values do not move yet gets a span of 10 % of its magnitude (or 1e-3)."""
    values = np.asarray(values, np.float64)
    values = values[None] if values.ndim == 1 else values
    mask = np.isfinite(values) if mask is None else np.asarray(mask, bool).reshape(values.shape)
    if not mask.any():
        raise ValueError("a dataset scale needs at least one observed value")
    first = values[np.arange(len(values)), np.argmax(mask, axis=1)][mask.any(axis=1)]
    obs = values[mask]
    sign = -1.0 if minimize else 1.0  # +1: larger is better
    start = float(np.quantile(first, 1.0 - SCALE_START_QUANTILE if minimize else SCALE_START_QUANTILE))
    best = float(obs.min() if minimize else obs.max())
    span = max(sign * (best - start), 0.1 * abs(start), 1e-3)
    return DatasetScale(start, start + sign * span, bool(minimize))


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
    scale: DatasetScale | None = None,
) -> Observed:
    """Validate a batch of partial curves and put it on the model scale.

    ``values``: [N, T] per-epoch values (NaN where not observed); ``mask``: bool [N, T],
    default ``isfinite(values)``; gaps inside a curve are simply unobserved epochs.
    ``epochs``: int [T] the epoch of each column, default 1..T; ``horizon``: epochs of
    full training, int or int [N], default the last epoch. Raises ``ValueError`` for a
    NaN at an observed position, a curve with nothing observed, values observed after
    the horizon, accuracies outside [0, 1] or negative losses. ``scale``: map values with
    this :class:`DatasetScale` instead (any real values).
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
    if scale is not None:
        pass  # any real metric: the dataset's own affine map
    elif minimize:
        if (obs < 0).any():
            raise ValueError("minimize=True expects non-negative losses; found a negative value")
    elif (obs < 0).any() or (obs > 1).any():
        hint = " (percentages? divide by 100)" if obs.max() > 1 and obs.max() <= 100 else ""
        raise ValueError(
            f"accuracy values must be fractions in [0, 1], found range [{obs.min():.4g}, {obs.max():.4g}]{hint}; "
            "use minimize=True (--minimize) for losses"
        )
    zeroed = np.where(mask, values, 0.0)
    y = np.where(mask, scale.to_model(zeroed) if scale is not None else to_model_scale(zeroed, minimize), 0.0)
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
