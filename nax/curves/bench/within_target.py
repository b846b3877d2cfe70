"""``transfer_finished{k}`` and ``transfer_auto_finished{k}`` rows of ``nax curves
benchmark``: the target's prediction once ``k`` of its runs have finished, as a search ``k``
runs in would make it - with the full prior, and with the transfer strength chosen on those
finished runs (:mod:`nax.curves.strength`, ``rule="finished"``)."""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from nax.curves import calibration, strength
from nax.curves.predict import Query, predict


def within_target(record, row, table, values, mask, pred, prior, k_done, inference, seed, interval_stats):
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
    lpd0, cov0 = interval_stats(base, final[rest])
    extra.update(
        paired_transfer_mae=float(np.mean(np.abs(_point(base) - final[rest]))),
        paired_transfer_lpd=lpd0,
        paired_transfer_cov90=cov0,
    )
    lpd, cov = interval_stats(within, final[rest])
    record(
        row,
        final[rest],
        f"transfer_finished{k_done}",
        _point(within),
        lpd,
        cov,
        seconds,
        "svi",
        {**extra, "calibrated": within.calibrated},
    )
    # the same question with the strength chosen on the finished runs (each candidate predicts
    # their finals from their prefixes cut where the scored runs' are): the evidence is the
    # question asked, not the prequential check's short extrapolation
    t0 = time.perf_counter()
    adapted = prior if cal is None else dataclasses.replace(prior, calibration=cal)
    query = Query(
        values[rest],
        mask[rest],
        horizon,
        epochs=table.epochs,
        minimize=table.minimize,
        context=context(done),
        context_horizon=horizon,
        finished=context(done),
    )
    (auto,) = strength.predict_auto_many(adapted, [query], inference=inference, seed=seed)
    lpd, cov = interval_stats(auto, final[rest])
    chosen = auto.strength or {}
    record(
        row,
        final[rest],
        f"transfer_auto_finished{k_done}",
        _point(auto),
        lpd,
        cov,
        time.perf_counter() - t0,
        "svi",
        {
            "finished": int(k_done),
            "ok": auto.ok,
            "calibrated": auto.calibrated,
            "strength": chosen.get("chosen"),
            "strength_rule": chosen.get("rule"),
            "strength_scores": chosen.get("scores"),
            "paired_transfer_mae": extra["paired_transfer_mae"],
        },
    )


def _point(pred):
    return pred.point if hasattr(type(pred), "point") else pred.mean
