"""The paper's claim, measured: how much sooner does a search reach a given accuracy when
it transfers architecture selection, early termination, or both, from earlier datasets?

For each target (each dataset of the project's meta-dataset in turn; the other datasets
are the earlier ones) four variants search the target's recorded curves with the table
evaluator (``nax.search.evaluators.CurveTableEvaluator``, one epoch charged per replayed
epoch, seconds charged at the row's steady per-epoch time, see ``with_steady_seconds``):

- ``baseline``  regularized evolution, every run trained to the end;
- ``selection`` the transfer strategy (characteristic model fitted on the other datasets);
- ``stopping``  regularized evolution + the curve-model stopping rule
  (``nax.curves.stopping.stop_rule``, prior fitted on the other datasets' curves);
- ``both``      the transfer strategy + the stopping rule.

The characteristic model and the curve prior are fitted once per target and reused by
every seed. For each seed the baseline runs first with the budget ``B`` (a fraction of
the epochs needed to train the whole pool); its best final accuracy within ``B`` is that
seed's *target accuracy*. Every variant, with the same seed, then runs until its best
completed run reaches the target accuracy and it has spent ``B``, or until ``cap * B``
(no run starts that would cross it). Every search is ``nax.search.loop.run_search``.
Measured per seed: epochs (and seconds) spent when the target accuracy is first reached,
and the best accuracy reached within ``B``. NAS-Bench-201 (final accuracies only) compares
``baseline`` and ``selection`` the same way.

    python experiments/acceleration.py --config quick
    python experiments/acceleration.py --config full
    python experiments/acceleration.py --real --config full   # real training on digits, small budget

The code: ``acceleration_config.py`` (configurations, data), ``acceleration_run.py`` (the
searches), ``acceleration_report.py`` (aggregates, tables, figures, JSON); this file runs them.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # the sibling modules, also when this file is loaded by path (the tests do)
    sys.path.insert(0, _HERE)

import acceleration_report as report  # noqa: E402
import acceleration_run as runs  # noqa: E402
from acceleration_config import (  # noqa: E402
    CONFIGS,
    META_DATASETS,
    REAL_CONFIGS,
    REPO,
    SUITES,
    VARIANTS,
    Config,
    RealConfig,
    provenance,
)

__all__ = ["CONFIGS", "META_DATASETS", "REAL_CONFIGS", "SUITES", "VARIANTS", "main", "run", "run_real"]


def run(cfg: Config, out: Path, log: Callable[[str], None] = print) -> dict:
    """The whole experiment of ``cfg``; writes JSON, markdown and one PNG per target to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    prov = provenance()  # the code as it is when the run starts, not when it ends
    rows, plots = [], {}
    for suite, target, (r, cv, grid), title in runs.run_suites(cfg, log):
        rows.extend(r)
        plots[(suite, target)] = p = f"{cfg.stem}_{suite}_{target}.png"
        report.plot_target(cv, grid, r[0]["budget_epochs"], title, out / p)
        # the outputs so far after every target: a long run stopped early leaves what it finished
        agg = report.aggregate(rows)
        payload = report.write_outputs(out, cfg, rows, agg, report.overall(agg), plots, prov)
    if not rows:
        raise FileNotFoundError(
            f"no target of the suites {', '.join(cfg.suites)} ran: their data were not found (the lines above say "
            "which; NAX_SHARED_DATA points at a copy of ../shared/data)"
        )
    return {k: payload[k] for k in ("results", "aggregate", "overall")}


def merge(cfg: Config, parts: Sequence[Path], out: Path) -> dict:
    """One output from runs of ``cfg`` over disjoint targets (run as parallel processes on a
    shared machine) or over disjoint variants of the same targets with the same baseline:
    their per-seed rows joined, every aggregate recomputed from them, the figures copied (a
    target's from the first part that ran it); the provenance is the first part's, every
    part's command is kept."""
    import json
    import shutil

    out.mkdir(parents=True, exist_ok=True)
    rows, plots, commands = [], {}, []
    row_key = lambda r: (r["suite"], r["target"], r["variant"], r["seed"])
    for d in parts_dirs(cfg, parts):
        payload = json.loads(d.read_text())
        # a part that is itself a merge contributes its parts' commands
        commands += payload.get("parts") or [
            {k: payload.get(k) for k in ("command", "git_commit", "git_dirty", "time_utc")}
        ]
        had = {(r["suite"], r["target"]) for r in rows}
        seen = {row_key(r): r for r in rows}
        # JSON writes NaN as null: back to NaN for the aggregates; a part may add variants to
        # a target another part ran (the first part's row wins where both have one), but only
        # with the same target accuracy (the same baseline), or its speed-ups mean nothing
        new = []
        for r in payload["results"]:
            r = {k: float("nan") if v is None else v for k, v in r.items()}
            old = seen.get(row_key(r))
            if old is None:
                new.append(r)
            elif old["target_accuracy"] != r["target_accuracy"]:
                raise ValueError(f"{d} and an earlier part disagree on the baseline of {row_key(r)}")
        rows += new
        for suite, target in sorted({(r["suite"], r["target"]) for r in new} - had):
            png = f"{cfg.stem}_{suite}_{target}.png"
            if (d.parent / png).is_file():
                if d.parent.resolve() != out.resolve():
                    shutil.copy(d.parent / png, out / png)
                plots[(suite, target)] = png
    first = json.loads(parts_dirs(cfg, parts)[0].read_text())
    prov = {k: v for k, v in first.items() if k not in NOT_PROVENANCE}
    prov["parts"] = commands
    agg = report.aggregate(rows)
    payload = report.write_outputs(out, cfg, rows, agg, report.overall(agg), plots, prov)
    return {k: payload[k] for k in ("results", "aggregate", "overall")}


#: what a part's JSON holds besides its provenance
NOT_PROVENANCE = (
    "config",
    "command",
    "seeds",
    "results",
    "aggregate",
    "overall",
    *(f"{v}_vs_multifidelity" for v in report.VERSUS),
)


def parts_dirs(cfg: Config, parts: Sequence[Path]) -> list[Path]:
    found = [d / f"{cfg.stem}.json" for d in parts]
    missing = [str(f) for f in found if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"no {cfg.stem}.json in {', '.join(missing)}")
    return found


def run_real(rc: RealConfig, out: Path, log: Callable[[str], None] = print) -> dict:
    """Table replay and real training of the same variants on ``rc.target``, side by side."""
    out.mkdir(parents=True, exist_ok=True)
    prov = provenance()  # the code as it is when the run starts
    rows, curves_by_suite, grid, budget, tcfg = runs.run_real_suites(rc, log)
    plots = {}
    for suite, cv in curves_by_suite.items():
        plots[(suite, rc.target)] = p = f"acceleration_real_{rc.target}_{suite}.png"
        report.plot_target(cv, grid, budget, f"{rc.target}, {suite} ({rc.seeds} seed{'s' * (rc.seeds > 1)})", out / p)
    payload = report.write_real_outputs(out, rc, tcfg.to_dict(), rows, report.aggregate(rows), plots, prov)
    return {k: payload[k] for k in ("results", "aggregate")}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", choices=sorted(CONFIGS), default="quick")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "acceleration"))
    p.add_argument("--targets", nargs="*", help="override the config's meta-dataset targets")
    p.add_argument("--suites", nargs="+", choices=SUITES, help="run only these suites (default: all)")
    p.add_argument(
        "--ft-seeds", type=int, help="at most this many seeds of freeze_thaw per target (default: the config's)"
    )
    p.add_argument("--variants", nargs="+", choices=VARIANTS, help="run only these variants (the baseline always runs)")
    p.add_argument("--lcbench-targets", nargs="*", help="override the config's LCBench tasks")
    p.add_argument("--baker-targets", nargs="*", help="override the config's Baker et al. sets")
    p.add_argument(
        "--merge",
        nargs="+",
        metavar="DIR",
        help="combine the outputs of runs of this config over disjoint targets (in these folders) into --out",
    )
    p.add_argument("--real", action="store_true", help="real training on one bundled dataset instead")
    p.add_argument("--real-target", default="digits")
    p.add_argument("--real-seeds", type=int, help="seeds of --real (default: the config's)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    if args.real:
        rc = REAL_CONFIGS[args.config]
        rc = dataclasses.replace(rc, target=args.real_target, seeds=args.real_seeds or rc.seeds)
        res = run_real(rc, Path(args.out))
        print("\n".join(report.target_markdown(res["aggregate"], s, args.real_target) for s in ("table", "real")))
    else:
        cfg = CONFIGS[args.config]
        if args.targets is not None:
            cfg = dataclasses.replace(cfg, targets=tuple(args.targets))
        if args.suites:
            cfg = dataclasses.replace(cfg, suites=tuple(s for s in SUITES if s in args.suites))
        if args.ft_seeds is not None:
            cfg = dataclasses.replace(cfg, ft_seeds=args.ft_seeds)
        if args.variants:
            cfg = dataclasses.replace(cfg, variants=tuple(v for v in VARIANTS if v in {"baseline", *args.variants}))
        for name in ("lcbench_targets", "baker_targets"):
            if getattr(args, name) is not None:
                cfg = dataclasses.replace(cfg, **{name: tuple(getattr(args, name))})
        if args.merge:
            res = merge(cfg, [Path(d) for d in args.merge], Path(args.out))
            print(report.overall_markdown(res["overall"]))
            print(f"merged {len(args.merge)} runs; outputs in {args.out}")
            return 0
        res = run(cfg, Path(args.out))
        print(report.overall_markdown(res["overall"]))
    print(f"done in {time.perf_counter() - t0:.0f} s; outputs in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
