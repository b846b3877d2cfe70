"""What a curve prediction is: :class:`Prediction` (posterior draws of N curves' parameters,
their predictive draws, points, densities and intervals in table units) and
:func:`compose_draws` (the predictive's parts under a calibration, a spread and a scale).
Made by :mod:`nax.curves.predict`."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from nax.curves import basis, models
from nax.curves import calibration as calib
from nax.curves import spread as spread_lib
from nax.curves.calibration import Calibration
from nax.curves.observations import DatasetScale, from_model_scale, to_model_scale


@dataclasses.dataclass
class Prediction:
    """Posterior predictive of ``N`` curves.

    ``z``: [S, N, D] posterior draws of each curve's parameters; ``horizon``: int [N]
    epochs of full training; values are in table units (accuracy fraction, or the loss
    when ``minimize``). ``samples`` [S, N] are draws of the value observed at the horizon
    (observation noise included). ``diagnostics`` says whether inference succeeded.

    ``t_obs``, ``y_last``: [N] normalised time and model-scale value of each curve's last
    observation; ``calibration``: the prior's extrapolation noise
    (:mod:`nax.curves.calibration`), added to every value past ``t_obs``; None: the
    uncalibrated model predictive. ``scale``: the target's :class:`DatasetScale` when its
    values were put on the model scale by their own affine map (None: the natural scale,
    accuracy or ``exp(-loss)``). ``strength``: how strongly the sources were transferred
    when chosen from the target's data (:mod:`nax.curves.strength`), else None.
    ``spread``: [N] factors by which every draw's distance from its curve's median draw is
    multiplied on the model scale (:mod:`nax.curves.spread`, recalibrated on the target's
    prefixes); None: as fitted. The median, so :attr:`point`, is the same either way.
    """

    z: jax.Array
    horizon: np.ndarray
    families: tuple[str, ...]
    minimize: bool
    seed: int
    model: str
    method: str
    diagnostics: dict
    seconds: float
    t_obs: np.ndarray | None = None
    y_last: np.ndarray | None = None
    calibration: Calibration | None = None
    scale: DatasetScale | None = None
    strength: dict | None = None
    spread: np.ndarray | None = None
    samples: np.ndarray = dataclasses.field(init=False)

    def __post_init__(self):
        self.samples = self.predict_at(self.horizon[:, None])[..., 0]

    @property
    def ok(self) -> bool:
        return bool(self.diagnostics.get("ok", False))

    @property
    def calibrated(self) -> bool:
        return self.calibration is not None and self.t_obs is not None

    @property
    def mean(self) -> np.ndarray:
        """Posterior-predictive mean of the final value, [N].

        For accuracies the noise terms have mean zero, so this is the posterior mean of the
        expected curve at the horizon (no Monte Carlo noise from the heavy-tailed noise
        draws), plus the extrapolation term's location if the calibration was adapted to
        the target (``d``); for losses the mean of the draws.
        """
        if (self.minimize and self.scale is None) or self.spread is not None:
            return self.samples.mean(0)
        mean = self.final_mean_scale()[0].mean(0)
        if self.calibrated:  # a within-target shift of the extrapolation term
            mean = mean + calib.ext_shift(self.calibration, 1.0 - self.t_obs, 1.0 - self.y_last)
        return mean if self.scale is None else self.scale.from_model(mean)

    @property
    def point(self) -> np.ndarray:
        """The point prediction of the final value, [N]: the **median** of the predictive
        draws (table units).

        The median minimises the expected absolute error (what the benchmarks score), and
        it commutes with the monotone maps between the model scale and table units
        (``-log`` of ``exp(-loss)`` clipped at 1, a dataset's affine scale), so the clip at
        the metric's bound and heavy-tailed extrapolation noise do not pull it, as they
        pull :attr:`mean` (R13 notes: loss-curve MAE 1.01 with the mean vs 0.49 with the
        median; accuracies within 0.006 either way). A :attr:`spread` factor leaves it as it is
        (taken from the unscaled draws: the two middle draws of an even number would
        otherwise average differently under ``-log``).
        """
        if self.spread is not None:
            return np.median(dataclasses.replace(self, spread=None).samples, axis=0)
        return np.median(self.samples, axis=0)

    def final_mean_scale(self) -> tuple[np.ndarray, np.ndarray]:
        """Expected value at the horizon and observation-noise scale of each draw, both
        [S, N] on the model scale (:mod:`nax.curves.observations`)."""
        t = jnp.ones((len(self.horizon), 1), jnp.float32)
        m = np.asarray(_curve_mean(self.z, t, self.families), np.float64)[..., 0]
        return m, np.asarray(basis.noise_scale(self.z), np.float64)

    @property
    def std(self) -> np.ndarray:
        """Posterior-predictive standard deviation of the final value, [N]."""
        return self.samples.std(0)

    def quantile(self, q) -> np.ndarray:
        """Quantiles ``q`` (scalar or [Q]) of the final value: [N] or [Q, N]."""
        return np.quantile(self.samples, q, axis=0)

    def predict_at(self, epochs) -> np.ndarray:
        """Predictive draws [S, N, K] of the observed value at ``epochs`` (int [K] or [N, K]).

        The noise of a curve at a given epoch is the same draw whatever else is asked, so
        ``predict_at([..., horizon])[..., -1]`` equals ``samples``.
        """
        y, ext, gap, head = self.draw_components(epochs)
        cal = self.calibration if self.calibrated else None
        return compose_draws(y, ext, gap, head, cal, self.minimize, self.scale, self.spread)

    def model_draws(self, epochs) -> np.ndarray:
        """:meth:`predict_at` on the model scale (before the map to table units and the
        clip at ``exp(-loss) <= 1``): [S, N, K]."""
        y, ext, gap, head = self.draw_components(epochs)
        if self.calibrated:
            y = y + calib.ext_scale(self.calibration, gap, head) * (self.calibration.d + ext)
        return y if self.spread is None else spread_lib.rescale(y, self.spread)

    def draw_components(self, epochs):
        """The parts the predictive draws at ``epochs`` are made of, so that they can be
        recomposed under another calibration (:func:`compose_draws`) without a new fit:
        ``y`` [S, N, K] model-scale draws without extrapolation noise, ``ext`` [S, N, K] its
        standard Student-t draws, ``gap`` and ``headroom`` [N, K]."""
        epochs = np.broadcast_to(np.asarray(epochs), (len(self.horizon),) + np.shape(epochs)[-1:])
        t = jnp.asarray(epochs / self.horizon[:, None], jnp.float32)
        mean = np.asarray(_curve_mean(self.z, t, self.families), np.float64)
        scale = np.asarray(basis.noise_scale(self.z), np.float64)[..., None]

        def t_draws(stream):
            base = jax.random.fold_in(jax.random.key(self.seed), stream)
            out = np.empty(mean.shape)
            for e in np.unique(epochs):
                draw = np.asarray(
                    jax.random.t(
                        jax.random.fold_in(base, int(e)),
                        models.NOISE_DF,
                        mean.shape[:2],
                    )
                )
                rows, cols = np.nonzero(epochs == e)
                out[:, rows, cols] = draw[:, rows]
            return out

        y = mean + scale * t_draws(1)
        if self.t_obs is None:
            return y, None, None, None
        gap = np.asarray(t, np.float64) - self.t_obs[:, None]
        return y, t_draws(2), gap, 1.0 - self.y_last[:, None]

    def log_density(self, final_values) -> np.ndarray:
        """Log predictive density of observed final values [N] (table units) -> [N]."""
        v = np.asarray(final_values, np.float64)
        y = to_model_scale(v, self.minimize) if self.scale is None else self.scale.to_model(v)
        log_k = 0.0
        if self.spread is not None:
            # the density of m + k (Y - m): the unscaled one at m + (y - m) / k, over k
            raw = dataclasses.replace(self, spread=None).model_draws(self.horizon[:, None])[..., 0]
            y = spread_lib.unscaled_values(y, np.median(raw, axis=0), self.spread)
            log_k = np.log(np.asarray(self.spread, np.float64))
        if self.calibrated:
            m, s = self.final_mean_scale()
            lpd = calib.log_density(self.calibration, m, s, y, 1.0 - self.t_obs, 1.0 - self.y_last)
        else:
            t = jnp.ones((len(self.horizon), 1), jnp.float32)
            ll = _log_lik(self.z, jnp.asarray(y, jnp.float32)[:, None], t, self.families)[..., 0]
            lpd = np.asarray(logsumexp(ll, axis=0) - np.log(ll.shape[0]), np.float64)
        lpd = lpd - log_k
        if self.scale is not None:
            return lpd + self.scale.log_jacobian()
        return lpd - v if self.minimize else lpd  # Jacobian of y = exp(-v)


def compose_draws(
    y, ext, gap, headroom, calibration, minimize: bool, scale: DatasetScale | None = None, spread=None
) -> np.ndarray:
    """Predictive draws in table units from the parts of
    :meth:`Prediction.draw_components` under ``calibration`` (None: uncalibrated), rescaled
    about each curve's median by ``spread`` ([N] or None, :mod:`nax.curves.spread`), mapped
    back by the dataset's ``scale`` when there is one."""
    if calibration is not None:
        y = y + calib.ext_scale(calibration, gap, headroom) * (calibration.d + ext)
    if spread is not None:
        y = spread_lib.rescale(y, spread)
    if scale is not None:
        return scale.from_model(y)  # an affine map: nothing to clip
    # exp(-loss) is at most 1: a noise draw above it would be a negative loss
    return from_model_scale(np.clip(y, 1e-12, 1.0) if minimize else y, minimize)


_curve_mean = jax.jit(basis.curve_mean, static_argnums=2)
_log_lik = jax.jit(models.log_likelihood, static_argnums=3)


__all__ = ["Prediction", "compose_draws"]
