"""The hierarchical characteristic model: its specification and the fitted object.

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

``fit`` (``fit.py``) computes a :class:`CharacteristicModel`, the population posterior that
transfers; ``posterior.py`` conditions it on a target. A model saves to a versioned ``.npz``
(format 2; format 1 still loads).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import scipy.sparse
import scipy.stats

from nax import space as space_lib
from nax.characteristics import featurize as feats

FORMAT_VERSION = 2  # 2: per-characteristic group index stored; 1 (fine groups) still loads
MIN_ARCHS_PER_SOURCE = 10
GROUP_SCALE = 1.0  # HalfCauchy scale of the group scales g_k
TAU_SCALE = 0.1  # HalfNormal scale of tau_dev
SIGMA_LOC, SIGMA_SD = np.log(0.3), 0.5  # LogNormal prior of sigma_d: a linear model misfits
ALPHA_SD = 0.5  # prior sd of the target's transfer coefficient alpha around 1
INTERCEPT_SD = 1.0


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
            f"y_{d}",
            dist.Normal(b_d + jnp.asarray(X_by_source[d]) @ w_d, sigma[d]),
            obs=None if y_by_source is None else y_by_source[d],
        )


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
            format="nax.characteristics",
            version=FORMAT_VERSION,
            names=list(self.names),
            sources=list(self.sources),
            space=self.space_name,
            tau_dev=self.tau_dev,
            group_names=list(self.group_names),
            info=self.info,
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
            names=tuple(header["names"]),
            sources=tuple(header["sources"]),
            space_name=header["space"],
            tau_dev=float(header["tau_dev"]),
            group_names=tuple(header["group_names"]),
            info=header["info"],
            **arrays,
        )


_ARRAYS = ("mu0", "E", "lam0", "group_scale", "sigma", "source_mean", "n_per_source", "group_idx")


def strengths(model: CharacteristicModel) -> pd.DataFrame:
    """Population effects of the characteristics, strongest first.

    Columns: ``name``, ``group``, ``mean`` (change of the normal score per unit of the
    characteristic, with the other characteristics held fixed), ``sd``, ``p_positive``
    (posterior probability that the effect is > 0), ``group_scale``.
    """
    sd = np.sqrt(np.clip(np.einsum("ij,j,ij->i", model.E, model.lam0, model.E), 0.0, None))
    gidx, gnames = model.group_idx, model.group_names
    df = pd.DataFrame(
        dict(
            name=list(model.names),
            group=[gnames[i] for i in gidx],
            mean=model.mu0,
            sd=sd,
            p_positive=scipy.stats.norm.cdf(model.mu0 / np.where(sd > 0, sd, np.inf)),
            group_scale=model.group_scale[gidx],
        )
    )
    return df.sort_values("mean", ascending=False, ignore_index=True)
