"""``nax curves benchmark``: how well final values are extrapolated from prefixes.

For every target dataset and cutoff (fraction of the epochs observed): MAE of the
predicted final value, mean log predictive density (LPD) of the true final value,
coverage of the central 90% interval and seconds per curve, for ``last_value``, ``pow3``
and ``mmf`` (single-curve least squares), ``svr`` (Baker et al. 2018), ``no_transfer``
and ``transfer`` (SVI), optionally NUTS variants on a seeded subsample. With a calibrated
prior also ``transfer_uncalibrated``: the same posterior draws without the extrapolation
noise (:mod:`nax.curves.calibration`). Where the curve model chooses its transfer strength
from the target (:mod:`nax.curves.strength`), ``transfer`` is that choice and
``transfer_full`` the full prior, and every ``transfer`` row names the strength chosen.

Folds (:mod:`.families`): leave one dataset out of one pool (:func:`extrapolation_benchmark`,
``--train``/``--test``), or families (:func:`family_benchmark`, ``--family``): leave one
out inside each, and each family as the target of the others. A target is never among
the sources of its prior or of the SVR. A target (or cutoff) the models cannot be scored
on is listed in ``skipped`` with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nax.curves import baselines
from nax.curves.bench import families as fam_lib
from nax.curves.bench.common import Priors, complete_runs, meta, setup, sources_for, subsample
from nax.curves.bench.models import model_rows
from nax.curves.fitting import PRIOR_INFERENCE
from nax.curves.inference import InferenceConfig
from nax.curves.observations import from_model_scale, to_model_scale

DEFAULT_CUTOFFS = (0.1, 0.2, 0.3, 0.5)


class Recorder:
    """The result rows of a run (and the runs it skipped), each logged as it comes."""

    def __init__(self, log):
        self.results, self.skipped, self.log = [], [], log

    def __call__(self, row, truth, method, pred_final, lpd=None, cov=None, seconds=0.0, inference="none", extra=None):
        n = len(truth)
        err = np.abs(np.asarray(pred_final) - truth)
        r = {**row, "method": method, "n_curves": n, "mae": float(np.mean(err)), "lpd": lpd, "cov90": cov}
        r.update(sec_per_curve=seconds / n, inference=inference, **(extra or {}))
        self.results.append(r)
        chosen = f" strength {r['strength']}" if r.get("strength") is not None else ""
        self.log(
            f"{row['dataset']:>22} {row['cutoff']:4.2f} {method:>16} mae {r['mae']:.4f} "
            f"lpd {'-' if lpd is None else f'{lpd:.3f}'} cov90 {'-' if cov is None else f'{cov:.3f}'} "
            f"s/curve {r['sec_per_curve']:.4f}{chosen} {(extra or {}).get('problems', '')}"
        )

    def skip(self, head: dict, reason: str) -> None:
        self.skipped.append({**head, "reason": reason})
        self.log(f"{head['dataset']:>22} {head.get('cutoff') or '':>4} skipped: {reason}")


def observed_columns(table, cutoff: float) -> int:
    """Epoch columns observed at ``cutoff`` (those ``<= cutoff * horizon``; may be 0)."""
    horizon = int(table.epochs[-1])
    return int(np.searchsorted(table.epochs, round(cutoff * horizon), side="right"))


def _same_width(arrays):
    width = max(a.shape[1] for a in arrays)
    fill = lambda a: np.nan if a.dtype.kind == "f" else False
    return [np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=fill(a)) for a in arrays]


def _cut(table, k):
    mask = table.mask.copy()
    mask[:, k:] = False
    return np.where(mask, table.values, np.nan), mask


class SVRs:
    """The SVR baseline per (sources, cutoff, metadata columns), trained once on the source
    datasets (seeded subsample of ``max_curves`` complete runs each, on the model scale)
    with (nu, C) by cross-validation grouped by source dataset."""

    def __init__(self, pool: dict, *, max_curves, seed):
        self.pool, self.max_curves, self.seed, self.cache = pool, max_curves, seed, {}

    def tables(self, sources):
        return [subsample(complete_runs(self.pool[s]), self.max_curves, self.seed) for s in sources]

    def get(self, sources, cutoff, columns):
        key = (tuple(sources), float(cutoff), tuple(columns))
        if key not in self.cache:
            xs, ms, ys, gs, extra = [], [], [], [], []
            for i, src in enumerate(self.tables(sources)):
                if src.n_runs == 0 or observed_columns(src, cutoff) == 0:
                    continue
                v, m = _cut(src, max(1, observed_columns(src, cutoff)))
                xs.append(np.where(m, to_model_scale(np.where(m, v, 0.0), src.minimize), np.nan)), ms.append(m)
                ys.append(to_model_scale(src.values[:, -1], src.minimize)), gs.append(np.full(src.n_runs, i))
                extra.append(baselines.meta_features(src.meta, columns))
            svr = baselines.SVRPredictor(seed=self.seed)
            x_extra = np.concatenate(extra) if columns else None
            svr.fit(np.concatenate(_same_width(xs)), np.concatenate(_same_width(ms)), np.concatenate(ys),
                    extra=x_extra, groups=np.concatenate(gs))  # fmt: skip
            self.cache[key] = svr
        return self.cache[key]


def run_folds(folds, targets_pool: dict, priors: Priors, svrs: SVRs, *, cutoffs, max_curves, nuts_curves,
              inference, finished, seed, log) -> tuple[list, list]:  # fmt: skip
    """Every fold's targets at every cutoff: baseline rows per target, model rows batched
    over the fold's targets (:func:`nax.curves.bench.models.model_rows`)."""
    rec = Recorder(log)
    for fold in folds:
        tables = {}
        for name in fold.targets:
            head = {"protocol": fold.protocol, "family": fold.family, "dataset": name, "cutoff": None}
            table = subsample(complete_runs(targets_pool[name]), max_curves, seed)
            if table.n_runs == 0:
                rec.skip(head, "no complete runs (only runs observed to the last epoch have a true final value)")
            elif table.n_epochs < 2:
                rec.skip(head, f"{table.n_epochs} epoch column: nothing to extrapolate")
            else:
                tables[name] = table
        for cutoff in cutoffs:
            batch = []
            for name, table in tables.items():
                head = {"protocol": fold.protocol, "family": fold.family, "dataset": name, "cutoff": float(cutoff)}
                k = observed_columns(table, cutoff)
                if k == 0:
                    rec.skip(head, f"no epoch observed by the cutoff (first logged epoch {int(table.epochs[0])}, "
                                   f"cutoff epoch {cutoff * int(table.epochs[-1]):g}); the models need at least one")  # fmt: skip
                    continue
                if k >= table.n_epochs:
                    rec.skip(head, "the cutoff observes every epoch: nothing to extrapolate")
                    continue
                values, mask = _cut(table, k)
                row = {**head, "n_curves": table.n_runs, "epochs_observed": k, "horizon": int(table.epochs[-1])}
                _baselines(rec, row, table, values, mask, fold.sources[name], cutoff, svrs)
                batch.append((row, table, values, mask, fold.sources[name]))
            model_rows(rec, batch, priors, inference=inference, finished=finished, nuts_curves=nuts_curves, seed=seed)
    return rec.results, rec.skipped


def _baselines(rec, row, table, values, mask, sources, cutoff, svrs):
    """last value, pow3, MMF (on the model scale: a loss as exp(-loss)) and the SVR."""
    final, minimize, horizon = table.values[:, -1], table.minimize, int(table.epochs[-1])
    y = np.where(mask, to_model_scale(np.where(mask, values, 0.0), minimize), np.nan)
    back = lambda p: from_model_scale(np.clip(p, 1e-12, 1.0), minimize) if minimize else p
    t0 = time.perf_counter()
    rec(row, final, "last_value", baselines.last_value(values, mask), seconds=time.perf_counter() - t0)
    few = lambda need: {"fallback_last_value": bool(row["epochs_observed"] < need)}
    for method, fit, need in (("pow3", baselines.pow3_least_squares, 3), ("mmf", baselines.mmf_least_squares, 4)):
        t0 = time.perf_counter()
        p = back(fit(y, mask, table.epochs, horizon))
        rec(row, final, method, p, seconds=time.perf_counter() - t0, extra=few(need))
    if sources:
        t0 = time.perf_counter()
        columns = baselines.shared_meta_columns([t.meta for t in svrs.tables(sources)] + [table.meta])
        svr = svrs.get(sources, cutoff, columns)
        extra = baselines.meta_features(table.meta, columns) if columns else None
        p = back(svr.predict(y, mask, extra=extra))
        seconds = time.perf_counter() - t0  # training included (shared by the targets of a fold)
        rec(row, final, "svr", p, seconds=seconds, extra={"svr": {**svr.choice, "meta_columns": list(columns)}})


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
    """Leave one dataset out of one pool; returns ``{"results", "skipped", "priors", "meta"}``.

    ``finished``: for each ``k``, also ``transfer_finished{k}``: ``k`` runs of the target
    finished (the other runs' context, and the calibration adapts to them), scored on the
    other runs; the issue's protocol is ``finished=()``. ``max_curves``: seeded subsample
    of each test dataset; ``max_train_curves``: per source dataset for the prior fit and
    the SVR; ``nuts_curves`` > 0 adds ``transfer_nuts`` and ``no_transfer_nuts`` on that
    many curves of each test dataset. ``inference``: every prediction's.
    """
    record = meta("nax curves benchmark", locals())  # at the start: a long run would record a later commit
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
    fold = fam_lib.Fold("loo", None, tuple(test), {n: sources_for(n, train) for n in test})
    svrs = SVRs(train, max_curves=max_train_curves, seed=seed)
    results, skipped = run_folds([fold], test, priors, svrs, cutoffs=cutoffs, max_curves=max_curves,
                                 nuts_curves=nuts_curves, inference=inference, finished=finished, seed=seed, log=log)  # fmt: skip
    return {"results": results, "skipped": skipped, "priors": priors.info(), "meta": record}


def family_benchmark(
    families: Sequence[fam_lib.Family],
    *,
    protocols: Sequence[str] = ("cross-family", "loo"),
    mixed_directions: bool = False,
    max_targets: int | None = None,
    target_families: Sequence[str] | None = None,
    cutoffs: Sequence[float] = DEFAULT_CUTOFFS,
    max_curves: int | None = 30,
    max_train_curves: int | None = 30,
    inference: InferenceConfig = InferenceConfig(),
    prior_inference: InferenceConfig = PRIOR_INFERENCE,
    calibrate: bool = True,
    prior_cache: str | Path | None = None,
    finished: Sequence[int] = (),
    seed: int = 0,
    log=print,
) -> dict:
    """Families as folds (:mod:`.families`): ``cross-family`` (each family the target of
    the others) and/or ``loo`` (leave one dataset out inside each family). ``max_targets``:
    a seeded subset of each family's datasets as targets; ``target_families``: only
    these families as targets (all stay sources of the others); ``finished``: as
    :func:`extrapolation_benchmark`'s. Rows carry ``protocol`` and ``family``; ``folds`` in
    the record lists each fold's sources and excluded families."""
    record = meta("nax curves benchmark", locals())
    pool, members = fam_lib.load_families(families)
    folds = fam_lib.select_folds(families, members, protocols=protocols, max_targets=max_targets,
                                 mixed_directions=mixed_directions, target_families=target_families, seed=seed,
                                 log=log)  # fmt: skip
    priors = Priors(pool, seed=seed, max_curves=max_train_curves, calibrate=calibrate, inference=prior_inference,
                    log=log, cache_dir=prior_cache)  # fmt: skip
    svrs = SVRs(pool, max_curves=max_train_curves, seed=seed)
    results, skipped = run_folds(folds, pool, priors, svrs, cutoffs=cutoffs, max_curves=max_curves, nuts_curves=0,
                                 inference=inference, finished=tuple(finished), seed=seed, log=log)  # fmt: skip
    record["folds"] = fam_lib.fold_record(folds)
    return {"results": results, "skipped": skipped, "priors": priors.info(), "meta": record}
