"""Fitting what transfers: the curve prior on source datasets, and its extrapolation noise.

:func:`fit_prior` fits the hierarchical model on the curves of several source datasets
and keeps what a new dataset needs (:func:`prior_from_fit`); :func:`fit_calibration` fits
the extrapolation noise (:mod:`nax.curves.calibration`) on the sources' prefixes, each
predicted exactly as a target would be (:func:`nax.curves.predict.predict`), and
:func:`calibrate_prior` stores it in the prior. Only source curves are ever used here.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from nax.curves import basis, models
from nax.curves import inference as inference_lib
from nax.curves.calibration import (
    ADAPT_MIN_SOURCES,
    CUTOFFS,
    Calibration,
    ext_scale,
    fit_params,
    spread_of_sources,
)
from nax.curves.inference import InferenceConfig
from nax.curves.observations import Observed, check_directions, from_model_scale, prepare, to_model_scale
from nax.curves.predict import predict
from nax.curves.prior import CurvePrior

#: the prior's hierarchical fit: SVI with more steps and a smaller learning rate than a
#: prediction (the population model has many more latents)
PRIOR_INFERENCE = InferenceConfig(num_steps=2000, lr=0.03)
#: the spread of a new dataset's curves may differ from the sources'; keep it learnable
LOG_SIGMA_SCALE_MIN = 0.25
#: each source prefix of the calibration fit: a prediction, with fewer draws (three
#: parameters need few)
CALIBRATION_INFERENCE = InferenceConfig(num_steps=1000, num_samples=200)


def source_datasets(tables, *, max_curves: int | None = None, seed: int = 0) -> list[tuple[str, object]]:
    """(dataset name, ``CurveTable``) of every dataset in ``tables`` (a table or a list),
    each a seeded random subset of at most ``max_curves`` runs."""
    if not isinstance(tables, (list, tuple)):
        tables = [tables]
    rng = np.random.default_rng(seed)
    parts = []
    for table in tables:
        for name, sub in table.by_dataset().items():
            if max_curves is not None and sub.n_runs > max_curves:
                sub = sub.subset(np.sort(rng.choice(sub.n_runs, max_curves, replace=False)))
            parts.append((name, sub))
    return parts


def observed_from_tables(
    tables, *, max_curves: int | None = None, seed: int = 0, allow_mixed: bool = False
) -> Observed:
    """Stack curve tables (``nax.tables.CurveTable``) into one batch, one dataset per name.

    Each dataset's horizon is the last epoch column of its runs; ``max_curves`` keeps a
    seeded random subset of at most that many runs per dataset. Tables of both directions
    (losses and accuracies) are a :class:`~nax.curves.observations.DirectionMismatch`
    naming them unless ``allow_mixed``: then each is on its own model scale (accuracy as
    is, ``exp(-loss)``), both increasing, and the batch counts as maximising.
    """
    parts = source_datasets(tables, max_curves=max_curves, seed=seed)
    if not parts:
        raise ValueError("no curves to fit")
    minimize = {p[1].minimize for p in parts}
    if len(minimize) != 1:
        first = parts[0][1]
        label = lambda name, sub: f"{name} ({sub.source})" if sub.source else name
        check_directions(
            first.minimize,
            {label(n, sub): sub.minimize for n, sub in parts},
            allow_mixed=allow_mixed,
            target=f"source {label(*parts[0])}",
        )
        minimize = {False}
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


def prior_from_fit(fit: inference_lib.Fit, families: tuple[str, ...], *, minimize: bool, info: dict) -> CurvePrior:
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
    inference: InferenceConfig = PRIOR_INFERENCE,
    seed: int = 0,
    families: tuple[str, ...] = basis.DEFAULT_FAMILIES,
    max_curves: int | None = None,
    calibrate: bool = True,
    calibration_inference: InferenceConfig = CALIBRATION_INFERENCE,
    calibration_curves: int | None = 100,
    allow_mixed: bool = False,
) -> CurvePrior:
    """Fit the population -> dataset -> curve model on source curve tables.

    ``train_tables``: ``CurveTable`` or a list of them (datasets are taken from their
    dataset column; a single dataset is allowed but then the spread between datasets is
    only its prior). ``inference``: "svi" (fast) or "nuts" (diagnostics in
    ``info``). ``max_curves``: seeded subsample per dataset. ``calibrate``: also fit the
    extrapolation noise on the same source curves (:func:`calibrate_prior`; predictions
    made with ``calibration_inference`` at :data:`nax.curves.calibration.CUTOFFS` for at
    most ``calibration_curves`` complete runs per source). ``allow_mixed``: sources may mix
    losses and accuracies (:func:`observed_from_tables`; the prior then maximises, and only
    a target's curve shape should take from it, ``nax.curves.strength.SHAPE_GRID``).
    Returns the :class:`CurvePrior`.
    """
    cfg = inference
    obs = observed_from_tables(train_tables, max_curves=max_curves, seed=seed, allow_mixed=allow_mixed)
    args = (
        jnp.asarray(obs.y),
        jnp.asarray(obs.mask),
        jnp.asarray(obs.t),
        jnp.asarray(obs.dataset),
    )
    result = inference_lib.fit(
        "hierarchical",
        args,
        {"families": tuple(families), "num_datasets": len(obs.dataset_names)},
        cfg,
        seed=seed,
    )
    info = {
        "datasets": list(obs.dataset_names),
        "curves_per_dataset": np.bincount(obs.dataset, minlength=len(obs.dataset_names)).tolist(),
        "method": cfg.method,
        "seed": seed,
        "num_steps": cfg.num_steps if cfg.method == "svi" else None,
        "seconds": result.seconds,
        "diagnostics": result.diagnostics,
        "directions": {n: bool(sub.minimize) for n, sub in source_datasets(train_tables)},
    }
    prior = prior_from_fit(result, families, minimize=obs.minimize, info=info)
    if calibrate:
        prior = calibrate_prior(
            prior,
            train_tables,
            max_curves=max_curves,
            seed=seed,
            inference=calibration_inference,
            calibration_curves=calibration_curves,
        )
    return prior


def calibrate_prior(
    prior: CurvePrior,
    source_tables: Sequence,
    *,
    max_curves: int | None = None,
    seed: int = 0,
    inference: InferenceConfig = CALIBRATION_INFERENCE,
    calibration_curves: int | None = 100,
) -> CurvePrior:
    """``prior`` with its extrapolation noise fitted on ``source_tables`` (the curves the
    prior was fitted on, subsampled the same way). Never pass a target dataset here: the
    calibration would then have seen the curves it is judged on."""
    sources = source_datasets(source_tables, max_curves=max_curves, seed=seed)
    cal = fit_calibration(
        dataclasses.replace(prior, calibration=None),
        sources,
        inference=inference,
        max_curves=calibration_curves,
        seed=seed,
    )
    return dataclasses.replace(prior, calibration=cal)


def _truncate(values, mask, epochs, cutoff):
    horizon = int(epochs[-1])
    k = max(1, int(np.searchsorted(epochs, round(cutoff * horizon), side="right")))
    mask = mask.copy()
    mask[:, k:] = False
    return np.where(mask, values, np.nan), mask


def _fit_groups(groups) -> tuple[Calibration, float]:
    # every (dataset, cutoff) group weighs equally, whatever its number of curves
    cat = lambda k: np.concatenate([g[k] for g in groups], axis=-1)
    weight = np.concatenate([np.full(len(g["y"]), 1.0 / len(g["y"])) for g in groups])
    return fit_params(cat("m"), cat("s"), cat("y"), cat("gap"), cat("head"), weight / weight.sum())


def fit_calibration(
    prior: CurvePrior,
    sources: Sequence,
    *,
    cutoffs: Sequence[float] = CUTOFFS,
    inference: InferenceConfig = CALIBRATION_INFERENCE,
    max_curves: int | None = 100,
    seed: int = 0,
) -> Calibration | None:
    """Fit the extrapolation noise of ``prior`` on source curves.

    ``sources``: (name, ``CurveTable``) pairs, the (subsampled) source datasets the prior
    was fitted on; only their runs observed to the last epoch are used, at most
    ``max_curves`` per dataset (seeded subsample; three parameters need few curves, and
    every prefix is one SVI fit). Every dataset and cutoff weighs equally. Returns the
    :class:`~nax.curves.calibration.Calibration` of the prior (parameters, and in ``fit``
    the fit summary and the 90% interval coverage on the sources before and after), or
    None when no source has two complete runs.
    """
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    groups, problems = [], []
    for name, table in sources:
        table = table.subset(table.mask[:, -1])
        if max_curves is not None and table.n_runs > max_curves:
            table = table.subset(np.sort(rng.choice(table.n_runs, max_curves, replace=False)))
        if table.n_runs < 2:
            continue
        horizon = int(table.epochs[-1])
        final = to_model_scale(table.values[:, -1], table.minimize)
        for cutoff in cutoffs:
            values, mask = _truncate(table.values, table.mask, table.epochs, cutoff)
            if mask[:, -1].any():
                continue  # nothing left to extrapolate at this cutoff
            pred = predict(
                prior,
                values,
                mask,
                horizon,
                epochs=table.epochs,
                minimize=table.minimize,
                inference=inference,
                seed=seed,
            )
            if not pred.ok:
                problems.append(f"{name}@{cutoff}: {'; '.join(pred.diagnostics['problems'])}")
                continue
            m, s = pred.final_mean_scale()
            groups.append(
                {
                    "name": name,
                    "cutoff": float(cutoff),
                    "m": m,
                    "s": s,
                    "y": final,
                    "gap": 1.0 - pred.t_obs,
                    "head": 1.0 - pred.y_last,
                    "samples": pred.samples,
                    "truth": table.values[:, -1],
                    "minimize": table.minimize,
                }
            )
    if not groups:
        return None
    calibration, nll = _fit_groups(groups)
    # how far one source dataset's calibration strays from the pooled one: the prior scale
    # of a target's adaptation (calibration.adapt_scale), fitted on this fold's sources
    names = sorted({g["name"] for g in groups})
    per_source = {}
    if len(names) >= ADAPT_MIN_SOURCES:
        for name in names:
            own, _ = _fit_groups([g for g in groups if g["name"] == name])
            per_source[name] = [own.log_a, own.b, own.c]
    adapt_scale = spread_of_sources(per_source)
    coverage = []
    for g in groups:
        # the uncalibrated draws plus extrapolation noise: the calibrated predictive
        e = ext_scale(calibration, g["gap"], g["head"])
        y = to_model_scale(g["samples"], g["minimize"]) + e * rng.standard_t(models.NOISE_DF, g["samples"].shape)
        if g["minimize"]:
            y = np.clip(y, 1e-12, 1.0)
        after = from_model_scale(y, g["minimize"])
        cov = []
        for draws in (g["samples"], after):
            lo, hi = np.quantile(draws, [0.05, 0.95], axis=0)
            cov.append(float(np.mean((g["truth"] >= lo) & (g["truth"] <= hi))))
        coverage.append(
            {
                "dataset": g["name"],
                "cutoff": g["cutoff"],
                "cov90_before": cov[0],
                "cov90_after": cov[1],
            }
        )
    fit = {
        "cutoffs": [float(c) for c in cutoffs],
        "datasets": sorted({g["name"] for g in groups}),
        "curves": int(sum(len(g["y"]) for g in groups)),
        "mean_nll": nll,
        "num_steps": inference.num_steps,
        "num_samples": inference.num_samples,
        "max_curves": max_curves,
        "seconds": time.perf_counter() - start,
        "problems": problems,
        "source_coverage": coverage,
        "per_source": per_source,
        "adapt_scale": adapt_scale,
    }
    return calibration._replace(fit=fit)
