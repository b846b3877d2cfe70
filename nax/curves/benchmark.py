"""The two curve benchmarks of the command contracts (DESIGN.md).

``extrapolation_benchmark``: for every test dataset and cutoff (fraction of the epochs
observed), MAE of the predicted final value, mean log predictive density (LPD) of the true
final value, coverage of the central 90% interval and seconds per curve, for
``last_value``, ``pow3``, ``svr``, ``no_transfer`` and ``transfer`` (SVI) and optionally
NUTS variants on a seeded subsample.

``early_stop_benchmark``: replay the test curves in seeded random orders as a search
would, apply the stopping rule, report the fraction of epochs saved and the regret.

Leave-one-dataset-out: a test dataset is never among the datasets its prior is fitted on,
so ``--train`` and ``--test`` may name the same files. With a calibrated prior (the
default) both benchmarks also report ``transfer_uncalibrated``: the same posterior draws
without the extrapolation noise (:mod:`nax.curves.calibration`). ``prior_cache``: a folder
where fitted priors are saved and reused across commands.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nax import tables as tables_lib
from nax.curves import baselines, calibration
from nax.curves import prior as prior_lib
from nax.curves.predict import compose_draws, predict
from nax.curves.prior import CurvePrior, fit_prior

DEFAULT_CUTOFFS = (0.1, 0.2, 0.3, 0.5)


def load_datasets(
    paths: Sequence[str],
    *,
    prefix="acc_",
    dataset_column="training_dataset",
    minimize=False,
) -> dict:
    """Curve tables of every dataset in ``paths``: name -> trimmed ``CurveTable``."""
    out = {}
    for path in paths:
        table = tables_lib.load_curves(
            path, prefix=prefix, dataset_column=dataset_column, minimize=minimize
        )
        for name, sub in table.by_dataset().items():
            if name in out:
                raise ValueError(
                    f"dataset {name!r} appears in more than one file ({path})"
                )
            out[name] = sub
    return out


def complete_runs(table) -> tables_lib.CurveTable:
    """Runs observed up to the table's last epoch (only they have a true final value)."""
    return table.subset(table.mask[:, -1])


def truncate(table, cutoff: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Keep the epochs ``<= cutoff * horizon`` (at least the first one): values, mask [N, T], columns kept."""
    horizon = int(table.epochs[-1])
    k = max(
        1, int(np.searchsorted(table.epochs, round(cutoff * horizon), side="right"))
    )
    mask = table.mask.copy()
    mask[:, k:] = False
    return np.where(mask, table.values, np.nan), mask, k


def _subsample(table, max_curves: int | None, seed: int):
    if max_curves is None or table.n_runs <= max_curves:
        return table
    rng = np.random.default_rng(seed)
    return table.subset(np.sort(rng.choice(table.n_runs, max_curves, replace=False)))


class _Priors:
    """Leave-one-dataset-out priors, fitted once per set of source datasets.

    ``cache_dir``: priors are also saved there (JSON) and reused by a later command with
    the same sources, fit settings and prior format version (both benchmarks need the
    same priors, and a fit takes minutes on a loaded machine).
    """

    def __init__(self, train: dict, fit_kwargs: dict, log, cache_dir=None):
        self.train, self.fit_kwargs, self.log, self.cache = train, fit_kwargs, log, {}
        self.cache_dir = None if cache_dir is None else Path(cache_dir)

    def _path(self, sources) -> Path | None:
        if self.cache_dir is None:
            return None
        settings = {"cutoffs": calibration.CUTOFFS, "bounds": calibration.BOUNDS}
        key = json.dumps(
            {
                "sources": sources,
                "version": prior_lib.VERSION,
                "calibration": settings,
                **self.fit_kwargs,
            },
            sort_keys=True,
        )
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        return self.cache_dir / f"prior_{'+'.join(sources)}_{digest}.json"

    def for_target(self, target: str) -> CurvePrior | None:
        sources = tuple(sorted(n for n in self.train if n != target))
        if not sources:
            return None
        if sources not in self.cache:
            path = self._path(sources)
            if path is not None and path.exists():
                self.log(f"prior on {', '.join(sources)} from {path}")
                self.cache[sources] = CurvePrior.load(path)
                return self.cache[sources]
            self.log(f"fitting prior on {', '.join(sources)}")
            prior = fit_prior([self.train[n] for n in sources], **self.fit_kwargs)
            self.log(f"  {prior.info['seconds']:.1f}s  {prior.info['diagnostics']}")
            cal = prior.calibration
            if cal is not None:
                self.log(
                    f"  calibration log_a {cal['log_a']:.3f} b {cal['b']:.3f} c {cal['c']:.3f} "
                    f"({cal['fit']['seconds']:.0f}s)"
                )
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                prior.save(path)
            self.cache[sources] = prior
        return self.cache[sources]

    def info(self) -> dict:
        return {
            " + ".join(k): {**v.info, "calibration": v.calibration}
            for k, v in self.cache.items()
        }


def _record(
    results,
    log,
    row,
    truth,
    method,
    pred_final,
    lpd=None,
    cov=None,
    seconds=0.0,
    inference="none",
    extra=None,
):
    """Append one result row (MAE against ``truth`` [n]) and log it."""
    n = len(truth)
    err = np.abs(np.asarray(pred_final) - truth)
    r = {
        **row,
        "method": method,
        "n_curves": n,
        "mae": float(np.mean(err)),
        "lpd": lpd,
        "cov90": cov,
    }
    r.update(sec_per_curve=seconds / n, inference=inference, **(extra or {}))
    results.append(r)
    log(
        f"{row['dataset']:>22} {row['cutoff']:4.2f} {method:>16} mae {r['mae']:.4f} "
        f"lpd {lpd if lpd is None else round(lpd, 3)} cov90 {cov if cov is None else round(cov, 3)} "
        f"s/curve {r['sec_per_curve']:.4f} {(extra or {}).get('problems', '')}"
    )


def _interval_stats(pred, final):
    lo, hi = pred.quantile([0.05, 0.95])
    return float(np.mean(pred.log_density(final))), float(
        np.mean((final >= lo) & (final <= hi))
    )


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
    num_steps: int = 1000,
    prior_steps: int = 2000,
    calibrate: bool = True,
    prior_cache: str | Path | None = None,
    finished: Sequence[int] = (),
    seed: int = 0,
    log=print,
) -> dict:
    """Run the extrapolation benchmark; returns ``{"results": [...], "priors": {...}}``.

    ``finished``: for each ``k``, also ``transfer_finished{k}``: ``k`` runs of the target
    finished (the other runs' context, and the calibration adapts to them), scored on the
    other runs (:func:`_within_target`); the issue's protocol is ``finished=()``.

    ``max_curves``: seeded subsample of each test dataset; ``max_train_curves``: per source
    dataset for the prior fit; ``nuts_curves`` > 0 adds ``transfer_nuts`` and
    ``no_transfer_nuts`` on that many curves of each test dataset.
    """
    load = {"prefix": prefix, "dataset_column": dataset_column, "minimize": minimize}
    train, test = load_datasets(train_paths, **load), load_datasets(test_paths, **load)
    priors = _Priors(
        train,
        {
            "seed": seed,
            "num_steps": prior_steps,
            "max_curves": max_train_curves,
            "calibrate": calibrate,
        },
        log,
        prior_cache,
    )
    results = []
    for name, full in test.items():
        table = _subsample(complete_runs(full), max_curves, seed)
        if table.n_runs == 0:
            log(f"{name}: no complete runs, skipped")
            continue
        prior = priors.for_target(name)
        final, horizon, n = table.values[:, -1], int(table.epochs[-1]), table.n_runs
        nuts_idx = np.random.default_rng(seed).permutation(n)[: min(nuts_curves, n)]
        for cutoff in cutoffs:
            values, mask, k = truncate(table, cutoff)
            row = {
                "dataset": name,
                "cutoff": float(cutoff),
                "n_curves": n,
                "epochs_observed": k,
                "horizon": horizon,
            }

            add = functools.partial(_record, results, log, row, final)

            t0 = time.perf_counter()
            add(
                "last_value",
                baselines.last_value(values, mask),
                seconds=time.perf_counter() - t0,
            )
            if not minimize:
                t0 = time.perf_counter()
                p = baselines.pow3_least_squares(values, mask, table.epochs, horizon)
                add("pow3", p, seconds=time.perf_counter() - t0)
            sources = [train[s] for s in sorted(train) if s != name]
            if sources and not minimize:
                t0 = time.perf_counter()
                xs, ms, ys = [], [], []
                for src in sources:
                    src = complete_runs(src)
                    v, m, _ = truncate(src, cutoff)
                    xs.append(v), ms.append(m), ys.append(src.values[:, -1])
                svr = baselines.SVRPredictor(seed=seed)
                svr.fit(
                    np.concatenate(_same_width(xs)),
                    np.concatenate(_same_width(ms)),
                    np.concatenate(ys),
                )
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
                    method=inf,
                    num_steps=num_steps,
                    seed=seed,
                )
                lpd, cov = _interval_stats(pred, final[idx])
                extra = {
                    "ok": pred.ok,
                    "problems": "; ".join(pred.diagnostics["problems"]),
                }
                if inf == "nuts":
                    extra.update(
                        {
                            k: pred.diagnostics[k]
                            for k in ("r_hat_max", "ess_min", "divergences")
                        }
                    )
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
                        _within_target(
                            results, log, row, table, values, mask, pred, pr,
                            k_done, num_steps, seed,
                        )
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
    return {"results": results, "priors": priors.info()}


def _within_target(results, log, row, table, values, mask, pred, prior, k_done, num_steps, seed):
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

    kw = {"epochs": table.epochs, "minimize": table.minimize, "num_steps": num_steps, "seed": seed}
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
    extra = {"finished": int(k_done), "ok": within.ok,
             "problems": "; ".join(within.diagnostics["problems"])}
    if cal is not None:
        extra["adapted_calibration"] = {k: cal.get(k) for k in ("log_a", "b", "c", "d")}
    seconds = time.perf_counter() - t0
    base = dataclasses.replace(pred, z=pred.z[:, rest], horizon=pred.horizon[rest],
                               t_obs=pred.t_obs[rest], y_last=pred.y_last[rest])
    lpd0, cov0 = _interval_stats(base, final[rest])
    extra.update(paired_transfer_mae=float(np.mean(np.abs(base.mean - final[rest]))),
                 paired_transfer_lpd=lpd0, paired_transfer_cov90=cov0)
    lpd, cov = _interval_stats(within, final[rest])
    _record(results, log, row, final[rest], f"transfer_finished{k_done}",
            within.mean, lpd, cov, seconds, "svi", {**extra, "calibrated": within.calibrated})


def _same_width(arrays):
    width = max(a.shape[1] for a in arrays)
    fill = lambda a: np.nan if a.dtype.kind == "f" else False
    return [
        np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=fill(a))
        for a in arrays
    ]


def checkpoints(horizon: int, min_epochs: int, check_every: int | None) -> np.ndarray:
    """Epochs after which the rule is applied: every ``check_every`` epochs from
    ``min_epochs`` (default: about 12 checks per run), never the last epoch."""
    if check_every is None:
        check_every = max(1, int(np.ceil((horizon - min_epochs) / 12)))
    return np.arange(min_epochs, horizon, check_every)


def replay(
    final: np.ndarray,
    stop_prob: dict,
    horizon: int,
    threshold: float,
    order: np.ndarray,
    minimize=False,
    on_complete=None,
):
    """Replay runs in ``order``; ``stop_prob[e]``: function (run, best) -> P(run beats best)
    at epoch ``e``; ``on_complete(run)``, if given, is told each run trained to the end
    (before the next run starts). Returns (epochs trained, best final value found)."""
    better = (lambda a, b: a < b) if minimize else (lambda a, b: a > b)
    best = np.inf if minimize else -np.inf
    used = 0
    for run in order:
        stopped_at = None
        if np.isfinite(best):
            for e, prob in stop_prob.items():
                if prob(run, best) < threshold:
                    stopped_at = e
                    break
        if stopped_at is None:
            used += horizon
            if better(final[run], best):
                best = final[run]
            if on_complete is not None:
                on_complete(run)
        else:
            used += stopped_at
    return used, best


class AdaptiveReplay:
    """The stopping rule with the calibration adapted to the target's finished runs
    (:func:`nax.curves.calibration.adapt`), for :func:`replay`.

    ``preds[e]``: the calibrated predictions of all runs at checkpoint epoch ``e``. A run
    that finishes contributes its predictions at ``checks`` evenly spaced checkpoints
    (made from its own prefixes) and its final value; the calibration is refitted after
    each of the first ten finished runs and then whenever their number has grown by a
    quarter, up to ``max_runs`` finished runs (enough for three parameters; the search's
    rule also predicts each finished run at three checkpoints). ``reset()`` starts a new
    replay from the sources' calibration.
    """

    def __init__(self, preds: dict, final, minimize: bool, checks: int = 3, max_runs: int = 60):
        self.minimize, self.final = minimize, np.asarray(final, np.float64)
        first = next(iter(preds.values()))
        self.source = first.calibration
        self.parts, self.ev = {}, {}
        rows = np.arange(len(self.final))
        keys = list(preds)
        learn_at = {keys[i] for i in np.linspace(0, len(keys) - 1, checks).round().astype(int)}
        for e, pred in preds.items():
            y, ext, gap, head = pred.draw_components(pred.horizon[:, None])
            self.parts[e] = (y[..., 0], ext[..., 0], gap[:, 0], head[:, 0])
            if e in learn_at:
                self.ev[e] = calibration.evidence(pred, self.final, rows)
        self.max_runs = max_runs
        self.stop_prob = {e: functools.partial(self.prob, e) for e in preds}
        self.seconds, self.fits = 0.0, 0
        self.reset()

    def reset(self):
        self.calibration, self.done, self.last_fit = self.source, [], 0

    def prob(self, e, run, best) -> float:
        y, ext, gap, head = self.parts[e]
        draws = compose_draws(
            y[:, run], ext[:, run], gap[run], head[run], self.calibration, self.minimize
        )
        return float(np.mean(draws < best if self.minimize else draws > best))

    def complete(self, run):
        self.done.append(int(run))
        n = len(self.done)
        if n > self.max_runs or (n > 10 and n < 1.25 * self.last_fit):
            return
        t0 = time.perf_counter()
        runs = np.asarray(self.done)
        ev = [
            calibration.Evidence(*(a[:, runs] for a in ev[:2]), *(a[runs] for a in ev[2:]))
            for ev in self.ev.values()
        ]
        self.calibration = calibration.adapt(self.source, ev)
        self.last_fit, self.fits = n, self.fits + 1
        self.seconds += time.perf_counter() - t0


def _prob_better_fn(samples, minimize: bool):
    """(run, best) -> P(final of run beats best) from draws [S, N]; 1 where the fit failed."""
    if samples is None:
        return lambda run, ref: 1.0
    if minimize:
        return lambda run, ref: float(np.mean(samples[:, run] < ref))
    return lambda run, ref: float(np.mean(samples[:, run] > ref))


def early_stop_benchmark(
    train_paths: Sequence[str],
    test_paths: Sequence[str],
    *,
    thresholds: Sequence[float] = (0.05,),
    prefix: str = "acc_",
    dataset_column: str = "training_dataset",
    minimize: bool = False,
    max_curves: int | None = 300,
    max_train_curves: int | None = 300,
    repeats: int = 10,
    min_fraction: float = 0.1,
    check_every: int | None = None,
    num_steps: int = 800,
    prior_steps: int = 2000,
    calibrate: bool = True,
    adapt: bool = True,
    prior_cache: str | Path | None = None,
    methods: Sequence[str] = ("transfer", "no_transfer"),
    seed: int = 0,
    log=print,
) -> dict:
    """Run the early-stopping benchmark; returns ``{"results": [...], "priors": {...}}``.

    For each test dataset the rule's predictions are made at each checkpoint epoch for all
    (subsampled) runs at once, every run truncated at that epoch (the other runs at the
    same epoch are the context); the runs are then replayed in ``repeats`` seeded random
    orders: a run is stopped at the first checkpoint where P(final > best final so far)
    < threshold, and only runs trained to the end count as found. ``adapt`` (with a
    calibrated prior) adds ``transfer_adaptive``: the same predictions, the calibration
    learned within the target from the runs finished so far in each replay
    (:class:`AdaptiveReplay`), as a search would have them.
    """
    load = {"prefix": prefix, "dataset_column": dataset_column, "minimize": minimize}
    train, test = load_datasets(train_paths, **load), load_datasets(test_paths, **load)
    priors = _Priors(
        train,
        {
            "seed": seed,
            "num_steps": prior_steps,
            "max_curves": max_train_curves,
            "calibrate": calibrate,
        },
        log,
        prior_cache,
    )
    results = []
    for name, full in test.items():
        table = _subsample(complete_runs(full), max_curves, seed)
        final, horizon, n = table.values[:, -1], int(table.epochs[-1]), table.n_runs
        min_epochs = max(1, round(min_fraction * horizon))
        epochs = checkpoints(horizon, min_epochs, check_every)
        for method in methods:
            prior = priors.for_target(name) if method == "transfer" else None
            if method == "transfer" and prior is None:
                continue
            t0 = time.perf_counter()
            samples, problems, preds = {}, [], {}
            # the same fits without the extrapolation noise (transfer with a calibrated prior)
            raw_samples = {}
            for e in epochs:
                k = int(np.searchsorted(table.epochs, e, side="right"))
                mask = table.mask.copy()
                mask[:, k:] = False
                pred = predict(
                    prior,
                    np.where(mask, table.values, np.nan),
                    mask,
                    horizon,
                    epochs=table.epochs,
                    minimize=minimize,
                    num_steps=num_steps,
                    seed=seed,
                )
                # a failed fit never stops a run
                samples[int(e)] = pred.samples if pred.ok else None
                if pred.ok and pred.calibrated:
                    preds[int(e)] = pred
                if pred.calibrated:
                    raw = dataclasses.replace(pred, calibration=None)
                    raw_samples[int(e)] = raw.samples if pred.ok else None
                problems += [f"epoch {e}: {p}" for p in pred.diagnostics["problems"]]
            seconds = time.perf_counter() - t0
            fixed = lambda draws: {e: _prob_better_fn(draws[e], minimize) for e in draws}
            # (name, stop_prob, calibrated, adaptive replay or None)
            variants = [(method, fixed(samples), prior is not None and bool(raw_samples), None)]
            if preds and adapt:
                adaptive = AdaptiveReplay(preds, final, minimize)
                variants.append((f"{method}_adaptive", adaptive.stop_prob, True, adaptive))
            if raw_samples:
                variants.append((f"{method}_uncalibrated", fixed(raw_samples), False, None))
            for (variant, stop_prob, calibrated, adaptive), threshold in itertools.product(
                variants, thresholds
            ):
                rng = np.random.default_rng(seed)
                saved, regret, extra = [], [], {}
                best_all = final.min() if minimize else final.max()
                for _ in range(repeats):
                    if adaptive is not None:
                        adaptive.reset()
                    used, best = replay(
                        final,
                        stop_prob,
                        horizon,
                        threshold,
                        rng.permutation(n),
                        minimize,
                        on_complete=None if adaptive is None else adaptive.complete,
                    )
                    saved.append(1.0 - used / (n * horizon))
                    regret.append(abs(best_all - best))
                if adaptive is not None:
                    cal = adaptive.calibration
                    extra = {
                        "adapted_calibration_last_repeat": {
                            k: cal[k] for k in ("log_a", "b", "c", "d", "adapted") if k in cal
                        },
                        "adapt_fits": adaptive.fits,
                        "adapt_seconds": adaptive.seconds,
                    }
                r = {
                    "dataset": name,
                    "threshold": float(threshold),
                    "method": variant,
                    "calibrated": calibrated,
                    "n_curves": n,
                    "epochs_saved": float(np.mean(saved)),
                    "regret": float(np.mean(regret)),
                    "regret_max": float(np.max(regret)),
                    "repeats": repeats,
                    "min_epochs": min_epochs,
                    "checkpoints": [int(e) for e in epochs],
                    "inference": "svi",
                    "seconds": seconds,
                    "problems": "; ".join(problems),
                    **extra,
                }
                results.append(r)
                log(
                    f"{name:>22} {threshold:5.3f} {variant:>22} saved {r['epochs_saved']:.3f} regret {r['regret']:.4f} ({seconds:.0f}s)"
                )
    return {"results": results, "priors": priors.info()}


def speed_benchmark(
    prior: CurvePrior,
    table,
    *,
    cutoff: float = 0.2,
    n_curves: int = 1000,
    nuts_curves=(1, 8),
    seed=0,
    log=print,
) -> dict:
    """Seconds to predict ``n_curves`` partial curves of ``table`` with SVI (cold: with
    compilation; warm: a second call of the same shape) and with NUTS on a few curves."""
    table = _subsample(complete_runs(table), n_curves, seed)
    values, mask, _ = truncate(table, cutoff)
    horizon = int(table.epochs[-1])
    rows = []
    for label, s in (("cold", seed), ("warm", seed + 1)):
        pred = predict(prior, values, mask, horizon, epochs=table.epochs, seed=s)
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
            seed=seed,
            method="nuts",
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
