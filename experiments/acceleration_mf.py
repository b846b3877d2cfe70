"""The acceleration experiment's multi-fidelity variants (issue 14) and its LCBench suite.

- ``hyperband``   Hyperband (Li et al. 2018), eta 3, rungs from one epoch to a full run;
- ``asha``        asynchronous successive halving (Li et al. 2020), the same rungs;
- ``freeze_thaw`` the transferred freeze-thaw policy (``nax.search.freeze_thaw``): the
  curve posterior of the prior fitted on the other datasets (the stopping rule's
  predictions and within-target adaptation) decides which paused trial to resume by
  ``default_delta`` epochs, and the characteristic model proposes new architectures and
  says how likely they are to beat the incumbent (where there is one: the meta-dataset;
  on the Baker and LCBench sets proposals are uniformly random, the population standing in);
  with ``NAX_FT_AHEAD=1`` its look-ahead's spread calibrated on the prior's source curves,
  and within the target as resumed trials show what was predicted
  (``nax.search.ahead_calibration``, fitted once per set of sources; the third version,
  measured slower on the meta-dataset, so off by default: NOTES §8);
- ``freeze_thaw_rungs`` the same policy, the same models and the same value, with every job
  ending on the rungs Hyperband and ASHA use here (``mf_min_epochs``, ``mf_eta``: their own
  ladder, e.g. 2, 6, 17, 52 on LCBench) instead of ``default_delta`` epochs on
  (``ft.from_models(..., jobs="rungs")``; the fourth version, NOTES §8);
- ``asha_selection`` ASHA whose new trials the characteristic model proposes (the
  ``selection`` variant's ``transfer.strategy_from_model``, told every completed run) where
  there is one (the meta-dataset; without one it would be ``asha``, so it is not built);
- ``asha_transfer`` ``asha_selection`` (ASHA's uniform proposals without a characteristic
  model) whose promotions rank a rung by the curve posterior's median predicted final
  (``halving_rank.predicted_final`` of the stopping rule freeze-thaw uses) instead of the
  value at the rung: both transfers, one copy of each decision, on ASHA's skeleton.

All of them are ``nax.search.multifidelity`` strategies run by the same driver
(``nax.search.loop``) on the same table evaluator as the full-run variants: a job resumes
its trial from the epochs it has and is charged only the epochs it adds, and a trial
counts as found only once it has completed a full run. Hyperband and ASHA draw uniformly
random architectures, as in their papers and as Ray Tune / Syne Tune run them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import numpy as np
from acceleration_config import (
    LCBENCH_FILE,
    META_DATASETS,
    MF_VARIANTS,
    Config,
    baker_table,
    lcbench_table,
    load_metadata,
    shared_data,
    stop_config,
)

from nax import space as space_lib
from nax import tables
from nax.search import ahead_calibration, halving, halving_rank, strategies
from nax.search import evaluators as ev_lib
from nax.search import freeze_thaw as ft

_SOURCES: dict = {}


def source_curves(cfg: Config, names) -> tables.CurveTable:
    """The curves of the source datasets ``names`` a prior was fitted on (its
    ``info["datasets"]``), from the suite they belong to (meta-dataset, LCBench or Baker)."""
    key = tuple(sorted(map(str, names)))
    if key not in _SOURCES:
        if set(key) <= set(META_DATASETS):
            ct = load_metadata(cfg)[0]
        elif all(n.isdigit() for n in key):
            ct = lcbench_table()
        else:
            ct = tables.concat([baker_table(n) for n in key])
        _SOURCES[key] = ct.subset(np.isin(np.asarray(ct.datasets).astype(str), key))
    return _SOURCES[key]


_AHEAD: dict = {}


def calibrate_ahead() -> bool:
    """Whether freeze-thaw runs with its look-ahead calibrated (the third version):
    ``NAX_FT_AHEAD=1``. Off by default: measured slower than the second version on the
    meta-dataset (NOTES §8), which stays the experiment's freeze-thaw."""
    return os.environ.get("NAX_FT_AHEAD", "0") == "1"


def ahead_for(cfg: Config, prior, horizon: int, rule_config, log=None) -> ahead_calibration.AheadCalibration:
    """Freeze-thaw's look-ahead calibration for one target, learned on the prior's sources
    (once per process for targets that share their sources, as LCBench's tasks of a fold do)."""
    key = (tuple(sorted(map(str, prior.info["datasets"]))), id(prior), horizon, repr(rule_config))
    if key in _AHEAD:
        return _AHEAD[key]
    t0 = time.perf_counter()
    src = source_curves(cfg, prior.info["datasets"])
    out = _AHEAD[key] = ahead_calibration.fit_ahead(
        prior, src, horizon, ft.default_delta(horizon), stop_config=rule_config
    )
    if log is not None:
        log(
            f"freeze-thaw look-ahead factors {', '.join(f'{k:.2f}' for k in out.factors)} at prefix fractions "
            f"{', '.join(f'{f:.2f}' for f in out.fractions)} (sources, {time.perf_counter() - t0:.1f} s)"
        )
    return out


def mf_builders(cfg: Config, space, cands, horizon: int, prior, model, rule_config) -> dict[str, Callable]:
    """The multi-fidelity variants of ``cfg.variants`` for one target (fresh state per seed):
    ``variant -> () -> (strategy, None)`` (no stopping rule: they decide themselves)."""
    ahead: list = []  # learned once, on the first freeze-thaw seed

    def freeze_thaw():
        if not ahead:
            ahead.append(ahead_for(cfg, prior, horizon, rule_config, print) if calibrate_ahead() else None)
        st = ft.from_models(prior, model, space, horizon, stop_config=rule_config, candidates=cands, ahead=ahead[0])
        return st, None

    def freeze_thaw_rungs():
        st = ft.from_models(
            prior,
            model,
            space,
            horizon,
            stop_config=rule_config,
            candidates=cands,
            jobs="rungs",
            min_epochs=cfg.mf_min_epochs,
            eta=cfg.mf_eta,
        )
        return st, None

    def asha_transferred(rank: bool):
        st = halving_rank.asha_from_models(
            cfg.mf_min_epochs,
            horizon,
            cfg.mf_eta,
            space=space,
            candidates=cands,
            model=model,
            prior=prior if rank else None,
            stop_config=rule_config,
        )
        return st, None

    out = {
        "hyperband": lambda: (
            halving.hyperband(cfg.mf_min_epochs, horizon, cfg.mf_eta, space=space, candidates=cands),
            None,
        ),
        "asha": lambda: (halving.asha(cfg.mf_min_epochs, horizon, cfg.mf_eta, space=space, candidates=cands), None),
        "freeze_thaw": freeze_thaw,
        "freeze_thaw_rungs": freeze_thaw_rungs,
        "asha_transfer": lambda: asha_transferred(True),
    }
    if model is not None:  # without a characteristic model it would be plain ASHA
        out["asha_selection"] = lambda: asha_transferred(False)
    return {v: b for v, b in out.items() if v in cfg.variants}


def wants(cfg: Config, *variants: str) -> bool:
    """Whether ``cfg`` runs any of ``variants``; ``"freeze_thaw"`` stands for every
    variant that needs the prior and the characteristic model (freeze-thaw's, ASHA's
    with both transfers)."""
    ft_all = ("freeze_thaw", "freeze_thaw_rungs", "asha_transfer") if "freeze_thaw" in variants else ()
    return any(v in cfg.variants for v in (*variants, *ft_all))


def seed_limits(cfg: Config) -> dict[str, int]:
    """Seeds per variant where fewer than the suite's run (``ft_seeds``): the variants that
    fit the curve posterior per decision."""
    costly = ("freeze_thaw", "freeze_thaw_rungs", "asha_transfer")
    return {} if cfg.ft_seeds is None else {v: cfg.ft_seeds for v in costly}


def lcbench_folds(tasks: list[str], folds: int) -> dict[str, list[str]]:
    """Each task's source tasks: those of the other folds (task index mod ``folds``)."""
    fold = {t: i % folds for i, t in enumerate(tasks)}
    return {t: [s for s in tasks if fold[s] != fold[t]] for t in tasks}


def lcbench_target(cfg: Config, table, target: str, sources: list[str], prior_cache: dict, log, run_target, fit_prior):
    """Random order vs Hyperband, ASHA and freeze-thaw on one LCBench task."""
    space = space_lib.nb201
    evaluator = ev_lib.CurveTableEvaluator(table, target, space)
    cands = evaluator.candidates()
    horizon = evaluator.max_epochs
    budget = max(1, round(cfg.lcbench_budget_fraction * len(cands))) * horizon
    cap = min(cfg.cap * budget, len(cands) * horizon)
    key = tuple(sources)
    prior = None
    if wants(cfg, "freeze_thaw"):
        t0 = time.perf_counter()
        if key not in prior_cache:  # the tasks of one fold share their sources
            prior_cache[key] = fit_prior(cfg, table.subset(np.isin(np.asarray(table.datasets).astype(str), sources)))
        prior = prior_cache[key]
        log(f"lcbench {target}: prior on {len(sources)} other tasks ready in {time.perf_counter() - t0:.1f} s")
    log(f"lcbench {target}: {len(cands)} configurations of {horizon} epochs, budget {budget} epochs (cap {cap:g})")
    every = max(1, horizon // cfg.baker_checks)
    rule_config = stop_config(cfg, min_epochs=max(cfg.stop_min_epochs, every), check_every=every)
    rnd = lambda: strategies.random(space, batch=1, candidates=cands)
    builders = {"baseline": lambda: (rnd(), None), **mf_builders(cfg, space, cands, horizon, prior, None, rule_config)}
    grid = np.linspace(0, cap, 101)
    rows, cv = run_target(
        target, "lcbench", evaluator, builders, cfg.lcbench_seeds, budget, cap, grid, log, seed_limits(cfg)
    )
    for r in rows:
        r["pool"] = len(cands)
        r["seconds_to_target"] = r["speedup_seconds"] = float("nan")  # the surrogate records no time
    return rows, cv, grid


def lcbench_suite(cfg: Config, log, run_target, fit_prior) -> Iterator[tuple[str, str, tuple, str]]:
    path = shared_data() / "curves" / "lcbench" / LCBENCH_FILE
    if not path.is_file():
        log(f"LCBench curves {path} not found: skipping the lcbench targets")
        return
    table = lcbench_table()
    tasks = sorted(set(map(str, table.datasets)), key=int)
    sources = lcbench_folds(tasks, cfg.lcbench_folds)
    cache: dict = {}
    for target in cfg.lcbench_targets or tasks:
        res = lcbench_target(cfg, table, target, sources[target], cache, log, run_target, fit_prior)
        yield ("lcbench", target, res, f"LCBench task {target} ({cfg.lcbench_seeds} seeds)")


__all__ = ["MF_VARIANTS", "ahead_for", "lcbench_folds", "lcbench_suite", "mf_builders", "seed_limits", "wants"]
