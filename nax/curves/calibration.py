"""Extrapolation noise: calibrating the predictive of the unobserved part of a curve.

Given a prefix, the fitted curve shape pins the rest of the curve, but real curves leave
their smooth shape (step learning-rate schedules break plateaus), so the posterior
predictive of the final value is over-confident, and more so the less of the run has been
seen. The calibrated predictive adds a Student-t term to every value ``gap`` of normalised
time past the last observation:

    y(t) = m_z(t) + s_z * e_obs + sigma_ext * e_ext,  e_obs, e_ext ~ StudentT(NOISE_DF)
    sigma_ext = a * gap^b * headroom^c,  gap = max(t - t_obs, 0),  headroom = 1 - y_last

(model scale, see :mod:`nax.curves.observations`; ``y_last`` is the last observed value,
so a run at 0.15 accuracy may still move further than one at 0.9). Within a target
(:func:`adapt`) the term may also get a location, ``sigma_ext * (d + e_ext)``: when the
target's finished runs all end above (``d`` > 0) what their prefixes foretold, as when every
run of the dataset gains from the same learning-rate drop, that is a shift shared by its
runs, not noise that would blur which run is better. The sources' fit keeps ``d = 0``
(sources disagree on the sign of such a shift, so it does not transfer). ``a``, ``b``, ``c`` are
fitted by maximum likelihood of the *known* final values of the source datasets' runs
given their prefixes at several cutoffs, each prefix predicted exactly as a target would
be (the ``transfer`` model with the source prior, the dataset's level learned from the
prefixes; :func:`nax.curves.fitting.fit_calibration`). Only source curves are used, and the
result, a :class:`Calibration`, is stored in the :class:`~nax.curves.prior.CurvePrior`, so
every prediction with that prior is calibrated. This module is the maths only: it imports
no prediction and no prior.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize
import scipy.stats
from jax.scipy.special import logsumexp

from nax.curves import models
from nax.curves.observations import to_model_scale

KIND = "extrapolation_noise"
#: fractions of training observed in the source prefixes the calibration is fitted on
CUTOFFS = (0.1, 0.2, 0.35, 0.6)
#: box of (log a, b, c) for the maximum-likelihood fit
BOUNDS = ((-9.0, 1.0), (0.0, 4.0), (0.0, 3.0))
#: quadrature nodes per Student-t term (t = normal scale mixture over a Gamma precision)
NODES = 12
#: prior standard deviations of (log a, b, c, d) around the sources' calibration (d = 0)
#: when it adapts to the target's own finished runs (:func:`adapt`). A prior fitted by
#: :func:`nax.curves.fitting.fit_calibration` on >= :data:`ADAPT_MIN_SOURCES` source datasets
#: carries its own (log a, b, c) scales: the spread of the per-source-dataset fits of that
#: fold (``fit["adapt_scale"]``, floored at :data:`ADAPT_SCALE_MIN`), i.e. how far one
#: dataset's calibration strays from the pooled one. These values are only the fallback for
#: fewer sources (or a prior fitted before); they were set on the spread of the nine
#: leave-one-dataset-out fits on the Baker and nax/metadata sets (NOTES section 6), so a
#: benchmark on those sets with such a prior is not free of them. d: a shift of up to ~2
#: extrapolation scales (a priori).
ADAPT_SCALE = (1.0, 1.0, 1.0, 2.0)
#: fewest source datasets whose per-dataset fits give the adaptation scale (a spread of two
#: values says little)
ADAPT_MIN_SOURCES = 3
#: floor of each fitted adaptation scale (a priori: a quarter of a unit in log a, b or c,
#: so a fold whose sources happen to agree still lets a target move)
ADAPT_SCALE_MIN = 0.25
#: box of d (in units of sigma_ext) for :func:`adapt`
SHIFT_BOUNDS = (-8.0, 8.0)


class Calibration(NamedTuple):
    """The extrapolation noise ``sigma_ext * (d + e_ext)``, ``sigma_ext = a gap^b head^c``.

    ``fit``: summary of the maximum-likelihood fit on the sources (None when made by
    hand); ``adapted``: what :func:`adapt` learned it from (runs, predictions, prior scale
    and the sources' ``source`` values), None for the sources' own fit. Stored in a prior's
    JSON as :meth:`to_dict` (the format of the untyped dict of earlier versions, which
    :meth:`from_dict` reads).
    """

    log_a: float
    b: float
    c: float
    d: float = 0.0
    df: float = models.NOISE_DF
    fit: dict | None = None
    adapted: dict | None = None

    @property
    def source(self) -> Calibration:
        """The sources' calibration this one was adapted from (itself if not adapted)."""
        if self.adapted is None:
            return self
        src = self.adapted["source"]
        return Calibration(src["log_a"], src["b"], src["c"], src.get("d", 0.0), self.df, self.fit)

    def to_dict(self) -> dict:
        out = {"kind": KIND, "log_a": self.log_a, "b": self.b, "c": self.c, "df": self.df}
        if self.fit is not None:
            out["fit"] = self.fit
        if self.adapted is not None or self.d != 0.0:
            out["d"] = self.d
        if self.adapted is not None:
            out["adapted"] = self.adapted
        return out

    @classmethod
    def from_dict(cls, d: dict, where: str = "calibration") -> Calibration:
        missing = {"kind", "log_a", "b", "c"} - set(d)
        if missing or d["kind"] != KIND:
            raise ValueError(f"{where}: calibration is not a {KIND!r} record (missing {sorted(missing)})")
        return cls(
            float(d["log_a"]),
            float(d["b"]),
            float(d["c"]),
            float(d.get("d", 0.0)),
            float(d.get("df", models.NOISE_DF)),
            d.get("fit"),
            d.get("adapted"),
        )


def ext_scale(calibration: Calibration, gap, headroom):
    """``sigma_ext`` (model scale) for normalised time past the last observation ``gap``
    and ``headroom = 1 - last observed value``, arrays broadcasting together; 0 where
    ``gap <= 0`` (an observed epoch has nothing to extrapolate, even when ``b = 0``)."""
    a = np.exp(calibration.log_a)
    gap = np.asarray(gap, np.float64)
    head = np.clip(np.asarray(headroom, np.float64), 1e-6, 1.0)
    scale = a * np.clip(gap, 1e-12, None) ** calibration.b * head**calibration.c
    return np.where(gap > 0, scale, 0.0)


def ext_shift(calibration: Calibration, gap, headroom):
    """Location ``d * sigma_ext`` of the extrapolation term (0 without a learned ``d``)."""
    d = calibration.d
    if d == 0.0:
        return np.zeros(np.broadcast_shapes(np.shape(gap), np.shape(headroom)))
    return d * ext_scale(calibration, gap, headroom)


@functools.lru_cache(maxsize=4)
def _precision_nodes(k: int) -> np.ndarray:
    # equal-mass quantiles of the Gamma(df/2, rate df/2) precision whose normal scale
    # mixture is the Student-t: a deterministic quadrature of the t density
    df = models.NOISE_DF
    return scipy.stats.gamma.ppf((np.arange(k) + 0.5) / k, df / 2, scale=2 / df)


@functools.partial(jax.jit, static_argnames=("nodes",))
def _log_density(m, s, e, y, nodes: int = NODES):
    # log p(y_n) = log mean_s E_{g1,g2} N(y_n; m_sn, s_sn^2/g1 + e_n^2/g2)
    # m, s: [S, N]; e, y: [N]
    g = jnp.asarray(_precision_nodes(nodes), m.dtype)
    var = (s**2)[..., None, None] / g[:, None] + (e**2)[:, None, None] / g[None, :]
    r2 = ((y - m) ** 2)[..., None, None]
    lp = -0.5 * (jnp.log(2 * jnp.pi * var) + r2 / var)
    return logsumexp(lp, axis=(0, 2, 3)) - jnp.log(m.shape[0] * nodes * nodes)


def log_density(calibration: Calibration, m, s, y, gap, headroom, nodes: int = NODES) -> np.ndarray:
    """Log density [N] of model-scale values ``y`` [N] under curve means ``m`` [S, N] with
    observation noise ``s`` [S, N] plus extrapolation noise (``gap``, ``headroom`` [N])."""
    e = ext_scale(calibration, gap, headroom)
    m = np.asarray(m) + ext_shift(calibration, gap, headroom)
    out = _log_density(
        jnp.asarray(m, jnp.float32),
        jnp.asarray(s, jnp.float32),
        jnp.asarray(e, jnp.float32),
        jnp.asarray(y, jnp.float32),
        nodes=nodes,
    )
    return np.asarray(out, np.float64)


def fit_params(m, s, y, gap, headroom, weight, *, nodes: int = 8) -> tuple[Calibration, float]:
    """Maximum-likelihood ``(log_a, b, c)`` for predictive draws ``m``, ``s`` [S, N] of the
    final values ``y`` [N] seen ``gap`` [N] before the end; ``weight`` [N] sums to 1.

    Returns the parameters and the weighted mean negative log density at the optimum.
    """
    m, s = jnp.asarray(m, jnp.float32), jnp.asarray(s, jnp.float32)
    y, w = jnp.asarray(y, jnp.float32), jnp.asarray(weight, jnp.float32)
    log_gap = jnp.log(jnp.clip(jnp.asarray(gap, jnp.float32), 1e-6, None))
    log_head = jnp.log(jnp.clip(jnp.asarray(headroom, jnp.float32), 1e-6, 1.0))

    @jax.jit
    def loss(theta):
        e = jnp.exp(theta[0] + theta[1] * log_gap + theta[2] * log_head)
        return -jnp.sum(w * _log_density(m, s, e, y, nodes=nodes))

    grad = jax.jit(jax.value_and_grad(loss))

    def f(theta):
        v, g = grad(jnp.asarray(theta, jnp.float32))
        return float(v), np.asarray(g, np.float64)

    # a coarse grid first: the likelihood in log a is flat where sigma_ext << s_z
    grid = [(la, b, c) for la in (-5.0, -3.5, -2.5, -1.5) for b in (0.5, 1.0, 2.0) for c in (0.0, 1.0)]
    start = min(grid, key=lambda th: f(th)[0])
    res = scipy.optimize.minimize(f, np.asarray(start), jac=True, method="L-BFGS-B", bounds=BOUNDS)
    theta = res.x
    return Calibration(float(theta[0]), float(theta[1]), float(theta[2])), float(res.fun)


class Evidence(NamedTuple):
    """What a finished run of the target says about the extrapolation noise: the
    uncalibrated predictions of its final value made from its own prefixes (one column per
    prefix), and the value it reached. ``m``, ``s`` [S, K]: expected final value and
    observation-noise scale per posterior draw (model scale, ``Prediction.final_mean_scale``);
    ``y`` [K]: the true final value (model scale); ``gap``, ``head`` [K]: time left and
    headroom at each prefix; ``run`` [K]: an id of the run (each run weighs one in total,
    however many of its prefixes were predicted)."""

    m: np.ndarray
    s: np.ndarray
    y: np.ndarray
    gap: np.ndarray
    head: np.ndarray
    run: np.ndarray

    @staticmethod
    def concat(items: Sequence[Evidence]) -> Evidence:
        # predictions may keep different numbers of finite draws: use the common first S
        n = min(e.m.shape[0] for e in items)
        return Evidence(
            *(np.concatenate([e.m[:n] for e in items], axis=1), np.concatenate([e.s[:n] for e in items], axis=1)),
            *(np.concatenate([getattr(e, k) for e in items]) for k in ("y", "gap", "head", "run")),
        )


def evidence(pred, final_values, rows, run_ids=None) -> Evidence:
    """The :class:`Evidence` of the runs ``rows`` of ``pred`` whose final values (table
    units, [len(rows)]) are now known."""
    rows = np.asarray(rows, int)
    m, s = pred.final_mean_scale()
    return Evidence(
        m[:, rows],
        s[:, rows],
        to_model_scale(np.asarray(final_values, np.float64), pred.minimize),
        1.0 - pred.t_obs[rows],
        1.0 - pred.y_last[rows],
        rows if run_ids is None else np.asarray(run_ids),
    )


@functools.partial(jax.jit, static_argnames=("nodes",))
def _map_loss(theta, m, s, y, log_gap, log_head, w, theta0, scale, nodes: int):
    e = jnp.exp(theta[0] + theta[1] * log_gap + theta[2] * log_head)
    nll = -jnp.sum(w * _log_density(m + theta[3] * e, s, e, y, nodes=nodes))
    return nll + 0.5 * jnp.sum(((theta - theta0) / scale) ** 2)


_map_grad = jax.jit(jax.value_and_grad(_map_loss), static_argnames=("nodes",))


def spread_of_sources(per_source: dict) -> list[float] | None:
    """The adaptation scales of (log a, b, c) from per-source-dataset fits (name -> [log a,
    b, c]): their sample standard deviation, floored at :data:`ADAPT_SCALE_MIN`; None with
    fewer than :data:`ADAPT_MIN_SOURCES` sources."""
    if len(per_source) < ADAPT_MIN_SOURCES:
        return None
    spread = np.std(np.array(list(per_source.values()), np.float64), axis=0, ddof=1)
    return [float(v) for v in np.maximum(spread, ADAPT_SCALE_MIN)]


def adapt_scale(calibration: Calibration) -> tuple[float, ...]:
    """The prior scales of (log a, b, c, d) for :func:`adapt`: the fold's fitted spread of
    (log a, b, c) when the sources' fit recorded one, else :data:`ADAPT_SCALE`."""
    fitted = (calibration.source.fit or {}).get("adapt_scale")
    return tuple(ADAPT_SCALE) if fitted is None else tuple(float(v) for v in fitted) + (ADAPT_SCALE[3],)


def adapt(
    calibration: Calibration,
    ev: Evidence | Sequence[Evidence],
    *,
    scale: Sequence[float] | None = None,
    nodes: int = 8,
    max_draws: int = 64,
) -> Calibration:
    """The calibration learned *within* the target: the maximum a posteriori ``(log a,
    b, c, d)`` given the target's finished runs (``ev``), with a normal prior of standard
    deviations ``scale`` centred on the sources' ``calibration`` (and ``d = 0``).

    The sources' fit says how far curves of *other* datasets strayed from their
    extrapolations; a target whose curves behave differently (a learning-rate step the
    sources never made) shows it in its first finished runs, and the calibration follows:
    ``d`` takes what its runs share (all gain more than foretold), the scale what they do
    not.
    Each finished run weighs one, however many of its prefixes were predicted; with no
    evidence the sources' calibration is returned unchanged. The result (usable as
    ``Prediction.calibration``) says in ``adapted`` from what it was learned.
    ``max_draws``: evenly spaced posterior draws used (three parameters need few, and
    the cost grows with draws x predictions).
    """
    if scale is None:
        scale = adapt_scale(calibration)
    if not isinstance(ev, Evidence):
        ev = Evidence.concat(list(ev)) if len(ev) else None
    source = calibration.source
    theta0 = np.array([source.log_a, source.b, source.c, 0.0], np.float64)
    if ev is None or len(ev.y) == 0:
        return calibration
    if ev.m.shape[0] > max_draws:
        keep = np.linspace(0, ev.m.shape[0] - 1, max_draws).round().astype(int)
        ev = ev._replace(m=ev.m[keep], s=ev.s[keep])
    _, inverse, counts = np.unique(ev.run, return_inverse=True, return_counts=True)
    w = 1.0 / counts[inverse]
    k = len(ev.y)
    pad = max(16, 1 << (k - 1).bit_length()) - k  # few shapes, few compilations
    padded = lambda a, v=0.0: np.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, pad)], constant_values=v)
    args = (
        jnp.asarray(padded(ev.m), jnp.float32),
        jnp.asarray(padded(ev.s, 1.0), jnp.float32),
        jnp.asarray(padded(ev.y), jnp.float32),
        jnp.asarray(np.log(np.clip(padded(ev.gap, 1.0), 1e-6, None)), jnp.float32),
        jnp.asarray(np.log(np.clip(padded(ev.head, 1.0), 1e-6, 1.0)), jnp.float32),
        jnp.asarray(padded(w), jnp.float32),
        jnp.asarray(theta0, jnp.float32),
        jnp.asarray(scale, jnp.float32),
    )

    def f(theta):
        v, g = _map_grad(jnp.asarray(theta, jnp.float32), *args, nodes=nodes)
        return float(v), np.asarray(g, np.float64)

    bounds = BOUNDS + (SHIFT_BOUNDS,)
    lo, hi = np.array(bounds).T
    # the likelihood is flat in log a where sigma_ext << s_z: start from the best of a
    # few scales and shifts, not only from the sources' value
    starts = [np.clip(theta0, lo, hi)] + [
        np.clip([la, theta0[1], theta0[2], d], lo, hi) for la in (-5.0, -3.5, -2.5, -1.5, -0.5) for d in (0.0, 2.0)
    ]
    start = min(starts, key=lambda th: f(th)[0])
    res = scipy.optimize.minimize(f, start, jac=True, method="L-BFGS-B", bounds=bounds)
    return calibration._replace(
        log_a=float(res.x[0]),
        b=float(res.x[1]),
        c=float(res.x[2]),
        d=float(res.x[3]),
        adapted={
            "runs": int(len(counts)),
            "predictions": int(k),
            "scale": [float(v) for v in scale],
            "source": {"log_a": float(theta0[0]), "b": float(theta0[1]), "c": float(theta0[2]), "d": float(source.d)},
        },
    )


__all__ = [
    "ADAPT_SCALE",
    "CUTOFFS",
    "adapt_scale",
    "spread_of_sources",
    "Calibration",
    "Evidence",
    "adapt",
    "evidence",
    "ext_shift",
    "KIND",
    "ext_scale",
    "fit_params",
    "log_density",
]
