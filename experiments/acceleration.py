"""The paper's claim, measured: how much sooner does a search reach a given accuracy when
it transfers architecture selection, early termination, or both, from earlier datasets?

For each target (each dataset of the project's meta-dataset in turn; the other datasets
are the earlier ones) four variants search the target's recorded curves with the table
evaluator (``nax.search.evaluators.CurveTableEvaluator``, one epoch charged per replayed
epoch, seconds charged at the row's steady per-epoch time, see ``with_steady_seconds``):

- ``baseline``  regularized evolution, every run trained to the end;
- ``selection`` the transfer strategy (characteristic model fitted on the other datasets);
- ``stopping``  regularized evolution + the curve-model stopping rule (prior fitted on the
  other datasets' curves);
- ``both``      the transfer strategy + the stopping rule.

The characteristic model and the curve prior are fitted once per target and reused by
every seed. For each seed the baseline runs first with the budget ``B`` (a fraction of
the epochs needed to train the whole pool); its best final accuracy within ``B`` is that
seed's *target accuracy*. Every variant, with the same seed, then runs until its best
completed run reaches the target accuracy and it has spent ``B``, or until ``cap * B``.
Measured per seed: epochs (and seconds) spent when the target accuracy is first reached,
and the best accuracy reached within ``B``. NAS-Bench-201 (final accuracies only) compares
``baseline`` and ``selection`` the same way.

    python experiments/acceleration.py --config quick
    python experiments/acceleration.py --config full
    python experiments/acceleration.py --real --config full   # real training on digits, small budget
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import jax
import numpy as np

import nax
from nax import characteristics as ch
from nax import curves, tables
from nax import provenance as provenance_lib
from nax import space as space_lib
from nax.search import evaluators as ev_lib
from nax.search import loop, stopping, strategies, transfer

REPO = Path(__file__).resolve().parents[1]
META_DATASETS = ("digits", "mnist5k", "animal_mnist", "fashion_mnist", "opencv_digits")
NB201_DATASETS = ("cifar10", "cifar100", "imagenet16-120")
#: Baker et al. (2018) curve sets in ../shared/data/curves/baker2018 (file stems)
BAKER_SETS = ("metaqnn_cifar10", "metaqnn_svhn", "deep_resnets_cifar10", "deep_resnets_tinyimagenet")
VARIANTS = ("baseline", "selection", "stopping", "both")
SUITES = ("metadata", "nb201", "baker")


@dataclasses.dataclass(frozen=True)
class Config:
    """What one run of the experiment does. Budgets are fractions of the epochs that
    training every architecture of the target's pool would take."""

    name: str
    targets: tuple[str, ...] = META_DATASETS
    seeds: int = 10
    #: the baseline's budget B as a fraction of the pool's total epochs
    budget_fraction: float = 0.25
    #: variants stop at cap * B when they have not reached the target accuracy
    cap: float = 2.0
    #: regularized evolution on a pool of ~157 cells: a small population, or most of the
    #: budget goes to the random initial population
    population: int = 10
    sample: int = 3
    #: curve prior fit (per target) and the stopping rule's per-check SVI
    prior_steps: int = 2000
    prior_max_curves: int | None = 200
    #: the prior's extrapolation-noise calibration on source prefixes (nax.curves.fit_prior)
    prior_calibration_steps: int = 1000
    prior_calibration_curves: int | None = 100
    stop_delta: float = 0.05
    stop_min_epochs: int = 3
    stop_check_every: int = 3
    stop_steps: int = 300
    stop_samples: int = 200
    #: the rule's extrapolation noise learned within the target from its finished runs
    #: (nax.search.stopping.rule_from_prior(adapt=...))
    stop_adapt: bool = True
    #: NAS-Bench-201: selection only, budget in full (200-epoch) runs
    nb201_targets: tuple[str, ...] = NB201_DATASETS
    nb201_seeds: int = 10
    nb201_budget_runs: int = 100
    nb201_population: int = 20
    nb201_sample: int = 5
    #: Baker et al. curve sets: early termination only (their networks are not NB201 cells,
    #: so there is nothing to select by); baseline = random order, budget a fraction of the pool
    baker_targets: tuple[str, ...] = BAKER_SETS
    baker_seeds: int = 5
    baker_budget_fraction: float = 0.1
    #: the rule is consulted about every tenth of the run (from a tenth on)
    baker_checks: int = 5
    metadata_dir: str = "nax/metadata"
    nb201_table: str = ""  # empty: <repo>/../shared/data/nb201/nb201_200epoch.csv (NAX_SHARED_DATA)

    #: which suites run (a subset writes acceleration_<name>_<suites>.*, so suites can run
    #: side by side as separate processes)
    suites: tuple[str, ...] = ("metadata", "nb201", "baker")

    @property
    def command(self) -> str:
        sub = "" if set(self.suites) == set(SUITES) else " --suites " + " ".join(self.suites)
        return f"python experiments/acceleration.py --config {self.name}{sub}"

    @property
    def stem(self) -> str:
        """File name stem of this run's outputs."""
        sub = "" if set(self.suites) == set(SUITES) else "_" + "_".join(self.suites)
        return f"acceleration_{self.name}{sub}"


CONFIGS = {
    "quick": Config("quick", targets=("digits",), seeds=2, budget_fraction=0.25, prior_steps=300,
                    prior_max_curves=20, prior_calibration_steps=150, prior_calibration_curves=10, stop_steps=100, stop_samples=100, stop_check_every=4,
                    nb201_targets=("cifar10",), nb201_seeds=2, nb201_budget_runs=15,
                    baker_targets=("metaqnn_cifar10",), baker_seeds=2, baker_budget_fraction=0.03),
    "full": Config("full"),
}


# ---------------------------------------------------------------------------- provenance
def provenance() -> dict:
    """nax version, git commit (dirty flag for this script and the package), versions, machine."""
    return provenance_lib.provenance(paths=["nax", "experiments/acceleration.py"], repo=REPO)


def shared_data() -> Path:
    return Path(os.environ.get("NAX_SHARED_DATA", REPO.parent / "shared" / "data"))


def nb201_path(cfg: Config) -> Path:
    if cfg.nb201_table:
        return Path(cfg.nb201_table)
    return shared_data() / "nb201" / "nb201_200epoch.csv"


def baker_table(name: str):
    """A Baker et al. curve set as a curve table named by its file stem (two of the files
    both call their dataset cifar10). Its networks are not cells of any nax space; each row
    gets a distinct NB201 cell string as an *identifier* so that the search loop's random
    strategy can draw rows. Nothing is ever computed from these identifiers."""
    ct = tables.load_curves(shared_data() / "curves" / "baker2018" / f"{name}.csv")
    ids = [space_lib.nb201.to_string(e) for e in space_lib.nb201.enumerate()[: len(ct.final)]]
    return dataclasses.replace(ct, datasets=np.full(len(ct.final), name, dtype=object),
                               meta={**ct.meta, "arch": np.asarray(ids, dtype=object)})


def with_steady_seconds(ct):
    """The curve table with ``steady_s``: epochs x the median seconds of epochs 2.. of a row.

    The table's ``wall_s`` includes the generator's first-epoch compilation (up to ~100 s
    on this machine, whichever cell happened to compile), which a search that compiles
    once (the supernet form) pays once, not per run; charging it per run would make the
    seconds column measure compile order rather than architectures.
    """
    cols = sorted((k for k in ct.meta if k.startswith("epoch_s_")), key=lambda k: int(k.rsplit("_", 1)[1]))
    if len(cols) < 2:
        return ct
    per_epoch = np.nanmedian(np.stack([np.asarray(ct.meta[k], float) for k in cols[1:]], 1), axis=1)
    return dataclasses.replace(ct, meta={**ct.meta, "steady_s": per_epoch * ct.lengths})


# ---------------------------------------------------------------------------- one search
@dataclasses.dataclass
class Trace:
    """One search's runs, in order: cumulative epochs and seconds after each run, and the
    best final accuracy of a completed run so far (NaN before the first)."""

    epochs: np.ndarray
    seconds: np.ndarray
    best: np.ndarray
    stopped: int

    def best_within(self, budget: float) -> float:
        """Best completed accuracy among runs that ended within ``budget`` epochs."""
        ok = self.epochs <= budget
        return float(self.best[ok][-1]) if ok.any() and np.isfinite(self.best[ok][-1]) else float("nan")

    def reach(self, target: float) -> tuple[float, float] | None:
        """(epochs, seconds) spent when the best accuracy first reaches ``target``."""
        hit = np.flatnonzero(self.best >= target)
        return (float(self.epochs[hit[0]]), float(self.seconds[hit[0]])) if len(hit) else None

    def best_at(self, grid: np.ndarray) -> np.ndarray:
        """Best accuracy after spending each of ``grid`` epochs (NaN before a completed run)."""
        idx = np.searchsorted(self.epochs, grid, side="right") - 1
        out = np.where(idx >= 0, self.best[np.maximum(idx, 0)], np.nan)
        return out


class _Done(Exception):
    pass


def search(strategy, evaluator, key, *, stop_rule=None, budget: float, cap: float,
           target: float | None = None) -> Trace:
    """Run a search until ``cap`` epochs, or once it has spent ``budget`` and its best
    completed accuracy has reached ``target`` (nothing more is needed from it)."""
    eps, secs, best, n_stop = [], [], [], [0]
    total_s = [0.0]

    def on_run(run, best_so_far, spent):
        total_s[0] += run.result.cost_s
        eps.append(spent)
        secs.append(total_s[0])
        best.append(np.nan if best_so_far is None else best_so_far)
        n_stop[0] += run.result.status == "stopped"
        if target is not None and spent >= budget and best_so_far is not None and best_so_far >= target:
            raise _Done

    try:
        loop.run_search(strategy, evaluator, loop.Budget(epochs=cap), key, stop_rule=stop_rule, on_run=on_run,
                        max_runs=len(evaluator.candidates()))
    except _Done:
        pass
    return Trace(np.array(eps, float), np.array(secs, float), np.array(best, float), n_stop[0])


def sparse_checks(rule: loop.StopRule, every: int, min_epochs: int) -> loop.StopRule:
    """The rule consulted only after epochs min_epochs, min_epochs + every, ... (each check
    is an SVI fit; checking every epoch costs several times more for little gain)."""

    def decide(state, best, max_epochs):
        test = rule.decide(state, best, max_epochs)
        if test is None:
            return None

        def should_stop(curve):
            e = len(curve)
            if e < min_epochs or (e - min_epochs) % every:
                return False, None
            return test(curve)

        return should_stop

    return loop.StopRule(rule.init, rule.update, decide)


# ---------------------------------------------------------------------------- one target
def _summarise(target: str, suite: str, variant: str, seed: int, trace: Trace, target_acc: float,
               budget: float, cap: float, base: Trace) -> dict:
    r = trace.reach(target_acc)
    rb = base.reach(target_acc)
    row = {"suite": suite, "target": target, "variant": variant, "seed": seed,
           "budget_epochs": budget, "cap_epochs": cap, "target_accuracy": target_acc,
           "reached": r is not None,
           # censored at what was spent: a lower bound on the true epochs
           "epochs_to_target": r[0] if r else float(trace.epochs[-1]),
           "seconds_to_target": r[1] if r else float(trace.seconds[-1]),
           "accuracy_at_budget": trace.best_within(budget),
           "runs": int(len(trace.epochs)), "runs_stopped": trace.stopped}
    row["speedup_epochs"] = rb[0] / row["epochs_to_target"]
    row["speedup_seconds"] = rb[1] / row["seconds_to_target"]
    return row


def run_target(target: str, suite: str, evaluator, builders: dict[str, Callable], cfg_seeds: int, budget: float,
               cap: float, grid: np.ndarray, log: Callable[[str], None]) -> tuple[list[dict], dict]:
    """All variants over all seeds on one target: flat rows, and best-vs-epochs curves."""
    rows, curves_by_variant = [], {v: [] for v in builders}
    for seed in range(cfg_seeds):
        key = jax.random.key(seed)
        strategy, rule = builders["baseline"]()
        base = search(strategy, evaluator, key, stop_rule=rule, budget=budget, cap=budget)
        target_acc = base.best_within(budget)
        traces = {"baseline": base}
        for v, build in builders.items():
            if v == "baseline":
                continue
            t0 = time.perf_counter()
            strategy, rule = build()
            traces[v] = search(strategy, evaluator, key, stop_rule=rule, budget=budget, cap=cap, target=target_acc)
            log(f"  {target} seed {seed} {v}: {len(traces[v].epochs)} runs, {time.perf_counter() - t0:.1f} s")
        for v, tr in traces.items():
            rows.append(_summarise(target, suite, v, seed, tr, target_acc, budget, cap, base))
            curves_by_variant[v].append(tr.best_at(grid))
    return rows, {v: np.array(c) for v, c in curves_by_variant.items()}


def metadata_target(cfg: Config, curve_table, arch_table, target: str, log) -> tuple[list[dict], dict, np.ndarray]:
    space = space_lib.nb201
    sources = [d for d in sorted(set(map(str, curve_table.datasets))) if d != target]
    evaluator = ev_lib.CurveTableEvaluator(curve_table, target, space, seconds_column="steady_s")
    cands = evaluator.candidates()
    pool_epochs = len(cands) * evaluator.max_epochs
    # whole runs: a budget that is not a multiple of a run would favour stopped runs by rounding
    budget = max(1, round(cfg.budget_fraction * len(cands))) * evaluator.max_epochs
    cap = min(cfg.cap * budget, pool_epochs)
    t0 = time.perf_counter()
    model = ch.fit(arch_table, sources, seed=0, space=space)
    prior = curves.fit_prior(curve_table.subset(np.isin(curve_table.datasets, sources)), seed=0,
                             num_steps=cfg.prior_steps, max_curves=cfg.prior_max_curves,
                             calibration_steps=cfg.prior_calibration_steps,
                             calibration_curves=cfg.prior_calibration_curves)
    log(f"{target}: {len(cands)} cells, budget {budget} epochs (cap {cap:g}); models fitted on "
        f"{', '.join(sources)} in {time.perf_counter() - t0:.1f} s")

    def rule():
        r = stopping.rule_from_prior(prior, evaluator.max_epochs, delta=cfg.stop_delta,
                                     min_epochs=cfg.stop_min_epochs, num_samples=cfg.stop_samples,
                                     num_steps=cfg.stop_steps, adapt=cfg.stop_adapt)
        return sparse_checks(r, cfg.stop_check_every, cfg.stop_min_epochs)

    evo = lambda: strategies.evolution(space, cfg.population, cfg.sample, 1, cands)
    sel = lambda: transfer.strategy_from_model(model, space, candidates=cands)
    builders = {"baseline": lambda: (evo(), None), "selection": lambda: (sel(), None),
                "stopping": lambda: (evo(), rule()), "both": lambda: (sel(), rule())}
    grid = np.linspace(0, cap, 101)
    rows, cv = run_target(target, "metadata", evaluator, builders, cfg.seeds, budget, cap, grid, log)
    for r in rows:
        r["pool"] = len(cands)
    return rows, cv, grid


def nb201_target(cfg: Config, arch_table, target: str, log) -> tuple[list[dict], dict, np.ndarray]:
    space = arch_table.space
    sources = [d for d in NB201_DATASETS if d != target]
    evaluator = ev_lib.ArchTableEvaluator(arch_table, target, epochs=200)
    cands = evaluator.candidates()
    budget = cfg.nb201_budget_runs * evaluator.max_epochs
    cap = cfg.cap * budget
    t0 = time.perf_counter()
    model = ch.fit(arch_table, sources, seed=0, space=space)
    log(f"nb201 {target}: {len(cands)} cells, budget {budget} epochs; model fitted in {time.perf_counter() - t0:.1f} s")
    builders = {"baseline": lambda: (strategies.evolution(space, cfg.nb201_population, cfg.nb201_sample, 1, cands), None),
                "selection": lambda: (transfer.strategy_from_model(model, space, candidates=cands), None)}
    grid = np.linspace(0, cap, 101)
    rows, cv = run_target(target, "nb201", evaluator, builders, cfg.nb201_seeds, budget, cap, grid, log)
    for r in rows:
        r["pool"] = len(cands)
    return rows, cv, grid


def baker_target(cfg: Config, sets: dict, target: str, log) -> tuple[list[dict], dict, np.ndarray]:
    """Early termination on one Baker et al. set, the curve prior fitted on the other sets."""
    space = space_lib.nb201
    evaluator = ev_lib.CurveTableEvaluator(sets[target], target, space)
    cands = evaluator.candidates()
    horizon = evaluator.max_epochs
    budget = max(1, round(cfg.baker_budget_fraction * len(cands))) * horizon
    cap = min(cfg.cap * budget, len(cands) * horizon)
    t0 = time.perf_counter()
    prior = curves.fit_prior(tables.concat([t for n, t in sets.items() if n != target]), seed=0,
                             num_steps=cfg.prior_steps, max_curves=cfg.prior_max_curves,
                             calibration_steps=cfg.prior_calibration_steps,
                             calibration_curves=cfg.prior_calibration_curves)
    log(f"baker {target}: {len(cands)} curves of {horizon} epochs, budget {budget} epochs (cap {cap:g}); "
        f"prior fitted on the other sets in {time.perf_counter() - t0:.1f} s")
    every = max(1, horizon // cfg.baker_checks)
    first = max(cfg.stop_min_epochs, every)

    def rule():
        r = stopping.rule_from_prior(prior, horizon, delta=cfg.stop_delta, min_epochs=first,
                                     num_samples=cfg.stop_samples, num_steps=cfg.stop_steps, adapt=cfg.stop_adapt)
        return sparse_checks(r, every, first)

    rnd = lambda: strategies.random(space, batch=1, candidates=cands)
    builders = {"baseline": lambda: (rnd(), None), "stopping": lambda: (rnd(), rule())}
    grid = np.linspace(0, cap, 101)
    rows, cv = run_target(target, "baker", evaluator, builders, cfg.baker_seeds, budget, cap, grid, log)
    for r in rows:
        r["pool"] = len(cands)
        # the sets record no training time: the replay's wall time would time the stopping
        # rule's own inference, not training
        r["seconds_to_target"] = r["speedup_seconds"] = float("nan")
    return rows, cv, grid


# ---------------------------------------------------------------------------- aggregation
def _mse(x) -> tuple[float, float]:
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return float("nan"), float("nan")
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def aggregate(rows: Sequence[dict]) -> list[dict]:
    """Per (suite, target, variant): means ± standard errors over seeds, and speed-ups both as
    the ratio of mean epochs and as the mean of per-seed ratios."""
    out = []
    keys = sorted({(r["suite"], r["target"]) for r in rows}, key=lambda k: ((*SUITES, "table", "real").index(k[0]), k))
    for suite, target in keys:
        sub = [r for r in rows if r["suite"] == suite and r["target"] == target]
        base = {r["seed"]: r for r in sub if r["variant"] == "baseline"}
        for v in VARIANTS:
            vr = sorted((r for r in sub if r["variant"] == v), key=lambda r: r["seed"])
            if not vr:
                continue
            e = [r["epochs_to_target"] for r in vr]
            s = [r["seconds_to_target"] for r in vr]
            be = [base[r["seed"]]["epochs_to_target"] for r in vr]
            bs = [base[r["seed"]]["seconds_to_target"] for r in vr]
            diff = [100 * (r["accuracy_at_budget"] - base[r["seed"]]["accuracy_at_budget"]) for r in vr]
            agg = {"suite": suite, "target": target, "variant": v, "seeds": len(vr), "pool": vr[0]["pool"],
                   "budget_epochs": vr[0]["budget_epochs"], "cap_epochs": vr[0]["cap_epochs"],
                   "reached": int(sum(r["reached"] for r in vr))}
            agg["epochs_to_target"], agg["epochs_to_target_se"] = _mse(e)
            agg["seconds_to_target"], agg["seconds_to_target_se"] = _mse(s)
            agg["speedup_epochs_ratio_of_means"] = float(np.mean(be) / np.mean(e))
            agg["speedup_epochs_mean_ratio"], agg["speedup_epochs_mean_ratio_se"] = _mse([r["speedup_epochs"] for r in vr])
            agg["speedup_seconds_ratio_of_means"] = float(np.mean(bs) / np.mean(s))
            agg["speedup_seconds_mean_ratio"], _ = _mse([r["speedup_seconds"] for r in vr])
            agg["accuracy_at_budget"], agg["accuracy_at_budget_se"] = _mse([r["accuracy_at_budget"] for r in vr])
            agg["accuracy_diff_points"], agg["accuracy_diff_points_se"] = _mse(diff)
            agg["stopped_fraction"] = float(sum(r["runs_stopped"] for r in vr) / max(1, sum(r["runs"] for r in vr)))
            out.append(agg)
    return out


def overall(agg: Sequence[dict]) -> list[dict]:
    """Per (suite, variant): the means over targets of the per-target figures."""
    out = []
    for suite in SUITES:
        for v in VARIANTS:
            a = [r for r in agg if r["suite"] == suite and r["variant"] == v]
            if not a:
                continue
            m = lambda k: float(np.mean([np.nan if r[k] is None else r[k] for r in a]))
            out.append({"suite": suite, "target": "overall", "variant": v, "targets": len(a),
                        "speedup_epochs_ratio_of_means": m("speedup_epochs_ratio_of_means"),
                        "speedup_epochs_mean_ratio": m("speedup_epochs_mean_ratio"),
                        "speedup_seconds_ratio_of_means": m("speedup_seconds_ratio_of_means"),
                        "accuracy_diff_points": m("accuracy_diff_points"),
                        "worst_accuracy_diff_points": float(min(r["accuracy_diff_points"] for r in a)),
                        "reached_fraction": float(sum(r["reached"] for r in a) / sum(r["seeds"] for r in a))})
    return out


# ---------------------------------------------------------------------------- outputs
def _fmt(m, s, nd=1):
    if m is None or not np.isfinite(m):
        return "-"
    return f"{m:.{nd}f} ± {s:.{nd}f}" if s is not None and np.isfinite(s) else f"{m:.{nd}f}"


def _pct(x):
    return None if x is None else 100 * x


def target_markdown(agg: Sequence[dict], suite: str, target: str) -> str:
    a = [r for r in agg if r["suite"] == suite and r["target"] == target]
    unit = "recorded curves" if suite == "baker" else "cells"
    head = (f"### {suite}: {target} ({a[0]['pool']} {unit}, budget B = {a[0]['budget_epochs']:g} epochs, "
            f"cap {a[0]['cap_epochs']:g}, {a[0]['seeds']} seeds)\n\n"
            "| variant | reached | epochs to target | seconds to target | speed-up (ratio of means) | "
            "speed-up (mean of ratios) | acc. at B (%) | Δ acc. vs baseline (points) | runs stopped |\n"
            "|---|---|---|---|---|---|---|---|---|\n")
    lines = [f"| {r['variant']} | {r['reached']}/{r['seeds']} | {_fmt(r['epochs_to_target'], r['epochs_to_target_se'])} | "
             f"{_fmt(r['seconds_to_target'], r['seconds_to_target_se'])} | {r['speedup_epochs_ratio_of_means']:.2f} | "
             f"{_fmt(r['speedup_epochs_mean_ratio'], r['speedup_epochs_mean_ratio_se'], 2)} | "
             f"{_fmt(_pct(r['accuracy_at_budget']), _pct(r['accuracy_at_budget_se']), 2)} | "
             f"{_fmt(r['accuracy_diff_points'], r['accuracy_diff_points_se'], 2)} | {100 * r['stopped_fraction']:.0f}% |"
             for r in a]
    return head + "\n".join(lines) + "\n"


def overall_markdown(ov: Sequence[dict]) -> str:
    head = ("| suite | variant | targets | speed-up epochs (ratio of means) | speed-up epochs (mean of ratios) | "
            "speed-up seconds (ratio of means) | Δ acc. at B (points, mean) | worst target Δ | reached |\n"
            "|---|---|---|---|---|---|---|---|---|\n")
    return head + "\n".join(
        f"| {r['suite']} | {r['variant']} | {r['targets']} | {r['speedup_epochs_ratio_of_means']:.2f} | "
        f"{r['speedup_epochs_mean_ratio']:.2f} | {_fmt(r['speedup_seconds_ratio_of_means'], None, 2)} | "
        f"{r['accuracy_diff_points']:+.2f} | {r['worst_accuracy_diff_points']:+.2f} | {100 * r['reached_fraction']:.0f}% |"
        for r in ov) + "\n"


def plot_target(curves_by_variant: dict, grid: np.ndarray, budget: float, title: str, path: Path) -> None:
    """Best accuracy against epochs spent, mean ± standard error over seeds per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for v, c in curves_by_variant.items():
        c = 100 * c
        with np.errstate(invalid="ignore"), __import__("warnings").catch_warnings():
            __import__("warnings").simplefilter("ignore", RuntimeWarning)
            m = np.nanmean(c, axis=0)
            n = np.sum(np.isfinite(c), axis=0)
            se = np.nanstd(c, axis=0, ddof=1) / np.sqrt(np.maximum(n, 1))
        ax.plot(grid, m, label=v)
        ax.fill_between(grid, m - se, m + se, alpha=0.2)
    ax.axvline(budget, color="k", ls=":", lw=0.8, label="budget B")
    ax.set_xlabel("epochs spent")
    ax.set_ylabel("best validation accuracy (%)")
    lo = np.nanpercentile(100 * np.concatenate([c.ravel() for c in curves_by_variant.values()]), 10)
    if np.isfinite(lo):
        ax.set_ylim(bottom=lo)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(out: Path, cfg: Config, rows, agg, ov, plots, extra_md: str = "", prov: dict | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    meta = {"config": dataclasses.asdict(cfg), "command": cfg.command, "seeds": list(range(cfg.seeds)),
            **(prov or provenance())}
    payload = {**meta, "results": rows, "aggregate": agg, "overall": ov}
    (out / f"{cfg.stem}.json").write_text(json.dumps(payload, indent=1, allow_nan=False, default=_json_default) + "\n")
    md = [f"# Acceleration by transfer ({cfg.name})\n", f"Command: `{cfg.command}`; nax {meta['nax_version']}, "
          f"commit {meta['git_commit']}{' (uncommitted changes)' if meta['git_dirty'] else ''}.\n",
          "## Overall (means over targets)\n", overall_markdown(ov), "\n## Per target\n"]
    md += [target_markdown(agg, s, t) + f"\n![{s} {t}]({p})\n" for (s, t), p in plots.items()]
    (out / f"{cfg.stem}.md").write_text("\n".join(md) + extra_md)


def _json_default(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    raise TypeError(type(x))


def _nan_to_none(o):
    if isinstance(o, dict):
        return {k: _nan_to_none(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_nan_to_none(v) for v in o]
    if isinstance(o, float) and not np.isfinite(o):
        return None
    return o


def run(cfg: Config, out: Path, log: Callable[[str], None] = print) -> dict:
    """The whole experiment of ``cfg``; writes JSON, markdown and one PNG per target to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    prov = provenance()  # the code as it is when the run starts, not when it ends
    md_dir = REPO / cfg.metadata_dir
    rows, plots = [], {}

    def add(suite: str, target: str, result, title: str) -> None:
        r, cv, grid = result
        rows.extend(r)
        p = f"{cfg.stem}_{suite}_{target}.png"
        plot_target(cv, grid, r[0]["budget_epochs"], title, out / p)
        plots[(suite, target)] = p

    if cfg.targets and "metadata" in cfg.suites:
        ct = with_steady_seconds(tables.concat([tables.load_curves(md_dir / f"{d}.csv") for d in META_DATASETS]))
        at = tables.load_archs(md_dir / "archs.csv")
        for target in cfg.targets:
            res = metadata_target(cfg, ct, at, target, log)
            add("metadata", target, res, f"{target} ({res[0][0]['pool']} cells, {cfg.seeds} seeds)")
    if cfg.nb201_targets and "nb201" in cfg.suites:
        path = nb201_path(cfg)
        if not path.is_file():
            log(f"NAS-Bench-201 table {path} not found: skipping the NB201 targets")
        else:
            nb = tables.load_archs(path)
            for target in cfg.nb201_targets:
                add("nb201", target, nb201_target(cfg, nb, target, log),
                    f"NAS-Bench-201 {target} ({cfg.nb201_seeds} seeds)")
    if cfg.baker_targets and "baker" in cfg.suites:
        missing = [n for n in BAKER_SETS if not (shared_data() / "curves" / "baker2018" / f"{n}.csv").is_file()]
        if missing:
            log(f"Baker et al. curve sets {missing} not found under {shared_data()}: skipping the baker targets")
        else:
            sets = {n: baker_table(n) for n in BAKER_SETS}
            for target in cfg.baker_targets:
                add("baker", target, baker_target(cfg, sets, target, log),
                    f"Baker et al. {target} ({cfg.baker_seeds} seeds)")
    agg = aggregate(rows)
    ov = _nan_to_none(overall(agg))
    rows, agg = _nan_to_none(rows), _nan_to_none(agg)
    write_outputs(out, cfg, rows, agg, ov, plots, prov=prov)
    return {"results": rows, "aggregate": agg, "overall": ov}


# ---------------------------------------------------------------------------- real training
@dataclasses.dataclass(frozen=True)
class RealConfig:
    """Real training on one bundled dataset: the same four variants, few seeds, a small budget
    (in full runs) over the target's meta-dataset pool, trained as the meta-dataset was."""

    target: str = "digits"
    seeds: int = 2
    budget_runs: int = 5
    cap: float = 1.6
    base: Config = CONFIGS["full"]
    #: training images per run (None: as the meta-dataset, 1,280); quick runs train on fewer
    train_limit: int | None = None

    @property
    def command(self) -> str:
        return (f"python experiments/acceleration.py --real --config {self.base.name} --real-target {self.target} "
                f"--real-seeds {self.seeds}")


#: ``--real --config quick``: one seed, a one-run budget, 256 training images: the whole real
#: training path end to end in about a minute (a test runs it)
REAL_CONFIGS = {"full": RealConfig(), "quick": RealConfig(seeds=1, budget_runs=1, cap=1.0, base=CONFIGS["quick"],
                                                          train_limit=256)}


class _PoolTraining(ev_lib.TrainingEvaluator):
    """Real training restricted to a pool (the architectures the table holds)."""

    def __init__(self, pool: np.ndarray, *a, **kw):
        super().__init__(*a, **kw)
        self._pool = pool

    def candidates(self) -> np.ndarray:
        return self._pool


def metadata_train_config():
    """The training configuration the meta-dataset was generated with (its journal header)."""
    from nax import train

    for j in sorted((REPO / "nax" / "metadata").glob("journal*.jsonl")):
        with open(j) as fh:
            head = json.loads(fh.readline())
        if "train" in head.get("config", {}):
            return train.TrainConfig(**{k: tuple(v) if isinstance(v, list) else v
                                        for k, v in head["config"]["train"].items()})
    raise FileNotFoundError("no meta-dataset journal with a training config in nax/metadata")


def run_real(rc: RealConfig, out: Path, log: Callable[[str], None] = print) -> dict:
    """Table replay and real training of the same variants on ``rc.target``, side by side."""
    cfg = rc.base
    out.mkdir(parents=True, exist_ok=True)
    prov = provenance()  # the code as it is when the run starts
    md_dir = REPO / cfg.metadata_dir
    ct = with_steady_seconds(tables.concat([tables.load_curves(md_dir / f"{d}.csv") for d in META_DATASETS]))
    at = tables.load_archs(md_dir / "archs.csv")
    space = space_lib.nb201
    sources = [d for d in META_DATASETS if d != rc.target]
    table_ev = ev_lib.CurveTableEvaluator(ct, rc.target, space, seconds_column="steady_s")
    cands = table_ev.candidates()
    tcfg = metadata_train_config().replace(evaluate_test=False)
    if rc.train_limit is not None:
        tcfg = tcfg.replace(train_limit=rc.train_limit)
    real_ev = _PoolTraining(cands, rc.target, tcfg, space)
    model = ch.fit(at, sources, seed=0, space=space)
    prior = curves.fit_prior(ct.subset(np.isin(ct.datasets, sources)), seed=0, num_steps=cfg.prior_steps,
                             max_curves=cfg.prior_max_curves, calibration_steps=cfg.prior_calibration_steps,
                             calibration_curves=cfg.prior_calibration_curves)

    def rule():
        return sparse_checks(stopping.rule_from_prior(prior, table_ev.max_epochs, delta=cfg.stop_delta,
                                                      min_epochs=cfg.stop_min_epochs, num_samples=cfg.stop_samples,
                                                      num_steps=cfg.stop_steps, adapt=cfg.stop_adapt), cfg.stop_check_every, cfg.stop_min_epochs)

    evo = lambda: strategies.evolution(space, cfg.population, cfg.sample, 1, cands)
    sel = lambda: transfer.strategy_from_model(model, space, candidates=cands)
    builders = {"baseline": lambda: (evo(), None), "selection": lambda: (sel(), None),
                "stopping": lambda: (evo(), rule()), "both": lambda: (sel(), rule())}
    budget = rc.budget_runs * table_ev.max_epochs
    cap = rc.cap * budget
    grid = np.linspace(0, cap, 101)
    rows, plots = [], {}
    for suite, evaluator in (("table", table_ev), ("real", real_ev)):
        t0 = time.perf_counter()
        r, cv = run_target(rc.target, suite, evaluator, builders, rc.seeds, budget, cap, grid, log)
        log(f"{suite}: {time.perf_counter() - t0:.0f} s")
        for x in r:
            x["pool"] = len(cands)
        rows += r
        p = f"acceleration_real_{rc.target}_{suite}.png"
        plot_target(cv, grid, budget, f"{rc.target}, {suite} ({rc.seeds} seed{'s' * (rc.seeds > 1)})", out / p)
        plots[(suite, rc.target)] = p
    agg = aggregate(rows)
    rows, agg = _nan_to_none(rows), _nan_to_none(agg)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"config": {**dataclasses.asdict(rc), "train": tcfg.to_dict()}, "command": rc.command, **prov}
    (out / "acceleration_real.json").write_text(json.dumps({**meta, "results": rows, "aggregate": agg}, indent=1,
                                                           default=_json_default) + "\n")
    md = [f"# Acceleration: table replay vs real training on {rc.target}\n",
          f"Command: `{rc.command}`; nax {meta['nax_version']}, commit {meta['git_commit']}.\n"]
    md += [target_markdown(agg, s, t) + f"\n![{s} {t}]({p})\n" for (s, t), p in plots.items()]
    (out / "acceleration_real.md").write_text("\n".join(md))
    return {"results": rows, "aggregate": agg}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", choices=sorted(CONFIGS), default="quick")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "acceleration"))
    p.add_argument("--targets", nargs="*", help="override the config's meta-dataset targets")
    p.add_argument("--suites", nargs="+", choices=SUITES, help="run only these suites (default: all)")
    p.add_argument("--real", action="store_true", help="real training on one bundled dataset instead")
    p.add_argument("--real-target", default="digits")
    p.add_argument("--real-seeds", type=int, help="seeds of --real (default: the config's)")
    args = p.parse_args(argv)
    if args.real:
        t0 = time.perf_counter()
        rc = REAL_CONFIGS[args.config]
        rc = dataclasses.replace(rc, target=args.real_target, seeds=args.real_seeds or rc.seeds)
        res = run_real(rc, Path(args.out))
        print("\n".join(target_markdown(res["aggregate"], s, args.real_target) for s in ("table", "real")))
        print(f"done in {time.perf_counter() - t0:.0f} s; outputs in {args.out}")
        return 0
    cfg = CONFIGS[args.config]
    if args.targets is not None:
        cfg = dataclasses.replace(cfg, targets=tuple(args.targets))
    if args.suites:
        cfg = dataclasses.replace(cfg, suites=tuple(s for s in SUITES if s in args.suites))
    t0 = time.perf_counter()
    res = run(cfg, Path(args.out))
    print(overall_markdown(res["overall"]))
    print(f"done in {time.perf_counter() - t0:.0f} s; outputs in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
