"""Prediction speed: seconds to extrapolate a batch of partial curves (SVI cold and warm,
NUTS on a few curves)."""

from __future__ import annotations

from nax.curves.bench.common import complete_runs, subsample, truncate
from nax.curves.inference import InferenceConfig
from nax.curves.predict import predict
from nax.curves.prior import CurvePrior


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
