"""The acceleration experiment's searches: each variant of each target, seed by seed.

Every search is :func:`nax.search.loop.run_search`, the driver ``nax search`` runs, on a
table evaluator; a variant's search ends (``until``) once its best completed accuracy has
reached the seed's target accuracy and it has spent the budget ``B``, or at ``cap``
epochs (the driver starts no run that would cross it).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator

import acceleration_mf as mf
import jax
import numpy as np
from acceleration_config import (
    BAKER_SETS,
    META_DATASETS,
    NB201_DATASETS,
    Config,
    RealConfig,
    baker_table,
    fit_prior,
    load_metadata,
    nb201_path,
    shared_data,
    stop_config,
)

from nax import characteristics as ch
from nax import space as space_lib
from nax import tables, train
from nax.curves.stopping import stop_rule
from nax.search import evaluators as ev_lib
from nax.search import loop, strategies, transfer


# ---------------------------------------------------------------------------- one search
@dataclasses.dataclass
class Trace:
    """One search's runs, in order: cumulative epochs and seconds after each run, and the
    best final accuracy of a completed run so far (NaN before the first)."""

    epochs: np.ndarray
    seconds: np.ndarray
    best: np.ndarray
    stopped: int
    trials: int = 0  # architectures started (a multi-fidelity trial runs as several jobs)
    full_runs: int = 0  # runs or trials trained to the end

    @classmethod
    def from_outcome(cls, outcome: loop.SearchOutcome) -> Trace:
        eps, secs, best, spent, total_s, b = [], [], [], 0, 0.0, None
        for run in outcome.runs:
            r = run.result
            spent += r.cost_epochs
            total_s += r.cost_s
            if r.status == "completed" and r.final is not None and (b is None or r.final > b):
                b = r.final
            eps.append(spent)
            secs.append(total_s)
            best.append(np.nan if b is None else b)
        stopped = sum(run.result.status == "stopped" for run in outcome.runs)
        trials = len({run.run for run in outcome.runs})
        full = sum(run.result.status == "completed" for run in outcome.runs)
        return cls(np.array(eps, float), np.array(secs, float), np.array(best, float), stopped, trials, full)

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
        return np.where(idx >= 0, self.best[np.maximum(idx, 0)], np.nan)


def search(
    strategy, evaluator, key, *, stop_rule=None, budget: float, cap: float, target: float | None = None
) -> Trace:
    """Run a search until ``cap`` epochs, or once it has spent ``budget`` and its best
    completed accuracy has reached ``target`` (nothing more is needed from it)."""

    def reached(step: loop.Step) -> bool:
        return target is not None and step.epochs >= budget and step.best is not None and step.best >= target

    outcome = loop.run_search(
        strategy,
        evaluator,
        loop.Budget(epochs=cap),
        key,
        stop_rule=stop_rule,
        until=reached,
        max_runs=len(evaluator.candidates()),
    )
    return Trace.from_outcome(outcome)


# ---------------------------------------------------------------------------- one target
def _summarise(
    target: str,
    suite: str,
    variant: str,
    seed: int,
    trace: Trace,
    target_acc: float,
    budget: float,
    cap: float,
    base: Trace,
) -> dict:
    r = trace.reach(target_acc)
    rb = base.reach(target_acc)
    row = {
        "suite": suite,
        "target": target,
        "variant": variant,
        "seed": seed,
        "budget_epochs": budget,
        "cap_epochs": cap,
        "target_accuracy": target_acc,
        "reached": r is not None,
        # censored at what was spent: a lower bound on the true epochs
        "epochs_to_target": r[0] if r else float(trace.epochs[-1]),
        "seconds_to_target": r[1] if r else float(trace.seconds[-1]),
        "accuracy_at_budget": trace.best_within(budget),
        "runs": int(len(trace.epochs)),  # jobs, for a multi-fidelity variant
        "runs_stopped": trace.stopped,
        "trials": trace.trials,
        "full_runs": trace.full_runs,
    }
    row["speedup_epochs"] = rb[0] / row["epochs_to_target"]
    row["speedup_seconds"] = rb[1] / row["seconds_to_target"]
    return row


def run_target(
    target: str,
    suite: str,
    evaluator,
    builders: dict[str, Callable],
    cfg_seeds: int,
    budget: float,
    cap: float,
    grid: np.ndarray,
    log: Callable[[str], None],
    max_seeds: dict[str, int] | None = None,
) -> tuple[list[dict], dict]:
    """All variants over all seeds on one target (``max_seeds``: fewer for some variants):
    flat rows, and best-vs-epochs curves."""
    rows, curves_by_variant = [], {v: [] for v in builders}
    for seed in range(cfg_seeds):
        key = jax.random.key(seed)
        strategy, rule = builders["baseline"]()
        base = search(strategy, evaluator, key, stop_rule=rule, budget=budget, cap=budget)
        target_acc = base.best_within(budget)
        traces = {"baseline": base}
        for v, build in builders.items():
            if v == "baseline" or seed >= (max_seeds or {}).get(v, cfg_seeds):
                continue
            t0 = time.perf_counter()
            strategy, rule = build()
            traces[v] = search(strategy, evaluator, key, stop_rule=rule, budget=budget, cap=cap, target=target_acc)
            tr = traces[v]
            log(
                f"  {target} seed {seed} {v}: {len(tr.epochs)} runs, {tr.trials} trials, {tr.full_runs} full, "
                f"{time.perf_counter() - t0:.1f} s"
            )
        for v, tr in traces.items():
            rows.append(_summarise(target, suite, v, seed, tr, target_acc, budget, cap, base))
            curves_by_variant[v].append(tr.best_at(grid))
    return rows, {v: np.array(c) for v, c in curves_by_variant.items()}


def _four_variants(cfg: Config, space, cands, model, prior, horizon: int) -> dict:
    """The meta-dataset's four variants: regularized evolution or transferred selection,
    each without or with the transferred stopping rule (fresh state per seed)."""
    rule = lambda: stop_rule(prior, horizon, stop_config(cfg))
    evo = lambda: strategies.evolution(space, cfg.population, cfg.sample, 1, cands)
    sel = lambda: transfer.strategy_from_model(model, space, candidates=cands)
    return {
        "baseline": lambda: (evo(), None),
        "selection": lambda: (sel(), None),
        "stopping": lambda: (evo(), rule()),
        "both": lambda: (sel(), rule()),
    }


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
    need_model = mf.wants(cfg, "selection", "both", "freeze_thaw", "asha_selection")
    model = ch.fit(arch_table, sources, seed=0, space=space) if need_model else None
    need_prior = mf.wants(cfg, "stopping", "both", "freeze_thaw")
    prior = fit_prior(cfg, curve_table.subset(np.isin(curve_table.datasets, sources))) if need_prior else None
    log(
        f"{target}: {len(cands)} cells, budget {budget} epochs (cap {cap:g}); models fitted on "
        f"{', '.join(sources)} in {time.perf_counter() - t0:.1f} s"
    )
    H = evaluator.max_epochs
    builders = {
        v: b
        for v, b in _four_variants(cfg, space, cands, model, prior, H).items()
        if v == "baseline" or v in cfg.variants
    }
    builders |= mf.mf_builders(cfg, space, cands, H, prior, model, stop_config(cfg))
    grid = np.linspace(0, cap, 101)
    rows, cv = run_target(
        target, "metadata", evaluator, builders, cfg.seeds, budget, cap, grid, log, mf.seed_limits(cfg)
    )
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
    builders = {
        "baseline": lambda: (strategies.evolution(space, cfg.nb201_population, cfg.nb201_sample, 1, cands), None),
        "selection": lambda: (transfer.strategy_from_model(model, space, candidates=cands), None),
    }
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
    need_prior = mf.wants(cfg, "stopping", "freeze_thaw")
    prior = fit_prior(cfg, tables.concat([t for n, t in sets.items() if n != target])) if need_prior else None
    log(
        f"baker {target}: {len(cands)} curves of {horizon} epochs, budget {budget} epochs (cap {cap:g}); "
        f"prior fitted on the other sets in {time.perf_counter() - t0:.1f} s"
    )
    every = max(1, horizon // cfg.baker_checks)
    first = max(cfg.stop_min_epochs, every)
    rule_config = stop_config(cfg, min_epochs=first, check_every=every)
    rule = lambda: stop_rule(prior, horizon, rule_config)
    rnd = lambda: strategies.random(space, batch=1, candidates=cands)
    builders = {"baseline": lambda: (rnd(), None)}
    if "stopping" in cfg.variants:
        builders["stopping"] = lambda: (rnd(), rule())
    builders |= mf.mf_builders(cfg, space, cands, horizon, prior, None, rule_config)
    grid = np.linspace(0, cap, 101)
    rows, cv = run_target(
        target, "baker", evaluator, builders, cfg.baker_seeds, budget, cap, grid, log, mf.seed_limits(cfg)
    )
    for r in rows:
        r["pool"] = len(cands)
        # the sets record no training time: the replay's wall time would time the stopping
        # rule's own inference, not training
        r["seconds_to_target"] = r["speedup_seconds"] = float("nan")
    return rows, cv, grid


# ---------------------------------------------------------------------------- suites
def run_suites(cfg: Config, log: Callable[[str], None] = print) -> Iterator[tuple[str, str, tuple, str]]:
    """Every target of ``cfg``'s suites, as each is done: ``(suite, target, (rows, curves,
    grid), title)`` (a generator, so that the outputs can be written after every target)."""
    if cfg.targets and "metadata" in cfg.suites:
        ct, at = load_metadata(cfg)
        for target in cfg.targets:
            res = metadata_target(cfg, ct, at, target, log)
            yield ("metadata", target, res, f"{target} ({res[0][0]['pool']} cells, {cfg.seeds} seeds)")
    if cfg.nb201_targets and "nb201" in cfg.suites:
        path = nb201_path(cfg)
        if not path.is_file():
            log(f"NAS-Bench-201 table {path} not found: skipping the NB201 targets")
        else:
            nb = tables.load_archs(path)
            for target in cfg.nb201_targets:
                yield (
                    (
                        "nb201",
                        target,
                        nb201_target(cfg, nb, target, log),
                        f"NAS-Bench-201 {target} ({cfg.nb201_seeds} seeds)",
                    )
                )
    if cfg.baker_targets and "baker" in cfg.suites:
        missing = [n for n in BAKER_SETS if not (shared_data() / "curves" / "baker2018" / f"{n}.csv").is_file()]
        if missing:
            log(f"Baker et al. curve sets {missing} not found under {shared_data()}: skipping the baker targets")
        else:
            sets = {n: baker_table(n) for n in BAKER_SETS}
            for target in cfg.baker_targets:
                yield (
                    (
                        "baker",
                        target,
                        baker_target(cfg, sets, target, log),
                        f"Baker et al. {target} ({cfg.baker_seeds} seeds)",
                    )
                )
    if "lcbench" in cfg.suites:
        yield from mf.lcbench_suite(cfg, log, run_target, fit_prior)


# ---------------------------------------------------------------------------- real training
class _PoolTraining(ev_lib.TrainingEvaluator):
    """Real training restricted to a pool (the architectures the table holds)."""

    def __init__(self, pool: np.ndarray, *a, **kw):
        super().__init__(*a, **kw)
        self._pool = pool

    def candidates(self) -> np.ndarray:
        return self._pool


def run_real_suites(rc: RealConfig, log: Callable[[str], None] = print):
    """Table replay and real training (``train.PRESETS["metadata"]``, the meta-dataset's
    training) of the same variants on ``rc.target``: ``(rows, {suite: curves}, grid,
    budget, pool, training config)``."""
    cfg = rc.base
    ct, at = load_metadata(cfg)
    space = space_lib.nb201
    sources = [d for d in META_DATASETS if d != rc.target]
    table_ev = ev_lib.CurveTableEvaluator(ct, rc.target, space, seconds_column="steady_s")
    cands = table_ev.candidates()
    tcfg = train.PRESETS["metadata"].replace(evaluate_test=False)
    if rc.train_limit is not None:
        tcfg = tcfg.replace(train_limit=rc.train_limit)
    real_ev = _PoolTraining(cands, rc.target, tcfg, space)
    model = ch.fit(at, sources, seed=0, space=space)
    prior = fit_prior(cfg, ct.subset(np.isin(ct.datasets, sources)))
    builders = _four_variants(cfg, space, cands, model, prior, table_ev.max_epochs)
    budget = rc.budget_runs * table_ev.max_epochs
    cap = rc.cap * budget
    grid = np.linspace(0, cap, 101)
    rows, curves_by_suite = [], {}
    for suite, evaluator in (("table", table_ev), ("real", real_ev)):
        t0 = time.perf_counter()
        r, curves_by_suite[suite] = run_target(rc.target, suite, evaluator, builders, rc.seeds, budget, cap, grid, log)
        log(f"{suite}: {time.perf_counter() - t0:.0f} s")
        for x in r:
            x["pool"] = len(cands)
        rows += r
    return rows, curves_by_suite, grid, budget, tcfg
