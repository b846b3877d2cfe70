"""Fitting the characteristic model on source datasets (``fit``).

Inference (``fit``). Given the scales every effect is Gaussian, so ``w0`` and all ``w_d``
are integrated out exactly; the scales (g, tau_dev, sigma) are set to their posterior mode
(type-II MAP: L-BFGS on the exact collapsed log marginal likelihood plus the log hyperprior,
with analytic gradients, on at most 250 seeded rows per source: a handful of scales is
well determined by them). The population posterior ``w0 ~ N(mu0, Sigma0)`` given those
scales, computed from all rows, is what transfers.
Source accuracies enter as normal scores of their ranks within each dataset, so units never
matter; a lower-is-better table (``ArchTable.lower_is_better``) is ranked reversed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.linalg
import scipy.optimize
import scipy.stats
import threadpoolctl

from nax import space as space_lib
from nax.characteristics import featurize as feats
from nax.characteristics.spec import (
    GROUP_SCALE,
    MIN_ARCHS_PER_SOURCE,
    SIGMA_LOC,
    SIGMA_SD,
    TAU_SCALE,
    CharacteristicModel,
    mean_by_arch,
    normal_scores,
)

MAX_HYPER_ROWS = 250  # rows per source used to fit the scales (the effects use all rows)


# ---------------------------------------------------------------------------- scales (type-II MAP)
def _log_halfcauchy(u, log_s):
    """log density of x = exp(u) ~ HalfCauchy(exp(log_s)) in u (Jacobian included).

    Returns the log density and its derivatives in ``u`` and in ``log_s``.
    """
    x2, s2 = np.exp(2 * u), np.exp(2 * log_s)
    lp = np.log(2 / np.pi) - log_s - np.log1p(x2 / s2) + u
    return lp, 1 - 2 * x2 / (s2 + x2), -1 + 2 * x2 / (s2 + x2)


def _log_lognormal(u, loc, scale):
    """log density of x = exp(u) ~ LogNormal(loc, scale) in u (Jacobian included), derivative."""
    return scipy.stats.norm.logpdf(u, loc, scale), -(u - loc) / scale**2


def _log_halfnormal(u, s):
    x2 = np.exp(2 * u)
    return np.log(np.sqrt(2 / np.pi) / s) - x2 / (2 * s**2) + u, 1 - x2 / s**2


class _HyperProblem:
    """Negative log posterior of the log-scales on centred source data (observation space)."""

    def __init__(self, Zc_by_source, yc_by_source, group_idx, num_groups):
        self.D, self.G = len(Zc_by_source), num_groups
        Z = np.concatenate(Zc_by_source)
        self.y = np.concatenate(yc_by_source)
        self.src = np.concatenate([np.full(len(z), d) for d, z in enumerate(Zc_by_source)])
        same = self.src[:, None] == self.src[None, :]
        self.Gk = np.stack([Z[:, group_idx == k] @ Z[:, group_idx == k].T for k in range(num_groups)])
        self.Bd = (Z @ Z.T) * same
        # a flat intercept per source removes one degree of freedom each
        self.dof = len(self.y) - self.D

    def __call__(self, theta):
        G, D = self.G, self.D
        lg, lt, ls, lgg = theta[:G], theta[G], theta[G + 1 : G + 1 + D], theta[-1]
        g2, t2, s2 = np.exp(2 * lg), np.exp(2 * lt), np.exp(2 * ls)
        K = np.tensordot(g2, self.Gk, 1) + t2 * self.Bd
        K[np.diag_indices_from(K)] += s2[self.src]
        try:
            cf = scipy.linalg.cho_factor(K, lower=True, check_finite=False)
        except np.linalg.LinAlgError:  # numerically singular: a very bad point, not a crash
            return 1e12, np.zeros_like(theta)
        a = scipy.linalg.cho_solve(cf, self.y, check_finite=False)
        Kinv = scipy.linalg.cho_solve(cf, np.eye(len(K)), check_finite=False)
        logdet = 2 * np.sum(np.log(np.diag(cf[0])))
        # centring costs D dimensions whose variance is only sigma^2: drop them from the count
        ll = -0.5 * (self.y @ a + logdet + self.dof * np.log(2 * np.pi))
        A = np.outer(a, a) - Kinv
        grad = np.empty_like(theta)
        grad[:G] = g2 * np.einsum("ij,kij->k", A, self.Gk)
        grad[G] = t2 * np.sum(A * self.Bd)
        dA = np.diag(A)
        grad[G + 1 : G + 1 + D] = s2 * np.bincount(self.src, weights=dA, minlength=D)
        grad[-1] = 0.0
        lp_g, dlp_g, dlp_gg = _log_halfcauchy(lg, lgg)
        lp_gg, dlp_gg_own, _ = _log_halfcauchy(lgg, np.log(GROUP_SCALE))
        lp_t, dlp_t = _log_halfnormal(lt, TAU_SCALE)
        lp_s, dlp_s = _log_lognormal(ls, SIGMA_LOC, SIGMA_SD)
        lp = ll + lp_g.sum() + lp_gg + lp_t + lp_s.sum()
        grad[:G] += dlp_g
        grad[G] += dlp_t
        grad[G + 1 : G + 1 + D] += dlp_s
        grad[-1] += dlp_gg.sum() + dlp_gg_own
        return -lp, -grad


def _source_arrays(table, sources: Sequence[str], space) -> list[tuple[np.ndarray, np.ndarray]]:
    datasets = np.asarray(table.datasets).astype(str)
    if len(sources) == 0:
        raise ValueError("fit needs at least one source dataset")
    if len(set(sources)) != len(sources):
        raise ValueError(f"source datasets repeated: {list(sources)}")
    out = []
    for name in sources:
        rows = datasets == name
        if not rows.any():
            raise ValueError(
                f"source dataset {name!r} has no rows in the table; present: {', '.join(sorted(set(datasets)))}"
            )
        enc = space.validate(np.asarray(table.encodings)[rows])
        acc = np.asarray(table.accuracy, np.float64)[rows]
        if getattr(table, "lower_is_better", False):  # a loss: rank it reversed
            acc = -acc
        if not np.all(np.isfinite(acc)):
            raise ValueError(
                f"source dataset {name!r}: {int((~np.isfinite(acc)).sum())} accuracies are NaN or infinite"
            )
        enc, acc = mean_by_arch(enc, acc, space)
        if len(enc) < MIN_ARCHS_PER_SOURCE:
            raise ValueError(
                f"source dataset {name!r} has {len(enc)} distinct architectures; "
                f"at least {MIN_ARCHS_PER_SOURCE} are needed to learn anything from it"
            )
        out.append((enc, acc))
    return out


def fit(
    table,
    sources: Sequence[str],
    *,
    seed: int = 0,
    space: space_lib.CellSpace = space_lib.nb201,
    max_hyper_rows: int = MAX_HYPER_ROWS,
) -> CharacteristicModel:
    """Fit the hierarchical characteristic model on the ``sources`` of an architecture table.

    Args:
      table: an architecture table (``encodings`` int ``(n, E)``, ``datasets`` str ``(n,)``,
        ``accuracy`` ``(n,)`` in any units, higher is better unless the table's
        ``lower_is_better`` is true); repeated rows of one (arch, dataset) -- seeds -- are
        averaged.
      sources: names of the source datasets (each needs >= 10 distinct architectures).
      seed: picks the rows (at most ``max_hyper_rows`` per source) used to fit the scales;
        the same seed gives the same model bit for bit.
    Returns:
      a ``CharacteristicModel``.
    """
    # many-threaded BLAS on small matrices on a shared machine is 10x slower, not faster
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        return _fit(table, sources, seed, space, max_hyper_rows)


def _fit(table, sources, seed, space, max_hyper_rows) -> CharacteristicModel:
    data = _source_arrays(table, list(sources), space)
    _, names = feats.all_features(space)
    gidx, gnames = feats.groups(names)
    G, D = len(gnames), len(data)
    rng = np.random.default_rng(seed)
    Zc, yc, Zc_h, yc_h = [], [], [], []
    for enc, acc in data:
        X, y = feats.centered(enc, space), normal_scores(acc)
        Zc.append(X - X.mean(0))
        yc.append(y - y.mean())
        rows = np.sort(rng.choice(len(y), min(len(y), max_hyper_rows), replace=False))
        Xh, yh = X[rows], y[rows]
        Zc_h.append(Xh - Xh.mean(0))
        yc_h.append(yh - yh.mean())
    problem = _HyperProblem(Zc_h, yc_h, gidx, G)
    theta0 = np.concatenate([np.full(G, np.log(0.05)), [np.log(0.02)], np.full(D, np.log(0.3)), [np.log(0.05)]])
    # bounds keep K well conditioned: scales between e^-9 and e^1, noise sd at least e^-4
    bounds = [(-9.0, 1.0)] * G + [(-9.0, 0.0)] + [(-4.0, 1.0)] * D + [(-9.0, 1.0)]
    opt = scipy.optimize.minimize(
        problem, theta0, jac=True, method="L-BFGS-B", bounds=bounds, options=dict(maxiter=300)
    )
    theta = opt.x
    g, tau_dev, sigma = np.exp(theta[:G]), float(np.exp(theta[G])), np.exp(theta[G + 1 : G + 1 + D])
    v = g[gidx] ** 2
    mu0, E, lam0, source_mean = _population_posterior(Zc, yc, v, tau_dev, sigma)
    return CharacteristicModel(
        names=tuple(names),
        sources=tuple(sources),
        space_name=space.name,
        mu0=mu0,
        E=E,
        lam0=lam0,
        group_scale=g,
        group_names=tuple(gnames),
        tau_dev=tau_dev,
        sigma=sigma,
        source_mean=source_mean,
        n_per_source=np.array([len(e) for e, _ in data]),
        group_idx=gidx,
        info=dict(
            seed=seed,
            global_scale=float(np.exp(theta[-1])),
            neg_log_posterior=float(opt.fun),
            optimizer_iterations=int(opt.nit),
            optimizer_message=str(opt.message),
        ),
    )


def _population_posterior(Zc, yc, v, tau_dev, sigma):
    """Exact Gaussian posterior of w0 (mean, eigendecomposed covariance) and each w_d's mean."""
    f = len(v)
    B, r, svds = np.zeros((f, f)), np.zeros(f), []
    for d, (Z, y) in enumerate(zip(Zc, yc)):
        try:
            _, s, Ut = scipy.linalg.svd(Z, full_matrices=False, check_finite=False)
        except np.linalg.LinAlgError:  # divide and conquer (gesdd) can fail on rank-deficient Z
            _, s, Ut = scipy.linalg.svd(Z, full_matrices=False, check_finite=False, lapack_driver="gesvd")
        keep = s > 1e-8 * max(s.max(initial=0.0), 1.0)
        U, s2 = Ut[keep].T, s[keep] ** 2
        c = U.T @ (Z.T @ y)
        den = sigma[d] ** 2 + tau_dev**2 * s2  # eigenvalues of sigma^2 I + tau^2 Z Z^T on span(Z)
        B += (U * (s2 / den)) @ U.T
        r += U @ (c / den)
        svds.append((U, s2, c))
    sv = np.sqrt(v)
    M = np.eye(f) + sv[:, None] * B * sv[None, :]
    Minv = np.linalg.inv(M)
    Sigma0 = sv[:, None] * (0.5 * (Minv + Minv.T)) * sv[None, :]
    mu0 = Sigma0 @ r
    lam0, E = np.linalg.eigh(Sigma0)
    lam0 = np.clip(lam0, 0.0, None)
    source_mean = []
    for d, (U, s2, c) in enumerate(svds):
        # E[delta_d | y_d, w0 = mu0] = tau^2 Z^T (tau^2 Z Z^T + sigma^2 I)^-1 (y - Z mu0)
        delta = U @ (tau_dev**2 * (c - s2 * (U.T @ mu0)) / (sigma[d] ** 2 + tau_dev**2 * s2))
        source_mean.append(mu0 + delta)
    return mu0, E, lam0, np.stack(source_mean)
