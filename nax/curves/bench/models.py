"""The curve model's rows of ``nax curves benchmark``, for all targets of a fold at one
cutoff: ``no_transfer``, ``transfer`` (with the strength chosen from the target where the
model offers it, :mod:`nax.curves.strength`; then ``transfer_full`` is the full prior),
``transfer_uncalibrated``, ``transfer_unrecalibrated`` (``transfer``'s draws before their
spread was recalibrated on the target's prefixes, :mod:`nax.curves.spread`),
``transfer_mix`` and ``transfer_mix_unrecalibrated`` (the equal-weight mixture of the
better half of the strengths instead of the one chosen, ``combine="mix"``, from the same
scoring fits, where the model has it), and per target ``transfer_finished{k}`` and the
NUTS rows.

Batched where the model offers it (``predict_many`` / ``predict_auto_many``: one compiled
program for many datasets); otherwise one ``predict`` per target. The point estimate is
the model's (``Prediction.point``, the median of the predictive draws, where it exists;
``mean`` before).
"""

from __future__ import annotations

import dataclasses
import importlib

import numpy as np

from nax.curves.bench.within_target import within_target
from nax.curves.mixture import without_spread

# the module, not the function nax.curves exports under the same name
predict_lib = importlib.import_module("nax.curves.predict")

try:  # the strength choice of issue 13, where the model has it
    from nax.curves import strength as strength_lib
except ImportError:  # pragma: no cover - depends on the model's version
    strength_lib = None


def point(pred) -> np.ndarray:
    """The prediction's point estimate of the final value (table units)."""
    return pred.point if hasattr(type(pred), "point") else pred.mean


def point_name(pred) -> str:
    return "median" if hasattr(type(pred), "point") else "mean"


def interval_stats(pred, final):
    lo, hi = pred.quantile([0.05, 0.95])
    return float(np.mean(pred.log_density(final))), float(np.mean((final >= lo) & (final <= hi)))


def has_strength() -> bool:
    return strength_lib is not None and hasattr(strength_lib, "predict_auto_many")


def has_mix() -> bool:
    return strength_lib is not None and hasattr(strength_lib, "predict_auto_each")


def _query(table, values, mask):
    return {"values": values, "mask": mask, "horizon": int(table.epochs[-1]), "epochs": table.epochs,
            "minimize": table.minimize}  # fmt: skip


def _many(priors, queries, inference, seed):
    """One prediction per query: batched when the model has ``predict_many``."""
    if hasattr(predict_lib, "predict_many") and hasattr(strength_lib, "Query"):
        qs = [strength_lib.Query(**q) for q in queries]
        return predict_lib.predict_many(list(priors), qs, inference=inference, seed=seed)
    return [
        predict_lib.predict(
            p,
            q["values"],
            q["mask"],
            q["horizon"],
            epochs=q["epochs"],
            minimize=q["minimize"],
            inference=inference,
            seed=seed,
        )  # fmt: skip
        for p, q in zip(priors, queries)
    ]


def _auto(priors, queries, inference, seed):
    qs = [strength_lib.Query(**q) for q in queries]
    return strength_lib.predict_auto_many(list(priors), qs, inference=inference, seed=seed)


def _auto_each():
    """``transfer`` and ``transfer_mix`` callers sharing one set of scoring fits (both are
    called with the same priors and queries)."""
    memo = {}

    def call(combine):
        def run(priors, queries, inference, seed):
            if "preds" not in memo:
                qs = [strength_lib.Query(**q) for q in queries]
                memo["preds"] = strength_lib.predict_auto_each(list(priors), qs, inference=inference, seed=seed)
            return memo["preds"][combine]

        return run

    return call


def _strength_fields(pred) -> dict:
    s = getattr(pred, "strength", None)
    if not s:
        return {"strength": None}
    keep = ("rho", "scope", "independent", "rule", "scores", "epochs_scored", "reason", "spread", "kept", "weights")
    return {"strength": s.get("chosen"), **{f"strength_{k}": s.get(k) for k in keep}}


def model_rows(rec, batch, priors, *, inference, finished=(), nuts_curves=0, seed=0) -> None:
    """Rows of the curve model for ``batch`` [(row, table, values, mask, sources)], the
    targets of one fold at one cutoff."""
    if not batch:
        return
    queries = [_query(t, v, m) for _, t, v, m, _ in batch]
    fold_priors = [priors.for_sources(s) if s else None for *_, s in batch]
    runs = [("no_transfer", [None] * len(batch), _many)]
    with_prior = [i for i, p in enumerate(fold_priors) if p is not None]
    if with_prior:
        if has_mix():
            each = _auto_each()
            runs.append(("transfer", fold_priors, each("choose")))
            runs.append(("transfer_mix", fold_priors, each("mix")))
            runs.append(("transfer_full", fold_priors, _many))
        elif has_strength():
            runs.append(("transfer", fold_priors, _auto))
            runs.append(("transfer_full", fold_priors, _many))
        else:
            runs.append(("transfer", fold_priors, _many))
    for method, prs, call in runs:
        idx = range(len(batch)) if method == "no_transfer" else with_prior
        preds = call([prs[i] for i in idx], [queries[i] for i in idx], inference, seed)
        for i, pred in zip(idx, preds):
            row, table, values, mask, _ = batch[i]
            final = table.values[:, -1]
            extra = {"ok": pred.ok, "problems": "; ".join(pred.diagnostics["problems"]), "point": point_name(pred)}
            extra["calibrated"] = pred.calibrated
            if method in ("transfer", "transfer_mix"):
                extra.update(_strength_fields(pred))
            lpd, cov = interval_stats(pred, final)
            rec(row, final, method, point(pred), lpd, cov, pred.seconds, "svi", extra)
            if method in ("transfer", "transfer_mix") and hasattr(pred, "spread"):
                # the same draws before the spread was recalibrated on the target's prefixes
                # (every target, so that the two rows average over the same datasets)
                raw = without_spread(pred)
                lpd, cov = interval_stats(raw, final)
                rec(row, final, f"{method}_unrecalibrated", point(raw), lpd, cov, pred.seconds, "svi", extra)
            full = method == "transfer_full" or (method == "transfer" and not has_strength())
            if full:
                for k_done in finished:
                    within_target(rec, row, table, values, mask, pred, fold_priors[i], k_done, inference, seed,
                                  interval_stats)  # fmt: skip
            if full and pred.calibrated:
                # the same posterior draws without the extrapolation noise: what the
                # calibration changes, at no extra inference
                raw = dataclasses.replace(pred, calibration=None)
                lpd, cov = interval_stats(raw, final)
                rec(row, final, "transfer_uncalibrated", point(raw), lpd, cov, pred.seconds, "svi",
                    {**extra, "calibrated": False})  # fmt: skip
    if nuts_curves:
        for i, (row, table, values, mask, _) in enumerate(batch):
            _nuts(rec, row, table, values, mask, fold_priors[i], nuts_curves, inference, seed)


def _nuts(rec, row, table, values, mask, prior, nuts_curves, inference, seed):
    n, final = table.n_runs, table.values[:, -1]
    idx = np.random.default_rng(seed).permutation(n)[: min(nuts_curves, n)]
    for method, pr in (("no_transfer_nuts", None), ("transfer_nuts", prior)):
        if method == "transfer_nuts" and prior is None:
            continue
        pred = predict_lib.predict(pr, values[idx], mask[idx], int(table.epochs[-1]), epochs=table.epochs,
                                   minimize=table.minimize, inference=inference.replace(method="nuts"), seed=seed)  # fmt: skip
        extra = {"ok": pred.ok, "problems": "; ".join(pred.diagnostics["problems"]), "calibrated": pred.calibrated}
        extra.update({k: pred.diagnostics[k] for k in ("r_hat_max", "ess_min", "divergences")})
        lpd, cov = interval_stats(pred, final[idx])
        rec(row, final[idx], method, point(pred), lpd, cov, pred.seconds, "nuts", extra)
