"""``nax curves early-stop``: epochs saved and regret of the stopping rule, replayed.

For each test dataset the rule's predictions are made once per checkpoint epoch of its
schedule for all (subsampled) runs at once, each truncated at that epoch (the other runs
at the same epoch are the context). The runs are then replayed in seeded random orders as
a search would run them, and every decision is the stopping rule's own
(:func:`nax.curves.stopping.stop_rule`): ``rule.judge`` thresholds the cached draws under
the state's calibration (:func:`nax.curves.predict.compose_draws` recomposes them exactly),
``rule.update`` takes each completed run with its cached predictions as evidence and
refits the calibration on ``StopConfig.refit``'s schedule. Only runs trained to the end
count as found.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from nax.curves import calibration
from nax.curves.bench import families as fam_lib
from nax.curves.bench.common import (
    Priors,
    complete_runs,
    meta,
    setup,
    subsample,
)
from nax.curves.fitting import PRIOR_INFERENCE
from nax.curves.inference import InferenceConfig
from nax.curves.predict import predict
from nax.curves.stopping import FinalDraws, Finished, Refit, Schedule, StopConfig, StopRule, stop_rule

#: the replay refits the adapted calibration after each of the first ten completed runs,
#: then when their number has grown by a quarter, up to 60 (enough for three parameters)
REPLAY_REFIT = Refit(first=10, growth=1.25, max_runs=60)


def default_check_every(horizon: int, min_epochs: int) -> int:
    """About 12 checks per run."""
    return max(1, int(np.ceil((horizon - min_epochs) / 12)))


def replay(
    rule: StopRule,
    draws: dict,
    final: np.ndarray,
    order,
    *,
    evidence: dict | None = None,
    curves: np.ndarray | None = None,
    key=None,
) -> tuple[int, float, dict]:
    """Replay runs in ``order`` under ``rule``: each run is checked at the epochs of
    ``rule.schedule`` that have cached draws (``draws[e]``: :class:`FinalDraws` of every
    run at epoch ``e``; a failed fit has none and stops nothing) and stops at the first
    ``rule.judge`` says to; a run trained to the end updates the rule with its
    ``evidence`` (``evidence[e]``: :class:`~nax.curves.calibration.Evidence` of every run
    at ``e``). Returns (epochs trained, best final found, adaptation stats)."""
    key = jax.random.key(0) if key is None else key
    horizon, minimize = rule.horizon, rule.config.minimize
    state = rule.init(key)
    best, used, fits, seconds = None, 0, 0, 0.0
    checks = [int(e) for e in rule.schedule.epochs() if int(e) in draws]
    for run in order:
        stopped_at = None
        if best is not None:
            cols = slice(run, run + 1)
            for e in checks:
                if rule.judge(state, draws[e].take(cols), best).stop[0]:
                    stopped_at = e
                    break
        if stopped_at is not None:
            used += stopped_at
            continue
        used += horizon
        if best is None or (final[run] < best if minimize else final[run] > best):
            best = final[run]
        ev = None
        if evidence is not None:
            ev = tuple(
                calibration.Evidence(ev.m[:, [run]], ev.s[:, [run]], *(a[[run]] for a in ev[2:]))
                for ev in evidence.values()
            )
        t0 = time.perf_counter()
        before = state.fitted_at
        curve = final[run : run + 1] if curves is None else curves[run]
        state = rule.update(state, [Finished(curve, True, ev)], key)
        fits += state.fitted_at != before
        seconds += time.perf_counter() - t0
    cal = state.calibration
    return used, best, {"calibration": cal, "fits": fits, "seconds": seconds}


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
    inference: InferenceConfig = InferenceConfig(num_steps=800),
    prior_inference: InferenceConfig = PRIOR_INFERENCE,
    calibrate: bool = True,
    adapt: bool = True,
    refit: Refit = REPLAY_REFIT,
    prior_cache: str | Path | None = None,
    methods: Sequence[str] = ("transfer", "no_transfer"),
    seed: int = 0,
    log=print,
) -> dict:
    """Run the early-stopping benchmark; returns ``{"results": [...], "priors": {...},
    "meta": {...}}``.

    A run is stopped at the first check where P(final > best final so far) < threshold,
    never before ``min_fraction`` of its epochs; checks every ``check_every`` epochs
    (default about 12 per run). ``adapt`` (with a calibrated prior) adds
    ``transfer_adaptive``: the same predictions, the calibration learned within the target
    from the runs completed so far in each replay, as a search would have it.
    ``transfer_uncalibrated``: the same draws without the extrapolation noise.
    """
    record = meta("nax curves early-stop", locals())  # at the start: a long run would record a later commit
    train, test, priors = setup(
        train_paths,
        test_paths,
        prefix=prefix,
        dataset_column=dataset_column,
        minimize=minimize,
        transfer="transfer" in methods,
        seed=seed,
        max_train_curves=max_train_curves,
        calibrate=calibrate,
        prior_inference=prior_inference,
        prior_cache=prior_cache,
        log=log,
    )
    jobs = [({"protocol": "loo"}, name, full, lambda n=name: priors.for_target(n)) for name, full in test.items()]
    results = _run(jobs, **_run_kw(locals()))
    return {"results": results, "priors": priors.info(), "meta": record}


def family_early_stop(
    families,
    *,
    protocols: Sequence[str] = ("cross-family", "loo"),
    mixed_directions: bool = False,
    max_targets: int | None = None,
    target_families: Sequence[str] | None = None,
    thresholds: Sequence[float] = (0.05,),
    max_curves: int | None = 300,
    max_train_curves: int | None = 300,
    repeats: int = 10,
    min_fraction: float = 0.1,
    check_every: int | None = None,
    inference: InferenceConfig = InferenceConfig(num_steps=800),
    prior_inference: InferenceConfig = PRIOR_INFERENCE,
    calibrate: bool = True,
    adapt: bool = True,
    refit: Refit = REPLAY_REFIT,
    prior_cache: str | Path | None = None,
    methods: Sequence[str] = ("transfer", "no_transfer"),
    seed: int = 0,
    log=print,
) -> dict:
    """The early-stopping replay on families' folds (:mod:`.families`, as
    :func:`nax.curves.bench.extrapolation.family_benchmark`); rows carry ``protocol``
    and ``family``."""
    record = meta("nax curves early-stop", locals())
    pool, members = fam_lib.load_families(families)
    folds = fam_lib.select_folds(families, members, protocols=protocols, max_targets=max_targets,
                                 mixed_directions=mixed_directions, target_families=target_families, seed=seed,
                                 log=log)  # fmt: skip
    record["folds"] = fam_lib.fold_record(folds)
    priors = Priors(
        pool,
        seed=seed,
        max_curves=max_train_curves,
        calibrate=calibrate,
        inference=prior_inference,
        log=log,
        cache_dir=prior_cache,
    )
    jobs = [
        (
            {"protocol": f.protocol, "family": f.family},
            name,
            pool[name],
            lambda s=f.sources[name]: priors.for_sources(s),
        )
        for f in folds
        for name in f.targets
    ]
    results = _run(jobs, **_run_kw(locals()))
    return {"results": results, "priors": priors.info(), "meta": record}


def _run_kw(args: dict) -> dict:
    keep = ("thresholds", "max_curves", "repeats", "min_fraction", "check_every", "inference", "calibrate", "adapt",
            "refit", "methods", "seed", "log", "minimize")  # fmt: skip
    return {k: args[k] for k in keep if k in args}


def _run(jobs, *, thresholds, max_curves, repeats, min_fraction, check_every, inference, calibrate, adapt, refit,
         methods, seed, log, minimize=None) -> list:  # fmt: skip
    """Replay rows of every (where, name, table, prior_of) job: ``prior_of()`` is the
    target's prior (fitted on its sources only), asked for only by ``transfer``."""
    results = []
    for where, name, full, prior_of in jobs:
        results += _target(where, name, full, prior_of, thresholds=thresholds, max_curves=max_curves,
                           repeats=repeats, min_fraction=min_fraction, check_every=check_every,
                           inference=inference, calibrate=calibrate, adapt=adapt, refit=refit, methods=methods,
                           seed=seed, log=log, minimize=full.minimize)  # fmt: skip
    return results


def _target(where, name, full, prior_of, *, thresholds, max_curves, repeats, min_fraction, check_every, inference,
            calibrate, adapt, refit, methods, seed, log, minimize) -> list:  # fmt: skip
    """Every method's replay rows on one target dataset."""
    results = []
    table = subsample(complete_runs(full), max_curves, seed)
    final, horizon, n = table.values[:, -1], int(table.epochs[-1]), table.n_runs
    min_epochs = max(1, round(min_fraction * horizon))
    every = check_every if check_every is not None else default_check_every(horizon, min_epochs)
    base = StopConfig(
        min_epochs=min_epochs, check_every=every, adapt=False, refit=refit, minimize=minimize, inference=inference
    )
    epochs = Schedule(min_epochs, every, horizon).epochs()
    for method in methods:
        prior = prior_of() if method == "transfer" else None
        if method == "transfer" and prior is None:
            continue
        calibrated = prior is not None and prior.calibration is not None
        t0 = time.perf_counter()
        draws, evidence, problems = {}, {}, []
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
                inference=inference,
                seed=seed,
            )
            if pred.ok:  # a failed fit never stops a run
                draws[int(e)] = FinalDraws.from_prediction(pred)
                if calibrated and adapt:
                    evidence[int(e)] = calibration.evidence(pred, final, np.arange(n))
            problems += [f"epoch {e}: {p}" for p in pred.diagnostics["problems"]]
        seconds = time.perf_counter() - t0
        # evidence of a completed run: its predictions at three evenly spaced checks
        keys = list(evidence)
        if keys:
            at = {keys[i] for i in np.linspace(0, len(keys) - 1, base.adapt_checks).round().astype(int)}
            evidence = {e: ev for e, ev in evidence.items() if e in at}
        # (name, prior, config, evidence, calibrated)
        variants = [(method, prior, base, None, calibrated)]
        if evidence:
            variants.append((f"{method}_adaptive", prior, base.replace(adapt=True), evidence, True))
        if calibrated:
            raw = dataclasses.replace(prior, calibration=None)
            variants.append((f"{method}_uncalibrated", raw, base, None, False))
        for variant, pr, cfg, ev, is_cal in variants:
            for threshold in thresholds:
                rule = stop_rule(pr, horizon, cfg.replace(delta=float(threshold)))
                results.append(
                    _replays(
                        rule,
                        draws,
                        final,
                        table.values,
                        ev,
                        repeats,
                        seed,
                        {
                            "dataset": name,
                            **where,
                            "threshold": float(threshold),
                            "method": variant,
                            "calibrated": is_cal,
                            "n_curves": n,
                        },
                        {
                            "repeats": repeats,
                            "min_epochs": min_epochs,
                            "checkpoints": [int(e) for e in epochs],
                            "inference": inference.method,
                            "seconds": seconds,
                            "problems": "; ".join(problems),
                        },
                        log,
                    )
                )
    return results


def _replays(rule, draws, final, curves, evidence, repeats, seed, head, tail, log) -> dict:
    """``repeats`` replays in seeded random orders: mean epochs saved and regret."""
    rng = np.random.default_rng(seed)
    n, horizon = len(final), rule.horizon
    saved, regret, fits, seconds = [], [], 0, 0.0
    best_all = final.min() if rule.config.minimize else final.max()
    for _ in range(repeats):
        used, best, stats = replay(rule, draws, final, rng.permutation(n), evidence=evidence, curves=curves)
        saved.append(1.0 - used / (n * horizon))
        regret.append(abs(best_all - best))
        fits, seconds = fits + stats["fits"], seconds + stats["seconds"]
    r = {
        **head,
        "epochs_saved": float(np.mean(saved)),
        "regret": float(np.mean(regret)),
        "regret_max": float(np.max(regret)),
        **tail,
    }
    if evidence is not None:
        cal = stats["calibration"] if stats["calibration"] is not None else rule.prior.calibration
        keep = ("log_a", "b", "c", "d", "adapted")
        r["adapted_calibration_last_repeat"] = {k: v for k, v in cal.to_dict().items() if k in keep}
        r["adapt_fits"] = fits  # over all repeats
        r["adapt_seconds"] = seconds
    log(
        f"{head['dataset']:>22} {head['threshold']:5.3f} {head['method']:>22} saved {r['epochs_saved']:.3f} "
        f"regret {r['regret']:.4f} ({tail['seconds']:.0f}s)"
    )
    return r


__all__ = ["REPLAY_REFIT", "default_check_every", "early_stop_benchmark", "replay"]
