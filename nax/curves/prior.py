"""The transferable curve prior: fitted on source datasets, saved as versioned JSON.

:func:`fit_prior` fits the hierarchical model on the curves of several source datasets
and keeps what a new dataset needs: the predictive distribution of a new dataset's level
(``mu_pop + tau * N(0, I)``, summarised as a diagonal Gaussian), the spread of curves
around their dataset's level (log-normal) and their correlation (fixed Cholesky factor).
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from nax.curves import basis, inference
from nax.curves import calibration as calib
from nax.curves.observations import Observed, prepare

FORMAT = "nax.curves.CurvePrior"
#: bump when the meaning of a stored field changes. Version 2 added ``calibration``;
#: a version-1 file still loads, as an uncalibrated prior (with a warning); any other
#: version is refused
VERSION = 2
READABLE_VERSIONS = (1, 2)
#: the spread of a new dataset's curves may differ from the sources'; keep it learnable
LOG_SIGMA_SCALE_MIN = 0.25


@dataclasses.dataclass(frozen=True)
class CurvePrior:
    """Population-level posterior of the hierarchical curve model.

    Arrays are float [D] (``L``: [D, D]) over the unconstrained parameter vector of
    :mod:`nax.curves.basis` for ``families``. ``info`` records the sources, the inference
    method and its diagnostics. ``calibration``: the extrapolation noise fitted on the
    source curves' prefixes (:mod:`nax.curves.calibration`), or None (uncalibrated).
    """

    families: tuple[str, ...]
    mu_loc: np.ndarray
    mu_scale: np.ndarray
    log_sigma_loc: np.ndarray
    log_sigma_scale: np.ndarray
    L: np.ndarray
    minimize: bool = False
    info: dict = dataclasses.field(default_factory=dict)
    calibration: dict | None = None

    def model_prior(self) -> dict:
        """The arrays the ``transfer`` model takes as ``prior``."""
        return {
            k: jnp.asarray(getattr(self, k), jnp.float32)
            for k in ("mu_loc", "mu_scale", "log_sigma_loc", "log_sigma_scale", "L")
        }

    def to_dict(self) -> dict:
        out = {
            "format": FORMAT,
            "version": VERSION,
            "families": list(self.families),
            "minimize": self.minimize,
        }
        for k in ("mu_loc", "mu_scale", "log_sigma_loc", "log_sigma_scale", "L"):
            out[k] = np.asarray(getattr(self, k), np.float64).tolist()
        out["calibration"] = self.calibration
        out["info"] = self.info
        return out

    def save(self, path: str | Path) -> None:
        """Write the prior as JSON (format name and version first)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def from_dict(cls, d: dict, where: str = "prior") -> CurvePrior:
        if d.get("format") != FORMAT:
            raise ValueError(
                f"{where}: not a nax curve prior (format {d.get('format')!r}, expected {FORMAT!r})"
            )
        version = d.get("version")
        if version not in READABLE_VERSIONS:
            raise ValueError(
                f"{where}: curve prior version {version!r}, this nax reads versions "
                f"{READABLE_VERSIONS}; refit it with fit_prior"
            )
        calibration = d.get("calibration") if version >= 2 else None
        if version == 1:
            warnings.warn(
                f"{where}: version-1 curve prior has no extrapolation-noise calibration; "
                "its predictive intervals are over-confident. Refit with fit_prior, or add "
                "one with nax.curves.prior.calibrate_prior(prior, source_tables)",
                stacklevel=3,
            )
        if calibration is not None:
            missing = {"kind", "log_a", "b", "c"} - set(calibration)
            if missing or calibration["kind"] != calib.KIND:
                raise ValueError(
                    f"{where}: calibration is not a {calib.KIND!r} record (missing {sorted(missing)})"
                )
        fams = tuple(d["families"])
        unknown = [f for f in fams if f not in basis.FAMILIES]
        if unknown:
            raise ValueError(f"{where}: unknown curve families {unknown}")
        dim = basis.num_params(fams)
        arrs = {
            k: np.asarray(d[k], np.float64)
            for k in ("mu_loc", "mu_scale", "log_sigma_loc", "log_sigma_scale", "L")
        }
        for k, v in arrs.items():
            want = (dim, dim) if k == "L" else (dim,)
            if v.shape != want:
                raise ValueError(
                    f"{where}: field {k} has shape {v.shape}, expected {want}"
                )
        return cls(
            families=fams,
            minimize=bool(d.get("minimize", False)),
            info=dict(d.get("info", {})),
            calibration=calibration,
            **arrs,
        )

    @classmethod
    def load(cls, path: str | Path) -> CurvePrior:
        """Read a prior written by :meth:`save`; another format or version is a ``ValueError``."""
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not a JSON curve prior ({e})") from None
        return cls.from_dict(d, where=str(path))


def source_datasets(
    tables, *, max_curves: int | None = None, seed: int = 0
) -> list[tuple[str, object]]:
    """(dataset name, ``CurveTable``) of every dataset in ``tables`` (a table or a list),
    each a seeded random subset of at most ``max_curves`` runs."""
    if not isinstance(tables, (list, tuple)):
        tables = [tables]
    rng = np.random.default_rng(seed)
    parts = []
    for table in tables:
        for name, sub in table.by_dataset().items():
            if max_curves is not None and sub.n_runs > max_curves:
                sub = sub.subset(
                    np.sort(rng.choice(sub.n_runs, max_curves, replace=False))
                )
            parts.append((name, sub))
    return parts


def observed_from_tables(
    tables, *, max_curves: int | None = None, seed: int = 0
) -> Observed:
    """Stack curve tables (``nax.tables.CurveTable``) into one batch, one dataset per name.

    Each dataset's horizon is the last epoch column of its runs; ``max_curves`` keeps a
    seeded random subset of at most that many runs per dataset.
    """
    parts = source_datasets(tables, max_curves=max_curves, seed=seed)
    if not parts:
        raise ValueError("no curves to fit")
    minimize = {p[1].minimize for p in parts}
    if len(minimize) != 1:
        raise ValueError("cannot mix loss (minimize) and accuracy tables")
    names = sorted({n for n, _ in parts})
    width = max(s.n_epochs for _, s in parts)
    ys, ms, ts, hs, ds = [], [], [], [], []
    for name, sub in parts:
        obs = prepare(
            sub.values,
            sub.mask,
            epochs=sub.epochs,
            horizon=int(sub.epochs[-1]),
            minimize=sub.minimize,
        )
        pad = width - sub.n_epochs
        ys.append(np.pad(obs.y, ((0, 0), (0, pad))))
        ms.append(np.pad(obs.mask, ((0, 0), (0, pad))))
        ts.append(np.pad(obs.t, ((0, 0), (0, pad)), constant_values=1.0))
        hs.append(obs.horizon)
        ds.append(np.full(sub.n_runs, names.index(name), np.int32))
    return Observed(
        y=np.concatenate(ys),
        mask=np.concatenate(ms),
        t=np.concatenate(ts),
        horizon=np.concatenate(hs),
        dataset=np.concatenate(ds),
        dataset_names=tuple(names),
        minimize=minimize.pop(),
    )


def prior_from_fit(
    fit: inference.Fit, families: tuple[str, ...], *, minimize: bool, info: dict
) -> CurvePrior:
    """Summarise the population level of a hierarchical fit as a :class:`CurvePrior`."""
    lat = {k: np.asarray(v, np.float64) for k, v in fit.latents.items()}
    mu_pop, tau, sigma, chol = lat["mu_pop"], lat["tau"], lat["sigma"], lat["L"]
    # a new dataset's level: mu_pop + tau * eps, moments over the posterior draws
    mu_loc = mu_pop.mean(0)
    mu_scale = np.sqrt(mu_pop.var(0) + (tau**2).mean(0))
    log_sigma = np.log(sigma)
    corr = np.einsum("sij,skj->ik", chol, chol) / chol.shape[0]
    d = np.sqrt(np.diag(corr))
    corr = corr / d[:, None] / d[None, :]
    return CurvePrior(
        families=tuple(families),
        mu_loc=mu_loc,
        mu_scale=mu_scale,
        log_sigma_loc=log_sigma.mean(0),
        log_sigma_scale=np.maximum(log_sigma.std(0), LOG_SIGMA_SCALE_MIN),
        L=np.linalg.cholesky(corr + 1e-6 * np.eye(len(d))),
        minimize=minimize,
        info=info,
    )


def fit_prior(
    train_tables: Sequence,
    *,
    method: str = "svi",
    seed: int = 0,
    num_steps: int = 2000,
    num_samples: int = 400,
    num_warmup: int = 400,
    lr: float = 0.03,
    families: tuple[str, ...] = basis.DEFAULT_FAMILIES,
    max_curves: int | None = None,
    calibrate: bool = True,
    calibration_steps: int = 1000,
    calibration_curves: int | None = 100,
) -> CurvePrior:
    """Fit the population -> dataset -> curve model on source curve tables.

    ``train_tables``: ``CurveTable`` or a list of them (datasets are taken from their
    dataset column; a single dataset is allowed but then the spread between datasets is
    only its prior). ``method``: "svi" (fast) or "nuts" (diagnostics in ``info``).
    ``max_curves``: seeded subsample per dataset. ``calibrate``: also fit the
    extrapolation noise on the same source curves (:func:`calibrate_prior`; predictions
    of ``calibration_steps`` SVI steps at :data:`nax.curves.calibration.CUTOFFS` for at
    most ``calibration_curves`` complete runs per source).
    Returns the :class:`CurvePrior`.
    """
    obs = observed_from_tables(train_tables, max_curves=max_curves, seed=seed)
    args = (
        jnp.asarray(obs.y),
        jnp.asarray(obs.mask),
        jnp.asarray(obs.t),
        jnp.asarray(obs.dataset),
    )
    result = inference.fit(
        "hierarchical",
        args,
        {"families": tuple(families), "num_datasets": len(obs.dataset_names)},
        method=method,
        seed=seed,
        num_steps=num_steps,
        num_samples=num_samples,
        num_warmup=num_warmup,
        lr=lr,
    )
    info = {
        "datasets": list(obs.dataset_names),
        "curves_per_dataset": np.bincount(
            obs.dataset, minlength=len(obs.dataset_names)
        ).tolist(),
        "method": method,
        "seed": seed,
        "num_steps": num_steps if method == "svi" else None,
        "seconds": result.seconds,
        "diagnostics": result.diagnostics,
    }
    prior = prior_from_fit(result, families, minimize=obs.minimize, info=info)
    if calibrate:
        prior = calibrate_prior(
            prior,
            train_tables,
            max_curves=max_curves,
            seed=seed,
            num_steps=calibration_steps,
            calibration_curves=calibration_curves,
        )
    return prior


def calibrate_prior(
    prior: CurvePrior,
    source_tables: Sequence,
    *,
    max_curves: int | None = None,
    seed: int = 0,
    num_steps: int = 1000,
    calibration_curves: int | None = 100,
) -> CurvePrior:
    """``prior`` with its extrapolation noise fitted on ``source_tables`` (the curves the
    prior was fitted on, subsampled the same way). Never pass a target dataset here: the
    calibration would then have seen the curves it is judged on."""
    sources = source_datasets(source_tables, max_curves=max_curves, seed=seed)
    cal = calib.fit_calibration(
        dataclasses.replace(prior, calibration=None),
        sources,
        num_steps=num_steps,
        max_curves=calibration_curves,
        seed=seed,
    )
    return dataclasses.replace(prior, calibration=cal)
