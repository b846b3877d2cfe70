"""Prediction speed: seconds to extrapolate a batch of partial curves (SVI cold and warm,
NUTS on a few curves), and at benchmark batch sizes (many datasets of 30 curves, one
batched program: :func:`batch_speed_benchmark`, ``python -m nax.curves.bench.speed``)."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import jax
import numpy as np

from nax import jsonio
from nax.curves import inference as inference_lib
from nax.curves.bench.common import complete_runs, load_datasets, meta, subsample, truncate
from nax.curves.inference import InferenceConfig
from nax.curves.predict import Query, predict, predict_many
from nax.curves.prior import CurvePrior
from nax.curves.strength import choose, predict_auto_many


def speed_benchmark(
    prior: CurvePrior,
    table,
    *,
    cutoff: float = 0.2,
    n_curves: int = 1000,
    nuts_curves=(1, 8),
    inference: InferenceConfig = InferenceConfig(),
    seed=0,
    log=print,
) -> dict:
    """Seconds to predict ``n_curves`` partial curves of ``table`` with SVI (cold: with
    compilation; warm: a second call of the same shape) and with NUTS on a few curves."""
    table = subsample(complete_runs(table), n_curves, seed)
    values, mask, _ = truncate(table, cutoff)
    horizon = int(table.epochs[-1])
    rows = []
    svi = inference.replace(method="svi")
    for label, s in (("cold", seed), ("warm", seed + 1)):
        pred = predict(prior, values, mask, horizon, epochs=table.epochs, inference=svi, seed=s)
        rows.append(
            {
                "method": "transfer",
                "inference": "svi",
                "call": label,
                "n_curves": table.n_runs,
                "seconds": pred.seconds,
                "ok": pred.ok,
            }
        )
        log(rows[-1])
    for k in nuts_curves:
        pred = predict(
            prior,
            values[:k],
            mask[:k],
            horizon,
            epochs=table.epochs,
            inference=inference.replace(method="nuts"),
            seed=seed,
        )
        d = pred.diagnostics
        rows.append(
            {
                "method": "transfer",
                "inference": "nuts",
                "call": "cold",
                "n_curves": k,
                "seconds": pred.seconds,
                "ok": pred.ok,
                "r_hat_max": d["r_hat_max"],
                "ess_min": d["ess_min"],
                "divergences": d["divergences"],
            }
        )
        log(rows[-1])
    return {"results": rows}


def batch_speed_benchmark(
    prior: CurvePrior,
    datasets: dict,
    *,
    cutoffs=(0.2, 0.5),
    per_dataset: int = 30,
    modes=("fixed", "auto"),
    inference: InferenceConfig = InferenceConfig(),
    seed: int = 0,
    log=print,
) -> list[dict]:
    """Seconds per curve at benchmark batch sizes: every dataset of ``datasets`` (name ->
    ``CurveTable``), ``per_dataset`` complete runs each, at every cutoff, predicted in ONE
    batch (:func:`nax.curves.predict.predict_many`): ``fixed`` = the prior at full strength,
    ``auto`` = the strength chosen per query (:func:`nax.curves.strength.predict_auto_many`).
    Each mode is called twice: ``cold`` (every in-memory compilation cache cleared first,
    so a mode's cold call pays its own compiles even when an earlier mode compiled the same
    program; a persistent cache, if configured, still answers) and ``warm`` (same shapes,
    another seed). Rows carry the load average, as the machine may be shared."""
    queries, finals = _benchmark_queries(datasets, cutoffs, per_dataset, seed)
    n = sum(len(f) for f in finals)
    rows = []
    for mode in modes:
        for call, s in (("cold", seed), ("warm", seed + 1)):
            if call == "cold":
                jax.clear_caches()
                inference_lib.clear_programs()
            load = os.getloadavg()[0]
            start = time.perf_counter()
            if mode == "fixed":
                preds = predict_many(prior, queries, inference=inference, seed=s)
            else:
                preds = predict_auto_many(prior, queries, inference=inference, seed=s)
            seconds = time.perf_counter() - start
            chosen = {}
            for p in preds:
                if p.strength is not None:
                    chosen[p.strength["chosen"]] = chosen.get(p.strength["chosen"], 0) + 1
            rows.append(
                {
                    "method": "transfer" if mode == "fixed" else "transfer_auto",
                    "mode": mode,
                    "call": call,
                    "datasets": len(datasets),
                    "cutoffs": list(cutoffs),
                    "queries": len(queries),
                    "n_curves": n,
                    "seconds": seconds,
                    "sec_per_curve": seconds / n,
                    "load_before": load,
                    "load_after": os.getloadavg()[0],
                    "ok": all(p.ok for p in preds),
                    "mae": float(np.mean(np.concatenate([np.abs(p.point - f) for p, f in zip(preds, finals)]))),
                    "strength_counts": chosen or None,
                    "num_steps": inference.num_steps,
                    "compilation_cache": jax.config.jax_compilation_cache_dir,
                }
            )
            log(rows[-1])
    return rows


def _benchmark_queries(datasets: dict, cutoffs, per_dataset: int, seed: int):
    queries, finals = [], []
    for name in sorted(datasets):
        table = subsample(complete_runs(datasets[name]), per_dataset, seed)
        for cutoff in cutoffs:
            values, mask, _ = truncate(table, cutoff)
            queries.append(Query(values, mask, int(table.epochs[-1]), table.epochs, table.minimize))
            finals.append(table.values[:, -1])
    return queries, finals


def same_answers(
    prior: CurvePrior,
    datasets: dict,
    *,
    cutoffs=(0.2, 0.5),
    per_dataset: int = 30,
    inference: InferenceConfig = InferenceConfig(),
    seed: int = 0,
) -> dict:
    """Does the chunked strength choice (:func:`predict_auto_many`: one batch size and
    width for the scoring and final fits) answer as the unchunked one (one batch per model
    and call, as before the chunks), compared with the SVI seed noise (the chunked choice
    at ``seed + 1``)? Same queries as :func:`batch_speed_benchmark`."""
    queries, finals = _benchmark_queries(datasets, cutoffs, per_dataset, seed)
    chunked = predict_auto_many(prior, queries, inference=inference, seed=seed)
    chosen = choose(prior, queries, inference=inference, seed=seed)
    unchunked = predict_many(
        [c.prior(prior) for c, _, _ in chosen],
        [q for _, q, _ in chosen],
        inference=inference,
        seed=seed,
        calibrations=[prior.calibration if c.independent else None for c, _, _ in chosen],
    )
    for pred, (_, _, record) in zip(unchunked, chosen):
        pred.strength = record
    reseeded = predict_auto_many(prior, queries, inference=inference, seed=seed + 1)

    def agree(a, b):
        same = [x.strength["chosen"] == y.strength["chosen"] for x, y in zip(a, b)]
        scores = [
            abs(x.strength["scores"][k] - y.strength["scores"][k])
            for x, y in zip(a, b)
            for k in x.strength["scores"]
            if x.strength["scores"][k] is not None and y.strength["scores"][k] is not None
        ]
        points = np.concatenate([np.abs(x.point - y.point) for x, y, s in zip(a, b, same) if s])
        return {
            "same_choice": int(sum(same)),
            "queries": len(same),
            "score_abs_diff_max": float(max(scores)),
            "point_abs_diff_median_same_choice": float(np.median(points)),
            "point_abs_diff_max_same_choice": float(np.max(points)),
        }

    mae = lambda preds: float(np.mean(np.concatenate([np.abs(p.point - f) for p, f in zip(preds, finals)])))
    return {
        "chunked_vs_unchunked": agree(chunked, unchunked),
        "seed_noise_chunked_seed_vs_seed_plus_1": agree(chunked, reseeded),
        "mae": {"chunked": mae(chunked), "unchunked": mae(unchunked), "chunked_seed_plus_1": mae(reseeded)},
        "seed": seed,
    }


def main(argv=None) -> int:
    """``python -m nax.curves.bench.speed``: the batched speed rows (curves_speed.json)."""
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--test", nargs="+", default=["../shared/data/curves/lcbench/lcbench_surrogate_17tasks.csv"])
    ap.add_argument("--dataset-column", default="task")
    ap.add_argument("--prefix", default="acc_")
    ap.add_argument("--prior", required=True, help="a CurvePrior JSON fitted on other datasets")
    ap.add_argument("--cutoffs", type=float, nargs="+", default=[0.2, 0.5])
    ap.add_argument("--per-dataset", type=int, default=30)
    ap.add_argument("--modes", nargs="+", default=["fixed", "auto"])
    ap.add_argument("--steps", type=int, default=InferenceConfig().num_steps)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", required=True)
    ap.add_argument(
        "--compilation-cache",
        help="a directory for JAX's persistent compilation cache: a second run's cold calls load the programs",
    )
    ap.add_argument(
        "--same-answers",
        action="store_true",
        help="instead of timing: compare the chunked strength choice with the unchunked one and with seed noise",
    )
    args = ap.parse_args(argv)
    if args.compilation_cache:
        jax.config.update("jax_compilation_cache_dir", args.compilation_cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    record = meta("python -m nax.curves.bench.speed", {k: v for k, v in vars(args).items()})
    datasets = load_datasets(args.test, prefix=args.prefix, dataset_column=args.dataset_column)
    prior = CurvePrior.load(args.prior)
    record["prior"] = {"path": args.prior, "datasets": prior.info.get("datasets"), "seconds": prior.info.get("seconds")}
    path = Path(args.json)
    out = json.loads(path.read_text()) if path.exists() else {}
    if args.same_answers:
        check = same_answers(
            prior,
            datasets,
            cutoffs=tuple(args.cutoffs),
            per_dataset=args.per_dataset,
            inference=InferenceConfig(num_steps=args.steps),
            seed=args.seed,
        )
        print(check)
        out["same_answers"] = {**check, "meta": record}
        path.write_text(jsonio.dumps(out, indent=1))
        return 0
    rows = batch_speed_benchmark(
        prior,
        datasets,
        cutoffs=tuple(args.cutoffs),
        per_dataset=args.per_dataset,
        modes=tuple(args.modes),
        inference=InferenceConfig(num_steps=args.steps),
        seed=args.seed,
    )
    # curves_speed.json also holds `nax curves speed`'s single-dataset rows: kept beside
    # these under "batched", so the numbers quoted from either keep their source
    # rows measured with a persistent compilation cache are kept apart from the honest cold ones
    out["batched_cached" if args.compilation_cache else "batched"] = {"results": rows, "meta": record}
    path.write_text(jsonio.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
