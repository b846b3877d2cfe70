"""The hierarchical characteristic model: population effects that transfer to a new dataset.

Generative model (``hierarchical_model``, NumPyro), on characteristics ``x`` centred over the
space (``featurize.centered``) and within-dataset normal scores ``y`` of accuracy::

    g_global ~ HalfCauchy(1)
    g_k      ~ HalfCauchy(g_global)       scale of characteristic group k, a kind of characteristic
                                          (``featurize.group_of``; a group horseshoe: kinds
                                          that carry no signal are shrunk to zero)
    w0_j     ~ Normal(0, g_k(j)^2)        population effects
    tau_dev  ~ HalfNormal(0.1)            how far datasets deviate from the population
    w_d      ~ Normal(w0, tau_dev^2 I)    effects on source dataset d
    sigma_d  ~ LogNormal(log 0.3, 0.5)     (a linear model of ranks always misfits a little)
    y_dn     ~ Normal(b_d + x_dn . w_d, sigma_d^2)   (b_d: flat in ``fit``, N(0, 1) to simulate)

Inference (``fit``). Given the scales every effect is Gaussian, so ``w0`` and all ``w_d``
are integrated out exactly; the scales (g, tau_dev, sigma) are set to their posterior mode
(type-II MAP: L-BFGS on the exact collapsed log marginal likelihood plus the log hyperprior,
with analytic gradients, on at most 250 seeded rows per source: a handful of scales is
well determined by them). The population posterior ``w0 ~ N(mu0, Sigma0)`` given those
scales, computed from all rows, is what transfers.

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
import json
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import scipy.linalg
import scipy.optimize
import scipy.sparse
import scipy.special
import scipy.stats
import threadpoolctl

from nax import space as space_lib
from nax.characteristics import featurize as feats

FORMAT_VERSION = 2  # 2: per-characteristic group index stored; 1 (fine groups) still loads
MIN_ARCHS_PER_SOURCE = 10
GROUP_SCALE = 1.0  # HalfCauchy scale of the group scales g_k
TAU_SCALE = 0.1  # HalfNormal scale of tau_dev
SIGMA_LOC, SIGMA_SD = np.log(0.3), 0.5  # LogNormal prior of sigma_d: a linear model misfits
ALPHA_SD = 0.5  # prior sd of the target's transfer coefficient alpha around 1
INTERCEPT_SD = 1.0
MAX_HYPER_ROWS = 250  # rows per source used to fit the scales (the effects use all rows)


# ---------------------------------------------------------------------------- data
def normal_scores(values) -> np.ndarray:
    """Rank-based normal scores ``Phi^-1((rank - 1/2) / n)`` of ``(n,)`` values (ties averaged).

    Higher value -> higher score; mean 0 whatever the units of ``values``.
    """
    values = np.asarray(values, np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"normal scores need a non-empty 1-d array of accuracies, got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{int((~np.isfinite(values)).sum())} accuracies are NaN or infinite")
    r = scipy.stats.rankdata(values)
    return scipy.stats.norm.ppf((r - 0.5) / len(values))


def mean_by_arch(encodings: np.ndarray, accuracy: np.ndarray, space) -> tuple[np.ndarray, np.ndarray]:
    """Average repeated evaluations (seeds) of one architecture: unique encodings ``(m, E)``, means ``(m,)``."""
    idx = space.index(encodings)
    uniq, first, inv = np.unique(idx, return_index=True, return_inverse=True)
    acc = np.bincount(inv, weights=accuracy) / np.bincount(inv)
    return encodings[first], acc


# ---------------------------------------------------------------------------- NumPyro model
def hierarchical_model(X_by_source: Sequence, group_idx, num_groups: int, y_by_source: Sequence | None = None):
    """The generative model (see the module docstring); ``X_by_source[d]`` is ``(n_d, f)``.

    ``fit`` integrates the effects out analytically; this function is the model those
    integrals belong to, and simulates data when ``y_by_source`` is None.
    """
    D, f = len(X_by_source), X_by_source[0].shape[1]
    g_global = numpyro.sample("g_global", dist.HalfCauchy(GROUP_SCALE))
    g = numpyro.sample("g", dist.HalfCauchy(g_global * jnp.ones(num_groups)))
    tau_dev = numpyro.sample("tau_dev", dist.HalfNormal(TAU_SCALE))
    with numpyro.plate("sources", D):
        sigma = numpyro.sample("sigma", dist.LogNormal(SIGMA_LOC, SIGMA_SD))
    w0 = numpyro.sample("w0", dist.Normal(0.0, g[jnp.asarray(group_idx)]))
    for d in range(D):
        w_d = numpyro.sample(f"w_{d}", dist.Normal(w0, tau_dev * jnp.ones(f)))
        b_d = numpyro.sample(f"b_{d}", dist.Normal(0.0, INTERCEPT_SD))
        numpyro.sample(
            f"y_{d}", dist.Normal(b_d + jnp.asarray(X_by_source[d]) @ w_d, sigma[d]),
            obs=None if y_by_source is None else y_by_source[d],
        )


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


# ---------------------------------------------------------------------------- fitted object
@dataclasses.dataclass(frozen=True, eq=False)
class CharacteristicModel:
    """Population posterior ``w0 ~ N(mu0, E diag(lam0) E^T)`` on centred characteristics.

    Scores are on the normal-score scale (mean 0, sd 1 over a dataset's architectures).
    ``source_mean[d]`` are the posterior mean effects on source ``d`` (given ``w0 = mu0``).
    """

    names: tuple[str, ...]
    sources: tuple[str, ...]
    space_name: str
    mu0: np.ndarray  # (f,)
    E: np.ndarray  # (f, f)
    lam0: np.ndarray  # (f,)
    group_scale: np.ndarray  # (G,) g_k
    group_names: tuple[str, ...]
    tau_dev: float
    sigma: np.ndarray  # (D,)
    source_mean: np.ndarray  # (D, f)
    n_per_source: np.ndarray  # (D,)
    info: dict = dataclasses.field(default_factory=dict)
    group_idx: np.ndarray | None = None  # (f,) group of each characteristic; None: ``feats.groups(names)``

    def __post_init__(self):
        if self.group_idx is None:
            object.__setattr__(self, "group_idx", feats.groups(self.names)[0])

    @property
    def space(self) -> space_lib.CellSpace:
        return space_lib.get(self.space_name)

    @property
    def num_features(self) -> int:
        return len(self.names)

    @property
    def Sigma0(self) -> np.ndarray:
        """Posterior covariance ``(f, f)`` of the population effects."""
        return (self.E * self.lam0) @ self.E.T

    @functools.cached_property
    def _columns(self) -> slice | np.ndarray:
        """Where this model's characteristics sit among today's (a model saved before
        characteristics were added uses its own, by name)."""
        current = feats.features(np.zeros((1, self.space.num_edges), np.int32), self.space)[1]
        if current == list(self.names):
            return slice(None)
        pos = {n: i for i, n in enumerate(current)}
        missing = [n for n in self.names if n not in pos]
        if missing:
            raise ValueError(f"model characteristics unknown to this nax version: {missing[:5]}")
        return np.array([pos[n] for n in self.names])

    def _centered(self, encodings) -> np.ndarray:
        return feats.centered(encodings, self.space)[:, self._columns]

    @functools.cached_property
    def _space_XE(self) -> np.ndarray:
        """Centred characteristics of every cell rotated into the eigenbasis of Sigma0 (cached)."""
        X, _ = feats.all_features(self.space)
        mu, _ = feats.space_stats(self.space)
        # raw characteristics are mostly zero (about 50 of 771 set per cell): a sparse product
        # then the centring as a rank-one term is 2-3x faster than the dense (X - mu) E
        Xs = scipy.sparse.csr_matrix(X[:, self._columns])
        return Xs @ self.E - (mu[self._columns] @ self.E)[None]

    def rotated(self, encodings) -> np.ndarray:
        """Centred characteristics of encodings ``(n, E)`` in the Sigma0 eigenbasis, ``(n, f)``."""
        enc = np.atleast_2d(self.space.validate(encodings))
        if self.space.size <= 100_000:
            idx = self.space.index(enc)
            if len(idx) == self.space.size and np.array_equal(idx, np.arange(len(idx))):
                return self._space_XE  # the whole space in order: no 60 MB copy per call
            return self._space_XE[idx]
        return self._centered(enc) @ self.E

    def save(self, path: str) -> None:
        """Write a versioned ``.npz`` (arrays + a JSON header); read back with ``load``."""
        header = dict(
            format="nax.characteristics", version=FORMAT_VERSION, names=list(self.names),
            sources=list(self.sources), space=self.space_name, tau_dev=self.tau_dev,
            group_names=list(self.group_names), info=self.info,
        )
        with open(path, "wb") as fh:
            np.savez(fh, header=np.array(json.dumps(header)), **{k: getattr(self, k) for k in _ARRAYS})

    @classmethod
    def load(cls, path: str) -> CharacteristicModel:
        """Read a model written by ``save`` (no pickle)."""
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(str(z["header"]))
            version = header.get("version")
            if header.get("format") != "nax.characteristics" or version not in (1, FORMAT_VERSION):
                raise ValueError(f"{path} is not a nax characteristic model (format version 1 or {FORMAT_VERSION})")
            arrays = {k: np.array(z[k]) for k in _ARRAYS if k in z.files}
        if version == 1:  # fitted with one group per edge / pair of edges
            arrays["group_idx"] = feats.groups(header["names"], fine=True)[0]
        return cls(
            names=tuple(header["names"]), sources=tuple(header["sources"]), space_name=header["space"],
            tau_dev=float(header["tau_dev"]), group_names=tuple(header["group_names"]), info=header["info"],
            **arrays,
        )


_ARRAYS = ("mu0", "E", "lam0", "group_scale", "sigma", "source_mean", "n_per_source", "group_idx")


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
        ``accuracy`` ``(n,)`` in any units, higher is better); repeated rows of one
        (arch, dataset) -- seeds -- are averaged.
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
    opt = scipy.optimize.minimize(problem, theta0, jac=True, method="L-BFGS-B", bounds=bounds,
                                  options=dict(maxiter=300))
    theta = opt.x
    g, tau_dev, sigma = np.exp(theta[:G]), float(np.exp(theta[G])), np.exp(theta[G + 1 : G + 1 + D])
    v = g[gidx] ** 2
    mu0, E, lam0, source_mean = _population_posterior(Zc, yc, v, tau_dev, sigma)
    return CharacteristicModel(
        names=tuple(names), sources=tuple(sources), space_name=space.name, mu0=mu0, E=E, lam0=lam0,
        group_scale=g, group_names=tuple(gnames), tau_dev=tau_dev, sigma=sigma, source_mean=source_mean,
        n_per_source=np.array([len(e) for e, _ in data]), group_idx=gidx,
        info=dict(seed=seed, global_scale=float(np.exp(theta[-1])), neg_log_posterior=float(opt.fun), optimizer_iterations=int(opt.nit),
                  optimizer_message=str(opt.message)),
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


# ---------------------------------------------------------------------------- target
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
        return TargetPosterior(model, transfer, rho, tau, float(np.mean(model.sigma)), 0,
                               np.zeros((0, model.num_features)), np.zeros(0), np.zeros((0, 0)), np.zeros(0), 0.0)
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


def strengths(model: CharacteristicModel) -> pd.DataFrame:
    """Population effects of the characteristics, strongest first.

    Columns: ``name``, ``group``, ``mean`` (change of the normal score per unit of the
    characteristic, with the other characteristics held fixed), ``sd``, ``p_positive``
    (posterior probability that the effect is > 0), ``group_scale``.
    """
    sd = np.sqrt(np.clip(np.einsum("ij,j,ij->i", model.E, model.lam0, model.E), 0.0, None))
    gidx, gnames = model.group_idx, model.group_names
    df = pd.DataFrame(dict(
        name=list(model.names), group=[gnames[i] for i in gidx], mean=model.mu0, sd=sd,
        p_positive=scipy.stats.norm.cdf(model.mu0 / np.where(sd > 0, sd, np.inf)),
        group_scale=model.group_scale[gidx],
    ))
    return df.sort_values("mean", ascending=False, ignore_index=True)
