"""The curve model as three sibling NumPyro functions (cf. numpyro's baseball example).

Every curve ``c`` has an unconstrained parameter vector ``z_c`` (layout in
:mod:`nax.curves.basis`); its observations are Student-t around the expected curve with
the curve's own noise scale. The siblings differ only in how ``z_c`` is pooled:

* :func:`no_transfer` - vague independent priors, every curve on its own (Domhan-style);
* :func:`hierarchical` - population -> dataset -> curve, fitted on source datasets;
* :func:`transfer` - a new dataset: the population posterior of the sources is the prior of
  the dataset's level, which is learned jointly from every curve of the dataset given.

Curve level: ``z_c = mu_dataset + diag(sigma) L eps_c`` with ``eps_c ~ N(0, I)``
(non-centred, so weakly observed curves do not create funnels). Each model has a matching
guide (mean-field for the few global sites, a full-rank Gaussian per curve so that the
final value and the shape of a curve stay correlated), and :func:`curve_params` turns
latent samples of either inference method into ``z`` [S, N, D].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

from nax.curves import basis

#: degrees of freedom of the Student-t observation noise (robust to learning-rate drops)
NOISE_DF = 5.0


def prior_loc_scale(num_params: int) -> tuple[jax.Array, jax.Array]:
    """Vague prior on ``z`` (also the population mean's prior): loc, scale [D]."""
    loc, scale = basis.vague_loc_scale(num_params)
    return jnp.array(loc), jnp.array(scale)


def _likelihood(z, y, mask, t, families):
    mean = basis.curve_mean(z, t, families)
    scale = basis.noise_scale(z)[:, None]
    numpyro.sample("y", dist.StudentT(NOISE_DF, mean, scale).mask(mask).to_event(1), obs=y)


def no_transfer(y, mask, t, *, families=basis.DEFAULT_FAMILIES):
    """Independent curves under vague priors. ``y``, ``mask``, ``t``: [N, T]."""
    d = basis.num_params(families)
    loc, scale = prior_loc_scale(d)
    with numpyro.plate("curves", y.shape[0]):
        z = numpyro.sample("z", dist.Normal(loc, scale).to_event(1))
        _likelihood(z, y, mask, t, families)


def hierarchical(y, mask, t, dataset, num_datasets: int, *, families=basis.DEFAULT_FAMILIES):
    """Population -> dataset -> curve. ``dataset``: int [N] in [0, num_datasets)."""
    d = basis.num_params(families)
    loc, scale = prior_loc_scale(d)
    mu_pop = numpyro.sample("mu_pop", dist.Normal(loc, scale).to_event(1))
    tau = numpyro.sample("tau", dist.HalfNormal(jnp.ones(d)).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(2.0 * jnp.ones(d)).to_event(1))
    corr = numpyro.sample("L", dist.LKJCholesky(d, 2.0))
    with numpyro.plate("datasets", num_datasets):
        mu_d = numpyro.sample("mu_d", dist.Normal(mu_pop, tau).to_event(1))
    with numpyro.plate("curves", y.shape[0]):
        eps = numpyro.sample("eps", dist.Normal(jnp.zeros(d), 1.0).to_event(1))
        z = mu_d[dataset] + (eps @ corr.T) * sigma
        _likelihood(z, y, mask, t, families)


def transfer(y, mask, t, prior: dict, *, families=basis.DEFAULT_FAMILIES):
    """One new dataset whose level has the population posterior as prior.

    ``prior``: arrays ``mu_loc``, ``mu_scale`` [D] (predictive distribution of a new
    dataset's level), ``log_sigma_loc``, ``log_sigma_scale`` [D] and ``L`` [D, D] (the
    curve-level correlation, fixed at its posterior estimate).
    """
    d = basis.num_params(families)
    mu_t = numpyro.sample("mu_t", dist.Normal(prior["mu_loc"], prior["mu_scale"]).to_event(1))
    sigma = numpyro.sample(
        "sigma",
        dist.LogNormal(prior["log_sigma_loc"], prior["log_sigma_scale"]).to_event(1),
    )
    with numpyro.plate("curves", y.shape[0]):
        eps = numpyro.sample("eps", dist.Normal(jnp.zeros(d), 1.0).to_event(1))
        z = mu_t + (eps @ prior["L"].T) * sigma
        _likelihood(z, y, mask, t, families)


MODELS = {
    "no_transfer": no_transfer,
    "hierarchical": hierarchical,
    "transfer": transfer,
}


def curve_params(name: str, latents: dict, *, dataset=None, prior: dict | None = None) -> jax.Array:
    """Per-curve parameters ``z`` [S, N, D] from latent samples (leading dim S)."""
    if name == "no_transfer":
        return latents["z"]
    eps, sigma = latents["eps"], latents["sigma"][:, None, :]
    if name == "hierarchical":
        corr = latents["L"]
        mu = jnp.take(latents["mu_d"], jnp.asarray(dataset), axis=1)
        return mu + jnp.einsum("snd,sed->sne", eps, corr) * sigma
    mu = latents["mu_t"][:, None, :]
    return mu + jnp.einsum("snd,ed->sne", eps, prior["L"]) * sigma


# ---- guides ---------------------------------------------------------------------------
def _normal(name, shape, init_loc, init_scale=0.1):
    loc = numpyro.param(f"{name}_loc", jnp.broadcast_to(init_loc, shape))
    scale = numpyro.param(
        f"{name}_scale",
        jnp.full(shape, init_scale),
        constraint=constraints.softplus_positive,
    )
    return numpyro.sample(name, dist.Normal(loc, scale).to_event(1))


def _lognormal(name, shape, init_value, init_scale=0.1):
    loc = numpyro.param(f"{name}_loc", jnp.log(jnp.broadcast_to(init_value, shape)))
    scale = numpyro.param(
        f"{name}_scale",
        jnp.full(shape, init_scale),
        constraint=constraints.softplus_positive,
    )
    return numpyro.sample(name, dist.LogNormal(loc, scale).to_event(1))


def _per_curve(name, n, d, init_loc):
    loc = numpyro.param(f"{name}_loc", jnp.broadcast_to(init_loc, (n, d)))
    tril = numpyro.param(
        f"{name}_tril",
        jnp.broadcast_to(0.1 * jnp.eye(d), (n, d, d)),
        constraint=constraints.scaled_unit_lower_cholesky,
    )
    with numpyro.plate("curves", n):
        numpyro.sample(name, dist.MultivariateNormal(loc, scale_tril=tril))


def no_transfer_guide(y, mask, t, *, families=basis.DEFAULT_FAMILIES):
    d = basis.num_params(families)
    loc, _ = prior_loc_scale(d)
    init = jnp.broadcast_to(loc, (y.shape[0], d)).at[:, basis.FINAL].set(_logit_last(y, mask))
    _per_curve("z", y.shape[0], d, init)


def hierarchical_guide(y, mask, t, dataset, num_datasets: int, *, families=basis.DEFAULT_FAMILIES):
    d = basis.num_params(families)
    loc, _ = prior_loc_scale(d)
    _normal("mu_pop", (d,), loc)
    _lognormal("tau", (d,), 0.5)
    _lognormal("sigma", (d,), 1.0)
    corr = numpyro.param("L_value", jnp.eye(d), constraint=constraints.corr_cholesky)
    numpyro.sample("L", dist.Delta(corr, event_dim=2))
    with numpyro.plate("datasets", num_datasets):
        _normal("mu_d", (num_datasets, d), loc)
    _per_curve("eps", y.shape[0], d, jnp.zeros((y.shape[0], d)))


def transfer_guide(y, mask, t, prior: dict, *, families=basis.DEFAULT_FAMILIES):
    d = basis.num_params(families)
    _normal("mu_t", (d,), prior["mu_loc"])
    _lognormal("sigma", (d,), jnp.exp(prior["log_sigma_loc"]))
    _per_curve("eps", y.shape[0], d, jnp.zeros((y.shape[0], d)))


GUIDES = {
    "no_transfer": no_transfer_guide,
    "hierarchical": hierarchical_guide,
    "transfer": transfer_guide,
}


def _logit_last(y, mask):
    # start each curve's final value at its last observation: SVI then only refines it
    idx = jnp.argmax(jnp.cumsum(mask, axis=1), axis=1)
    last = jnp.take_along_axis(y, idx[:, None], axis=1)[:, 0]
    last = jnp.clip(last, 0.02, 0.98)
    return jnp.log(last) - jnp.log1p(-last)


def log_likelihood(z: jax.Array, y: jax.Array, t: jax.Array, families=basis.DEFAULT_FAMILIES) -> jax.Array:
    """Pointwise log density of values ``y`` [N, K] at times ``t`` [N, K] under ``z`` [S, N, D] -> [S, N, K]."""
    mean = basis.curve_mean(z, jnp.broadcast_to(t, z.shape[:-1] + t.shape[-1:]), families)
    return dist.StudentT(NOISE_DF, mean, basis.noise_scale(z)[..., None]).log_prob(y)


__all__ = [
    "GUIDES",
    "MODELS",
    "curve_params",
    "hierarchical",
    "no_transfer",
    "transfer",
]
