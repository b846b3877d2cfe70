"""The characteristic model conditioned on a target's evaluations (``update``, ``score``).

Target (``update``)::

    f_t(x) = rho * alpha * (x . mu0) + b_t + x . e_t,   e_t ~ N(0, rho^2 Sigma0 + tau_t^2 I)
    alpha ~ N(1, 0.5^2),  b_t ~ N(0, 1),  y_t ~ N(f_t(x), sigma_t^2)

``alpha`` (how far the population ranking holds), ``b_t`` and ``e_t`` are integrated out
exactly (a Gaussian process with this linear kernel). ``rho`` in {1, 0.5, 0} (how related
the target is to the population; 0 is the target on its own), ``tau_t`` (how far it
deviates) and ``sigma_t`` are chosen by empirical Bayes on a grid: marginal likelihood
times a hyperprior (rho: 1/2, 1/4, 1/4; tau_t log-normal around the sources' tau_dev).
With no target data the target is the population; a target unlike its sources moves to
``rho = 0`` as soon as its evaluations say so. Target accuracies enter as normal scores of
their ranks among the target's own evaluations (a Gaussian copula), so units never matter
and the result does not depend on the order of the observations.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
import scipy.special
import scipy.stats
import threadpoolctl

from nax.characteristics.spec import ALPHA_SD, INTERCEPT_SD, SIGMA_LOC, CharacteristicModel, normal_scores

TAU_FACTORS = 2.0 ** np.arange(-2, 5)  # target deviation grid, in units of the sources' tau_dev
SIGMA_GRID = np.array([0.05, 0.1, 0.15, 0.2, 0.3, 0.45, 0.7, 1.0])
TAU_PRIOR_SD = np.log(4.0)  # log-normal hyperprior sd of tau_t / tau_dev
TAU_ALONE = np.geomspace(0.003, 1.0, 16)  # deviation grid when the target stands alone (rho = 0)
#: relatedness of the target to the population and its prior probability; rho = 0 is the
#: target alone, so a target unlike its sources can fall back on its own evaluations
RHO_PRIOR = {1.0: 0.5, 0.5: 0.25, 0.0: 0.25}
SIGMA_PRIOR_SD = np.log(3.0)


@dataclasses.dataclass(frozen=True, eq=False)
class TargetPosterior:
    """The model conditioned on a target's evaluations (``update``); ``score`` takes it too.

    Everything lives in the eigenbasis of Sigma0 (``XE = X E``), where the target's prior
    covariance ``Sigma0 + tau^2 I`` is diagonal. ``transfer=False`` is the same model fitted
    on the target's evaluations alone (no population mean, covariance or alpha): the
    baseline a dissimilar target is compared with.
    """

    model: CharacteristicModel
    transfer: bool
    rho: float  # chosen relatedness to the population (0: the target alone)
    tau: float  # chosen target deviation scale
    sigma: float  # chosen target noise sd
    k: int  # number of target observations
    XE: np.ndarray  # (k, f) rotated characteristics of the observed encodings
    y: np.ndarray  # (k,) normal scores of the observed accuracies
    L: np.ndarray  # (k, k) Cholesky factor of the observations' covariance
    beta: np.ndarray  # (k,) K^-1 (y - prior mean)
    log_evidence: float

    @functools.cached_property
    def _parts(self):
        mu_rot, a2, lam = _prior_parts(self.model, self.rho)
        d = lam + self.tau**2  # prior variances of the effects in the eigenbasis
        A = self.XE * d  # (k, f)
        pm = self.XE @ mu_rot
        # L^-1 applied once here, so the sd of n cells costs one (n, f) x (f, k) product
        Linv = lambda M: scipy.linalg.solve_triangular(self.L, M, lower=True, check_finite=False)
        C = (Linv(A) if self.k else A).astype(np.float32)
        c_alpha = Linv(a2 * pm) if self.k else pm
        c_b = Linv(np.full(self.k, INTERCEPT_SD**2)) if self.k else pm
        return mu_rot, a2, d, A, pm, A.T @ self.beta, C, c_alpha, c_b


def _as_observations(model, target_observations):
    if target_observations is None:
        return np.zeros((0, model.space.num_edges), np.int32), np.zeros(0)
    try:
        enc, acc = target_observations
    except (TypeError, ValueError):
        raise ValueError("target_observations must be a pair (encodings (k, E), accuracies (k,))") from None
    acc = np.asarray(acc, np.float64).reshape(-1)
    enc = np.asarray(enc)
    if len(acc) == 0 and enc.size == 0:
        return np.zeros((0, model.space.num_edges), np.int32), acc
    enc = np.atleast_2d(model.space.validate(enc))
    if len(enc) != len(acc):
        raise ValueError(f"target_observations: {len(enc)} encodings but {len(acc)} accuracies")
    if not np.all(np.isfinite(acc)):
        raise ValueError(f"target_observations: {int((~np.isfinite(acc)).sum())} accuracies are NaN or infinite")
    return enc, acc


def _prior_parts(model: CharacteristicModel, rho: float):
    """Rotated prior mean effects ``rho mu0``, alpha variance, and ``rho^2`` Sigma0 eigenvalues.

    The target's effects are ``w_t = rho (alpha w0) + e_t``: ``rho = 0`` is the target alone.
    """
    return rho * (model.E.T @ model.mu0), ALPHA_SD**2 if rho > 0 else 0.0, rho**2 * model.lam0


def update(model: CharacteristicModel, target_observations, *, transfer: bool = True) -> TargetPosterior:
    """Condition the target on its evaluations ``(encodings (k, E), accuracies (k,))``.

    Accuracies may be in any units (higher is better); they enter as normal scores of their
    ranks, so the result does not depend on their order. ``tau_t`` and ``sigma_t`` are
    chosen by marginal likelihood times hyperprior on a grid. Cost O(k^2 f + grid k^3).
    """
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        return _update(model, target_observations, transfer)


def _hypotheses(model, transfer):
    """(rho, tau, sigma, log hyperprior) grid; each rho's tau and sigma priors are normalised."""
    out = []
    sig_w = scipy.stats.norm.logpdf(np.log(SIGMA_GRID), np.log(np.mean(model.sigma)), SIGMA_PRIOR_SD)
    sig_w -= scipy.special.logsumexp(sig_w)
    flat_sig = scipy.stats.norm.logpdf(np.log(SIGMA_GRID), SIGMA_LOC, SIGMA_PRIOR_SD)
    flat_sig -= scipy.special.logsumexp(flat_sig)
    rhos = RHO_PRIOR if transfer else {0.0: 1.0}
    for rho, p_rho in rhos.items():
        if rho > 0:
            taus = model.tau_dev * TAU_FACTORS
            tau_w = scipy.stats.norm.logpdf(np.log(TAU_FACTORS), 0.0, TAU_PRIOR_SD)
            sw = sig_w
        else:  # alone, the target has no source scale to lean on: a wide grid, flat hyperprior
            taus = TAU_ALONE
            tau_w = np.zeros(len(taus))
            sw = flat_sig
        tau_w = tau_w - scipy.special.logsumexp(tau_w)
        for t, lt in zip(taus, tau_w):
            out.append((rho, float(t), [(float(s), np.log(p_rho) + lt + ls) for s, ls in zip(SIGMA_GRID, sw)]))
    return out


def _update(model, target_observations, transfer):
    enc, acc = _as_observations(model, target_observations)
    k = len(acc)
    if k == 0:
        rho = 1.0 if transfer else 0.0
        tau = model.tau_dev if transfer else float(np.sqrt(TAU_ALONE[0] * TAU_ALONE[-1]))
        return TargetPosterior(
            model,
            transfer,
            rho,
            tau,
            float(np.mean(model.sigma)),
            0,
            np.zeros((0, model.num_features)),
            np.zeros(0),
            np.zeros((0, 0)),
            np.zeros(0),
            0.0,
        )
    XE = model.rotated(enc)
    y = normal_scores(acc)
    m1 = XE @ (model.E.T @ model.mu0)
    S0 = (XE * model.lam0) @ XE.T
    Gram = XE @ XE.T
    best = (-np.inf,)
    # rho = 0: K = 1 1^T + tau^2 G + sigma^2 I; one eigendecomposition of G serves the whole
    # (tau, sigma) grid, the intercept entering as a rank-one term (determinant lemma, Woodbury)
    g_ev, g_Q = np.linalg.eigh(Gram)
    g_ev = np.clip(g_ev, 0.0, None)
    u_q, y_q = g_Q.T @ np.ones(k), g_Q.T @ y
    for rho, t, sigmas in _hypotheses(model, transfer):
        if rho == 0:
            for s, lp in sigmas:
                den = t**2 * g_ev + s**2
                uu, uy, yy = np.sum(u_q**2 / den), np.sum(u_q * y_q / den), np.sum(y_q**2 / den)
                c = 1.0 + INTERCEPT_SD**2 * uu
                quad = yy - INTERCEPT_SD**2 * uy**2 / c
                le = -0.5 * (quad + np.sum(np.log(den)) + np.log(c) + k * np.log(2 * np.pi))
                if le + lp > best[0]:
                    best = (le + lp, le, rho, t, s)
            continue
        a2 = ALPHA_SD**2
        m = rho * m1
        r = y - m
        # one eigendecomposition per (rho, tau) serves every sigma: K = Q (ev + sigma^2) Q^T
        ev, Q = np.linalg.eigh(a2 * np.outer(m, m) + INTERCEPT_SD**2 + rho**2 * S0 + t**2 * Gram)
        ev = np.clip(ev, 0.0, None)
        rq2 = (Q.T @ r) ** 2
        for s, lp in sigmas:
            den = ev + s**2
            le = -0.5 * (np.sum(rq2 / den) + np.sum(np.log(den)) + k * np.log(2 * np.pi))
            if le + lp > best[0]:
                best = (le + lp, le, rho, t, s)
    _, le, rho, tau, sigma = best
    a2 = ALPHA_SD**2 if rho > 0 else 0.0
    m = rho * m1
    K = a2 * np.outer(m, m) + INTERCEPT_SD**2 + rho**2 * S0 + tau**2 * Gram + sigma**2 * np.eye(k)
    L = np.linalg.cholesky(K)
    beta = scipy.linalg.cho_solve((L, True), y - m, check_finite=False)
    return TargetPosterior(model, transfer, float(rho), float(tau), float(sigma), k, XE, y, L, beta, float(le))


def _posterior(model_or_post, target_observations) -> TargetPosterior:
    if isinstance(model_or_post, TargetPosterior):
        if target_observations is not None:
            raise ValueError("pass target_observations to update(), or a model (not a posterior) to score()")
        return model_or_post
    if not isinstance(model_or_post, CharacteristicModel):
        raise TypeError(f"expected a CharacteristicModel or TargetPosterior, got {type(model_or_post).__name__}")
    return update(model_or_post, target_observations)


def score(model, encodings, target_observations=None, *, return_std: bool = True):
    """Posterior mean and sd of the target score (normal-score scale) of each encoding.

    Args:
      model: a ``CharacteristicModel`` or a ``TargetPosterior`` from ``update``.
      encodings: int ``(n, E)``, any cells of the space (seen in a source or not).
      target_observations: ``(encodings (k, E), accuracies (k,))`` on the target, or None
        for zero-shot; only with a ``CharacteristicModel``.
    Returns:
      ``(mean (n,), std (n,))``; ``std`` is None when ``return_std`` is False (O(n f) then,
      O(n f k) with it). The sd includes the target's unknown intercept (sd 1), which
      shifts all scores together and so never changes a ranking.
    """
    post = _posterior(model, target_observations)
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        XE = post.model.rotated(encodings)
        mu_rot, a2, d, A, pm, w, C, c_alpha, c_b = post._parts
        m = XE @ mu_rot
        mean = m.copy()
        if post.k:
            mean += a2 * m * (pm @ post.beta) + INTERCEPT_SD**2 * post.beta.sum() + XE @ w
        if not return_std:
            return mean, None
        var = a2 * m**2 + INTERCEPT_SD**2 + (XE**2) @ d
        if post.k:
            # V = L^-1 Kx^T with Kx the (n, k) prior cross-covariance of query and observed cells
            V = (XE.astype(np.float32) @ C.T).astype(np.float64) + np.outer(m, c_alpha) + c_b[None]
            var -= np.sum(V**2, 1)
        return mean, np.sqrt(np.clip(var, 0.0, None))


def sample_scores(model, encodings, target_observations=None, key: jax.Array | None = None, n: int = 1) -> np.ndarray:
    """Joint posterior draws of the target score of each encoding, ``(n, num_encodings)``.

    Exact for the conjugate model (pathwise conditioning: a prior draw of the whole
    function, corrected by the observations), O(n f (num_encodings + k)); for Thompson
    sampling. ``key`` is a ``jax.random`` key.
    """
    if key is None:
        raise ValueError("sample_scores needs an explicit jax.random key")
    post = _posterior(model, target_observations)
    f = post.model.num_features
    # a numpy stream seeded from the key: jax.random would recompile for every new k
    rng = np.random.default_rng(np.asarray(jax.random.bits(key, (4,), jnp.uint32)))
    z = rng.standard_normal((n, f + 2 + post.k))
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        mu_rot, a2, d, A, pm, *_ = post._parts
        alpha = 1.0 + np.sqrt(a2) * z[:, 0]  # multiplies the rho-scaled population prediction
        b = INTERCEPT_SD * z[:, 1]
        e_rot = z[:, 2 : 2 + f] * np.sqrt(d)  # e ~ N(0, E diag(d) E^T), drawn in the eigenbasis
        XE = post.model.rotated(encodings)
        m = XE @ mu_rot
        draws = alpha[:, None] * m[None] + b[:, None] + e_rot @ XE.T
        if post.k:
            prior_obs = alpha[:, None] * pm[None] + b[:, None] + e_rot @ post.XE.T
            resid = post.y[None] - prior_obs - post.sigma * z[:, 2 + f :]  # (n, k)
            B = scipy.linalg.cho_solve((post.L, True), resid.T, check_finite=False)  # (k, n)
            draws += (a2 * np.outer(m, pm @ B) + INTERCEPT_SD**2 * B.sum(0)[None] + XE @ (A.T @ B)).T
        return draws
