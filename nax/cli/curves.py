"""``nax curves benchmark``, ``early-stop`` and ``speed`` (contracts in docs/design.md).

Each prints its results as tables (stdout; progress goes to stderr) and writes the full
record, with provenance, to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train", nargs="+", default=None, metavar="CSV", help="source curve tables")
    p.add_argument(
        "--test",
        nargs="+",
        default=None,
        metavar="CSV",
        help="target curve tables (left out of their own prior)",
    )
    p.add_argument(
        "--family",
        action="append",
        default=None,
        metavar="NAME=PATHS[:OPTS]",
        help="a curve family instead of --train/--test (repeatable): NAME=PATH[,PATH...] with options "
        "after ':' - prefix=P, column=C (dataset column; 'column=' for one dataset per file), minimize; "
        "e.g. meta_loss=a.csv,b.csv:prefix=train_loss_,minimize",
    )
    p.add_argument(
        "--protocol",
        nargs="+",
        choices=["cross-family", "loo"],
        default=["cross-family", "loo"],
        help="with --family: each family the target of the others, and/or leave one dataset out inside each",
    )
    p.add_argument(
        "--mixed-directions",
        action="store_true",
        help="with --family: allow sources of another direction (accuracy vs loss) than the target's",
    )
    p.add_argument(
        "--targets",
        nargs="+",
        default=None,
        metavar="FAMILY",
        help="with --family: only these families as targets (the others stay sources)",
    )
    p.add_argument(
        "--max-targets",
        type=int,
        default=None,
        help="with --family: a seeded subset of each family's datasets as targets",
    )
    p.add_argument("--prefix", default="acc_", help="prefix of the per-epoch value columns")
    p.add_argument(
        "--dataset-column",
        default="training_dataset",
        help="column naming each run's dataset",
    )
    p.add_argument("--minimize", action="store_true", help="values are losses (lower is better)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--max-curves",
        type=int,
        default=None,
        help="seeded subsample of each test dataset",
    )
    p.add_argument(
        "--max-train-curves",
        type=int,
        default=300,
        help="seeded subsample per source dataset for the prior",
    )
    p.add_argument("--prior-steps", type=int, default=2000, help="SVI steps of the prior fit")
    p.add_argument(
        "--no-calibration",
        dest="calibrate",
        action="store_false",
        help="priors without the extrapolation-noise calibration (version-1 behaviour)",
    )
    p.add_argument(
        "--prior-cache",
        type=Path,
        default=None,
        metavar="DIR",
        help="save fitted priors here and reuse them when sources and settings match",
    )
    p.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="OUT",
        help="also write the full record {'results', 'priors', 'meta'} here as JSON",
    )


def register(subparsers) -> None:
    cmd = subparsers.add_parser("curves", help="learning-curve extrapolation benchmarks")
    sub = cmd.add_subparsers(dest="curves_command", required=True, metavar="SUBCOMMAND")
    b = sub.add_parser(
        "benchmark",
        help="MAE / LPD / 90%% coverage of final-value predictions per cutoff",
    )
    _common(b)
    b.add_argument("--cutoffs", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.5])
    b.add_argument("--steps", type=int, default=1000, help="SVI steps per prediction")
    b.add_argument(
        "--nuts-curves",
        type=int,
        default=0,
        help="also run NUTS on this many curves per test dataset",
    )
    b.add_argument(
        "--finished",
        type=int,
        nargs="+",
        default=[],
        metavar="K",
        help="also transfer_finished{K}: K (seeded) runs of the target finished, as a search "
        "K runs in would have them (context + calibration adapted to them), scored on the rest",
    )
    b.set_defaults(func=_benchmark, max_curves=None)
    e = sub.add_parser("early-stop", help="epochs saved and regret of the early-termination rule")
    _common(e)
    e.add_argument(
        "--threshold",
        type=float,
        nargs="+",
        default=[0.05],
        help="delta of P(final > best) < delta",
    )
    e.add_argument("--repeats", type=int, default=10, help="random replay orders")
    e.add_argument(
        "--min-fraction",
        type=float,
        default=0.1,
        help="never stop before this fraction of the epochs",
    )
    e.add_argument(
        "--check-every",
        type=int,
        default=None,
        help="epochs between checks (default: ~12 checks per run)",
    )
    e.add_argument("--steps", type=int, default=800, help="SVI steps per prediction")
    e.add_argument(
        "--no-adapt",
        dest="adapt",
        action="store_false",
        help="leave out transfer_adaptive (calibration learned from the target's finished runs)",
    )
    e.set_defaults(func=_early_stop)
    e.set_defaults(max_curves=300)
    s = sub.add_parser("speed", help="seconds to extrapolate many partial curves (SVI, NUTS)")
    s.add_argument("--train", nargs="+", required=True, metavar="CSV", help="source curve tables")
    s.add_argument("--test", required=True, metavar="CSV", help="the target curve table (one dataset)")
    s.add_argument("--prefix", default="acc_", help="prefix of the per-epoch value columns")
    s.add_argument("--dataset-column", default="training_dataset", help="column naming each run's dataset")
    s.add_argument("--cutoff", type=float, default=0.2, help="fraction of the epochs observed")
    s.add_argument("--curves", type=int, default=1000, help="curves predicted in one SVI call")
    s.add_argument("--nuts-curves", type=int, nargs="*", default=[1, 8], help="NUTS batch sizes")
    s.add_argument("--max-train-curves", type=int, default=100, help="seeded subsample per source dataset")
    s.add_argument("--prior-steps", type=int, default=1000, help="SVI steps of the prior fit")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write the record here")
    s.set_defaults(func=_speed)


def _check_inputs(args) -> None:
    if args.family:
        if args.train or args.test:
            raise ValueError("give either --family (repeatable) or --train and --test, not both")
        if args.minimize or args.prefix != "acc_" or args.dataset_column != "training_dataset":
            raise ValueError("with --family, give prefix / column / minimize per family (NAME=PATHS:prefix=P,...)")
        from nax.curves.bench.families import parse_family

        args.families = [parse_family(spec) for spec in args.family]
        unknown = set(args.targets or ()) - {f.name for f in args.families}
        if unknown:
            raise ValueError(f"--targets names no --family: {', '.join(sorted(unknown))}")
    elif not args.train or not args.test:
        raise ValueError("give --train and --test curve tables, or --family NAME=PATHS (repeatable)")
    for path in list(args.train or []) + list(args.test or []):
        if not Path(path).exists():
            raise FileNotFoundError(f"no such curve table: {path}")
    for k in getattr(args, "finished", []):
        if k < 1:
            raise ValueError(f"--finished counts finished runs of the target, at least 1, got {k}")
    for c in getattr(args, "cutoffs", []):
        if not 0 < c < 1:
            raise ValueError(f"cutoffs are fractions of the epochs in (0, 1), got {c}")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _write(out: dict, path: Path | None) -> None:
    from nax import jsonio

    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(jsonio.dumps(out, indent=1))
        _log(f"wrote {path}")


def _inference(args):
    from nax.curves.fitting import PRIOR_INFERENCE
    from nax.curves.inference import InferenceConfig

    return InferenceConfig(num_steps=args.steps), PRIOR_INFERENCE.replace(num_steps=args.prior_steps)


def _load(args) -> dict:
    return {"prefix": args.prefix, "dataset_column": args.dataset_column, "minimize": args.minimize}


def _data(args) -> tuple[tuple, dict]:
    """The data a benchmark runs on, as its entry's leading arguments: families' folds
    (``--family``) or the ``--train`` / ``--test`` pools."""
    if args.family:
        return (args.families,), {
            "protocols": args.protocol,
            "mixed_directions": args.mixed_directions,
            "max_targets": args.max_targets,
            "target_families": args.targets,
        }
    return (args.train, args.test), _load(args)


def _shared(args) -> dict:
    inference, prior_inference = _inference(args)
    return {
        "max_curves": args.max_curves,
        "max_train_curves": args.max_train_curves,
        "inference": inference,
        "prior_inference": prior_inference,
        "calibrate": args.calibrate,
        "prior_cache": args.prior_cache,
        "seed": args.seed,
        "log": _log,
    }


def _benchmark(args) -> int:
    from nax.curves.bench.extrapolation import extrapolation_benchmark, family_benchmark
    from nax.curves.bench.report import extrapolation_tables

    _check_inputs(args)
    positional, data = _data(args)
    data.update(finished=args.finished)
    if args.family and args.nuts_curves:
        raise ValueError("--nuts-curves runs with --train/--test only, not with --family")
    if not args.family:  # only the pools' benchmark runs NUTS
        data.update(nuts_curves=args.nuts_curves)
    entry = family_benchmark if args.family else extrapolation_benchmark
    out = entry(*positional, cutoffs=args.cutoffs, **data, **_shared(args))
    print(extrapolation_tables(out["results"], out["skipped"]))
    _write(out, args.json)
    return 0


def _early_stop(args) -> int:
    from nax.curves.bench.early_stop import early_stop_benchmark, family_early_stop
    from nax.curves.bench.report import early_stop_tables

    _check_inputs(args)
    for t in args.threshold:
        if not 0 < t < 1:
            raise ValueError(f"--threshold is a probability in (0, 1), got {t}")
    positional, data = _data(args)
    entry = family_early_stop if args.family else early_stop_benchmark
    out = entry(
        *positional,
        thresholds=args.threshold,
        repeats=args.repeats,
        min_fraction=args.min_fraction,
        check_every=args.check_every,
        adapt=args.adapt,
        **data,
        **_shared(args),
    )
    print(early_stop_tables(out["results"]))
    _write(out, args.json)
    return 0


def _speed(args) -> int:
    from nax import tables
    from nax.curves.bench import speed_benchmark
    from nax.curves.bench.common import load_datasets, meta, require_sources
    from nax.curves.fitting import PRIOR_INFERENCE, fit_prior

    for path in [*args.train, args.test]:
        if not Path(path).exists():
            raise FileNotFoundError(f"no such curve table: {path}")
    load = {"prefix": args.prefix, "dataset_column": args.dataset_column}
    train, test = load_datasets(args.train, **load), load_datasets([args.test], **load)
    if len(test) != 1:
        raise ValueError(f"--test holds {len(test)} datasets; speed takes one")
    require_sources(train, test)
    ((target, table),) = test.items()
    sources = [t for n, t in sorted(train.items()) if n != target]
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"}
    record = meta("nax curves speed", {**config, "target": target, "sources": sorted(n for n in train if n != target)})
    prior = fit_prior(
        tables.concat(sources),
        inference=PRIOR_INFERENCE.replace(num_steps=args.prior_steps),
        max_curves=args.max_train_curves,
        seed=args.seed,
    )
    out = speed_benchmark(
        prior,
        table,
        cutoff=args.cutoff,
        n_curves=args.curves,
        nuts_curves=tuple(args.nuts_curves),
        seed=args.seed,
        log=_log,
    )
    out["meta"] = record
    rows = [
        f"{r['inference']:>5} {r['call']:>5} {r['n_curves']:5d} curves  {r['seconds']:7.2f} s  ok {r['ok']}"
        for r in out["results"]
    ]
    print("\n".join(["inference call  curves  seconds", *rows]))
    if args.json is not None and args.json.exists():
        # the file also holds the batched rows of python -m nax.curves.bench.speed: keep them
        kept = json.loads(args.json.read_text())
        out = {**{k: v for k, v in kept.items() if k not in out}, **out}
    _write(out, args.json)
    return 0
