"""``nax curves benchmark``: how well final values are extrapolated from prefixes.

For every test dataset and cutoff (fraction of the epochs observed): MAE of the predicted
final value, mean log predictive density (LPD) of the true final value, coverage of the
central 90% interval and seconds per curve, for ``last_value``, ``pow3``, ``svr``,
``no_transfer`` and ``transfer`` (SVI), optionally NUTS variants on a seeded subsample.
With a calibrated prior (the default) also ``transfer_uncalibrated``: the same posterior
draws without the extrapolation noise (:mod:`nax.curves.calibration`). Leave one dataset
out: a test dataset is never among the datasets its prior is fitted on, so ``--train``
and ``--test`` may name the same files.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nax.curves import baselines, calibration
from nax.curves.bench.common import (
    complete_runs,
    meta,
    setup,
    sources_for,
    subsample,
    truncate,
)
from nax.curves.fitting import PRIOR_INFERENCE
from nax.curves.inference import InferenceConfig
from nax.curves.predict import predict

DEFAULT_CUTOFFS = (0.1, 0.2, 0.3, 0.5)


def _record(
    results, log, row, truth, method, pred_final, lpd=None, cov=None, seconds=0.0, inference="none", extra=None
):
    """Append one result row (MAE against ``truth`` [n]) and log it."""
    n = len(truth)
    err = np.abs(np.asarray(pred_final) - truth)
    r = {**row, "method": method, "n_curves": n, "mae": float(np.mean(err)), "lpd": lpd, "cov90": cov}
    r.update(sec_per_curve=seconds / n, inference=inference, **(extra or {}))
    results.append(r)
    log(
        f"{row['dataset']:>22} {row['cutoff']:4.2f} {method:>16} mae {r['mae']:.4f} "
        f"lpd {'-' if lpd is None else f'{lpd:.3f}'} cov90 {'-' if cov is None else f'{cov:.3f}'} "
        f"s/curve {r['sec_per_curve']:.4f} {(extra or {}).get('problems', '')}"
    )


def _interval_stats(pred, final):
    lo, hi = pred.quantile([0.05, 0.95])
    return float(np.mean(pred.log_density(final))), float(np.mean((final >= lo) & (final <= hi)))


def _same_width(arrays):
    width = max(a.shape[1] for a in arrays)
    fill = lambda a: np.nan if a.dtype.kind == "f" else False
    return [np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=fill(a)) for a in arrays]


def extrapolation_benchmark(
    train_paths: Sequence[str],
    test_paths: Sequence[str],
    *,
    cutoffs: Sequence[float] = DEFAULT_CUTOFFS,
    prefix: str = "acc_",
    dataset_column: str = "training_dataset",
    minimize: bool = False,
    max_curves: int | None = None,
    max_train_curves: int | None = 300,
    nuts_curves: int = 0,
    inference: InferenceConfig = InferenceConfig(),
    prior_inference: InferenceConfig = PRIOR_INFERENCE,
    calibrate: bool = True,
    prior_cache: str | Path | None = None,
    finished: Sequence[int] = (),
    seed: int = 0,
    log=print,
) -> dict:
    """Run the extrapolation benchmark; returns ``{"results": [...], "priors": {...},
    "meta": {...}}``.

    ``finished``: for each ``k``, also ``transfer_finished{k}``: ``k`` runs of the target
    finished (the other runs' context, and the calibration adapts to them), scored on the
    other runs (:func:`_within_target`); the issue's protocol is ``finished=()``.
    ``max_curves``: seeded subsample of each test dataset; ``max_train_curves``: per source
    dataset for the prior fit; ``nuts_curves`` > 0 adds ``transfer_nuts`` and
    ``no_transfer_nuts`` on that many curves of each test dataset. ``inference``: every
    prediction's (``method`` is replaced by "nuts" for the NUTS rows).
    """
    config = {k: v for k, v in locals().items() if k not in ("log", "inference", "prior_inference")}
    config.update(
        inference=inference.to_dict(),
        prior_inference=prior_inference.to_dict(),
        prior_cache=None if prior_cache is None else str(prior_cache),
    )
    record = meta("nax curves benchmark", config)  # at the start: a long run would record a later commit
    train, test, priors = setup(
        train_paths,
        test_paths,
        prefix=prefix,
        dataset_column=dataset_column,
        minimize=minimize,
        transfer=True,
        seed=seed,
        max_train_curves=max_train_curves,
        calibrate=calibrate,
        prior_inference=prior_inference,
        prior_cache=prior_cache,
        log=log,
    )
    results = []
    for name, full in test.items():
        table = subsample(complete_runs(full), max_curves, seed)
        if table.n_runs == 0:
            log(f"{name}: no complete runs, skipped")
            continue
        prior = priors.for_target(name)
        final, horizon, n = table.values[:, -1], int(table.epochs[-1]), table.n_runs
        nuts_idx = np.random.default_rng(seed).permutation(n)[: min(nuts_curves, n)]
        for cutoff in cutoffs:
            values, mask, k = truncate(table, cutoff)
            row = {"dataset": name, "cutoff": float(cutoff), "n_curves": n, "epochs_observed": k, "horizon": horizon}
            add = functools.partial(_record, results, log, row, final)

            t0 = time.perf_counter()
            add("last_value", baselines.last_value(values, mask), seconds=time.perf_counter() - t0)
            if not minimize:
                t0 = time.perf_counter()
                p = baselines.pow3_least_squares(values, mask, table.epochs, horizon)
                add("pow3", p, seconds=time.perf_counter() - t0)
            sources = [train[s] for s in sources_for(name, train)]
            if sources and not minimize:
                t0 = time.perf_counter()
                xs, ms, ys = [], [], []
                for src in sources:
                    src = complete_runs(src)
                    v, m, _ = truncate(src, cutoff)
                    xs.append(v), ms.append(m), ys.append(src.values[:, -1])
                svr = baselines.SVRPredictor(seed=seed)
                svr.fit(np.concatenate(_same_width(xs)), np.concatenate(_same_width(ms)), np.concatenate(ys))
                add("svr", svr.predict(values, mask), seconds=time.perf_counter() - t0)
            fits = [("no_transfer", None, "svi", np.arange(n))]
            if prior is not None:
                fits.append(("transfer", prior, "svi", np.arange(n)))
            if len(nuts_idx):
                fits.append(("no_transfer_nuts", None, "nuts", nuts_idx))
                if prior is not None:
                    fits.append(("transfer_nuts", prior, "nuts", nuts_idx))
            for method, pr, inf, idx in fits:
                pred = predict(
                    pr,
                    values[idx],
                    mask[idx],
                    horizon,
                    epochs=table.epochs,
                    minimize=minimize,
                    inference=inference.replace(method=inf),
                    seed=seed,
                )
                lpd, cov = _interval_stats(pred, final[idx])
                extra = {"ok": pred.ok, "problems": "; ".join(pred.diagnostics["problems"])}
                if inf == "nuts":
                    extra.update({k: pred.diagnostics[k] for k in ("r_hat_max", "ess_min", "divergences")})
                _record(
                    results,
                    log,
                    row,
                    final[idx],
                    method,
                    pred.mean,
                    lpd,
                    cov,
                    pred.seconds,
                    inf,
                    {**extra, "calibrated": pred.calibrated},
                )
                if method == "transfer":
                    for k_done in finished:
                        _within_target(results, log, row, table, values, mask, pred, pr, k_done, inference, seed)
                if pred.calibrated:
                    # the same posterior draws without the extrapolation noise: what the
                    # calibration changes, at no extra inference
                    raw = dataclasses.replace(pred, calibration=None)
                    lpd, cov = _interval_stats(raw, final[idx])
                    _record(
                        results,
                        log,
                        row,
                        final[idx],
                        f"{method}_uncalibrated",
                        raw.mean,
                        lpd,
                        cov,
                        pred.seconds,
                        inf,
                        {**extra, "calibrated": False},
                    )
    return {"results": results, "priors": priors.info(), "meta": record}


def _within_target(results, log, row, table, values, mask, pred, prior, k_done, inference, seed):
    """``transfer_finished{k}``: as a search ``k`` runs in, ``k`` (seeded) runs of the
    target are finished. They join the context of the prediction of the other runs, and
    the calibration adapts to them (:func:`nax.curves.calibration.adapt`): each half of
    them is predicted from its prefixes with the other half as context (so the evidence
    comes from predictions made as the scored ones are, with finished runs in context).
    Scored on the other runs, next to ``transfer`` (``pred``) on the same runs
    (``paired_*``)."""
    n = table.n_runs
    if not 1 < k_done < n:
        return
    final = table.values[:, -1]
    order = np.random.default_rng(seed).permutation(n)
    done, rest = np.sort(order[:k_done]), np.sort(order[k_done:])
    horizon = int(table.epochs[-1])

    def context(rows):  # finished runs: full curves on epochs 1..horizon, NaN where unlogged
        ctx = np.full((len(rows), horizon), np.nan)
        ctx[:, table.epochs - 1] = np.where(table.mask[rows], table.values[rows], np.nan)
        return ctx

    kw = {"epochs": table.epochs, "minimize": table.minimize, "inference": inference, "seed": seed}
    t0 = time.perf_counter()
    cal = None
    if prior.calibration is not None:
        evidence = []
        for a, b in ((done[::2], done[1::2]), (done[1::2], done[::2])):
            p = predict(prior, values[a], mask[a], horizon, context=context(b), **kw)
            if p.ok:
                evidence.append(calibration.evidence(p, final[a], np.arange(len(a)), run_ids=a))
        cal = calibration.adapt(prior.calibration, evidence)
    within = predict(prior, values[rest], mask[rest], horizon, context=context(done), calibration=cal, **kw)
    extra = {"finished": int(k_done), "ok": within.ok, "problems": "; ".join(within.diagnostics["problems"])}
    if cal is not None:
        extra["adapted_calibration"] = {
            "log_a": cal.log_a,
            "b": cal.b,
            "c": cal.c,
            "d": cal.d if cal.adapted is not None else None,
        }
    seconds = time.perf_counter() - t0
    base = dataclasses.replace(
        pred, z=pred.z[:, rest], horizon=pred.horizon[rest], t_obs=pred.t_obs[rest], y_last=pred.y_last[rest]
    )
    lpd0, cov0 = _interval_stats(base, final[rest])
    extra.update(
        paired_transfer_mae=float(np.mean(np.abs(base.mean - final[rest]))),
        paired_transfer_lpd=lpd0,
        paired_transfer_cov90=cov0,
    )
    lpd, cov = _interval_stats(within, final[rest])
    _record(
        results,
        log,
        row,
        final[rest],
        f"transfer_finished{k_done}",
        within.mean,
        lpd,
        cov,
        seconds,
        "svi",
        {**extra, "calibrated": within.calibrated},
    )
