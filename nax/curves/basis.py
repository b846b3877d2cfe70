"""Parametric learning-curve families (Domhan et al. 2015) in normalised time.

Time ``t`` is the fraction of full training, ``epoch / horizon`` in (0, 1], so curves of 20
and 140 epochs share one prior. Each family is written as a *progress* function
``p(t) = h(t) / h(1)`` with ``h(0) = 0``, ``h`` non-decreasing and bounded, driven by two
positive parameters: a rate ``kappa`` and a shape ``delta``, both given on the log scale
(unconstrained). The expected curve of the model is then

    m(t) = y0 + (y1 - y0) * sum_k w_k p_k(t)

so ``y1 = m(1)`` is the value at the end of training and the curve is bounded in
[y0, y1] and non-decreasing. Domhan's offsets and asymptotes become ``y0`` and ``y1``;
what remains of each family is its shape. After this normalisation some of Domhan's
families coincide (log-power and MMF are both logistic in ``log t``; Janoschek, Weibull
and exp4 are all stretched exponentials, differing only in how ``kappa`` enters): they
are kept under their names so a model can choose any subset.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

#: smallest normalised time evaluated; epoch 0 (the untrained network) maps to it
T_MIN = 1e-6


def _pow3(t, kappa, delta):
    # c - a (t + 1/kappa)^-delta: power-law decay of the gap to the asymptote
    return -jnp.expm1(-delta * jnp.log1p(kappa * t))


def _log_power(t, kappa, delta):
    # a / (1 + (t / e^b)^-c): logistic in log t
    return jax.nn.sigmoid(delta * (jnp.log(kappa) + jnp.log(t)))


def _pow_exp(log_x):
    # x = exp(log_x) with the exponent capped: (kappa t)^delta overflows float32 at the
    # edges of the parameter box, and inf * 0 in its gradient is a NaN ELBO step
    return jnp.exp(jnp.minimum(log_x, 30.0))


def _janoschek(t, kappa, delta):
    # alpha - (alpha - beta) exp(-kappa t^delta)
    return -jnp.expm1(-kappa * t**delta)


def _weibull(t, kappa, delta):
    # alpha - (alpha - beta) exp(-(kappa t)^delta)
    return -jnp.expm1(-_pow_exp(delta * (jnp.log(kappa) + jnp.log(t))))


def _mmf(t, kappa, delta):
    # alpha - (alpha - beta) / (1 + (kappa t)^delta)
    # x / (1 + x) with x = (kappa t)^delta, written so that a huge x is not inf / inf
    return jax.nn.sigmoid(delta * (jnp.log(kappa) + jnp.log(t)))


def _exp4(t, kappa, delta):
    # c - exp(-a t^alpha + b); the rate enters as kappa^delta, unlike Janoschek
    return -jnp.expm1(-_pow_exp(delta * jnp.log(kappa) + jnp.log(t)))


def _ilog2(t, kappa, delta):
    # c - a / log(e + kappa t)^delta, bounded at t = 0 unlike Domhan's c - a / log(t)
    return -jnp.expm1(-delta * jnp.log1p(jnp.log1p(kappa * t / jnp.e)))


FAMILIES: dict[str, Callable] = {
    "pow3": _pow3,
    "log_power": _log_power,
    "janoschek": _janoschek,
    "weibull": _weibull,
    "mmf": _mmf,
    "exp4": _exp4,
    "ilog2": _ilog2,
}

#: the families mixed by default: one representative of each distinct shape
DEFAULT_FAMILIES: tuple[str, ...] = ("pow3", "log_power", "weibull", "ilog2")


def progress(name: str, t: jax.Array, log_kappa: jax.Array, log_delta: jax.Array) -> jax.Array:
    """Normalised progress ``p(t) = h(t)/h(1)`` of family ``name``, in [0, 1].

    ``t``: normalised time (fraction of full training), any shape broadcasting with the
    parameters. ``log_kappa``, ``log_delta``: unconstrained rate and shape.
    """
    fn = FAMILIES[name]
    kappa = jnp.exp(jnp.clip(log_kappa, -6.0, 9.0))
    delta = jnp.exp(jnp.clip(log_delta, -3.0, 3.0))
    t = jnp.clip(t, T_MIN, None)
    h1 = fn(jnp.ones_like(t), kappa, delta)
    return jnp.clip(fn(t, kappa, delta) / jnp.maximum(h1, 1e-12), 0.0, 1.0)


# ---- the unconstrained parameter vector of one curve --------------------------------
# z[..., 0]  logit of y1, the expected value at the end of training
# z[..., 1]  logit of y0 / y1 (where the curve starts, as a fraction of where it ends)
# z[..., 2]  log kappa (rate), z[..., 3] log delta (shape), shared by the families
# z[..., 4]  log of the observation-noise scale
# z[..., 5:] logits of the family weights (the first family's logit is fixed at 0)
FINAL, START, LOG_KAPPA, LOG_DELTA, LOG_NOISE = range(5)


def vague_loc_scale(num_params: int) -> tuple[list[float], list[float]]:
    """The vague prior of one curve's ``z`` (``no_transfer``'s, the population mean's, and
    a target's level at transfer strength 0): loc, scale of length ``num_params``, written
    for accuracies (final ~0.73, noise ~0.03) and wide enough for any model-scale curve."""
    loc = [1.0, -0.5, 1.5, 0.0, -3.5] + [0.0] * (num_params - 5)
    scale = [2.0, 2.0, 2.0, 1.0, 1.5] + [1.0] * (num_params - 5)
    return loc, scale


def num_params(families: tuple[str, ...] = DEFAULT_FAMILIES) -> int:
    """Length ``D`` of the unconstrained parameter vector for ``families``."""
    return 5 + len(families) - 1


def curve_mean(z: jax.Array, t: jax.Array, families: tuple[str, ...] = DEFAULT_FAMILIES) -> jax.Array:
    """Expected curve value (fraction in (0, 1)) at normalised times ``t``.

    ``z``: [..., D] unconstrained parameters; ``t``: [..., T] normalised times; the
    leading dims broadcast. Returns [..., T].
    """
    y1 = jax.nn.sigmoid(z[..., FINAL])[..., None]
    y0 = y1 * jax.nn.sigmoid(z[..., START])[..., None]
    logits = jnp.concatenate([jnp.zeros_like(z[..., :1]), z[..., 5:]], axis=-1)
    w = jax.nn.softmax(logits, axis=-1)
    lk, ld = z[..., LOG_KAPPA][..., None], z[..., LOG_DELTA][..., None]
    p = sum(w[..., k : k + 1] * progress(f, t, lk, ld) for k, f in enumerate(families))
    return y0 + (y1 - y0) * p


def noise_scale(z: jax.Array) -> jax.Array:
    """Observation-noise scale (fraction of accuracy) from [..., D] parameters -> [...]."""
    return jnp.exp(jnp.clip(z[..., LOG_NOISE], -9.0, 1.0))
