"""``nax select``: transferred architecture selection (benchmark, fit, strengths)."""

from __future__ import annotations

import sys
from pathlib import Path

#: restated from nax.search.select_benchmark.METHODS (checked by a test): no library import for --help
_METHODS = (
    "characteristics",
    "target_only",
    "ridge_onehot",
    "ridge_pairwise",
    "ridge_characteristics",
    "gbm",
    "random",
    "evolution",
)
_LOWER = "the table's values are losses (any finite real; the best is the lowest): ranked reversed"


def register(subparsers) -> None:
    cmd = subparsers.add_parser("select", help="transferred architecture selection (characteristic model)")
    sub = cmd.add_subparsers(dest="select_command", required=True, metavar="SUBCOMMAND")
    b = sub.add_parser("benchmark", help="leave-one-dataset-out ranking and simulated-search benchmark")
    b.add_argument("--table", required=True, metavar="CSV", help="architecture table (arch,dataset,accuracy[,seed])")
    b.add_argument(
        "--source",
        nargs="+",
        required=True,
        metavar="NAME",
        help="source datasets (a target is left out of its own sources)",
    )
    b.add_argument("--target", nargs="+", required=True, metavar="NAME", help="target datasets")
    b.add_argument("--samples-per-source", type=int, nargs="+", default=[50, 200, 1000], metavar="N")
    b.add_argument("--target-evals", type=int, nargs="+", default=[0, 10, 30], metavar="K")
    b.add_argument("--repeats", type=int, default=5, help="seeded repeats of each setting")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--search-steps", type=int, default=300, help="cap on proposals of a simulated search")
    b.add_argument("--dissimilar", action="store_true", help="add the synthetic dissimilar target (all sources)")
    b.add_argument(
        "--figure", type=Path, default=None, metavar="PNG", help="strengths figure of the first target's model"
    )
    b.add_argument("--timings", action="store_true", help="also time fit (all sources x 1000), scoring and updates")
    b.add_argument("--markdown", action="store_true", help="print the tables as markdown")
    b.add_argument("--lower-is-better", action="store_true", help=_LOWER)
    b.add_argument(
        "--methods",
        nargs="+",
        choices=_METHODS,
        default=_METHODS,
        metavar="METHOD",
        help="run only these methods (each has its own seeds: their rows equal the full run's); default all",
    )
    b.add_argument("--json", type=Path, default=None, metavar="OUT", help="write {'results': [...]} here")
    b.set_defaults(func=_benchmark)

    f = sub.add_parser("fit", help="fit the characteristic model on source datasets and save it (.npz)")
    f.add_argument("--table", required=True, metavar="CSV")
    f.add_argument("--source", nargs="+", required=True, metavar="NAME")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--out", type=Path, required=True, metavar="NPZ")
    f.add_argument("--lower-is-better", action="store_true", help=_LOWER)
    f.set_defaults(func=_fit)

    s = sub.add_parser("strengths", help="print the strongest and weakest characteristics of a saved model")
    s.add_argument("model", type=Path, metavar="NPZ")
    s.add_argument("--top", type=int, default=15)
    s.set_defaults(func=_strengths)


def _check(args) -> None:
    if not Path(args.table).is_file():
        raise FileNotFoundError(f"no such architecture table: {args.table}")
    for n in getattr(args, "samples_per_source", []):
        if n < 10:
            raise ValueError(f"--samples-per-source must be at least 10, got {n}")
    for k in getattr(args, "target_evals", []):
        if k < 0:
            raise ValueError(f"--target-evals must be >= 0, got {k}")
    if getattr(args, "repeats", 1) < 1:
        raise ValueError("--repeats must be at least 1")


def _benchmark(args) -> int:
    from nax.search import select_benchmark as benchmark

    _check(args)
    cfg = benchmark.BenchConfig(
        table=str(args.table),
        sources=tuple(args.source),
        targets=tuple(args.target),
        samples_per_source=tuple(args.samples_per_source),
        target_evals=tuple(args.target_evals),
        repeats=args.repeats,
        seed=args.seed,
        search_steps=args.search_steps,
        dissimilar=args.dissimilar,
        figure=str(args.figure) if args.figure else None,
        lower_is_better=args.lower_is_better,
        methods=tuple(args.methods),
    )
    out = benchmark.run(cfg)
    if args.timings:
        out["timings"] = benchmark.timings(
            str(args.table), list(args.source), seed=args.seed, lower_is_better=args.lower_is_better
        )
    print(benchmark.format_table(out["results"], markdown=args.markdown))
    if args.timings:
        print("\n## timings (s)\n" + "\n".join(f"{k:34s} {v:.3f}" for k, v in out["timings"].items()))
    if args.json:
        benchmark.write_json(out, str(args.json))
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def _fit(args) -> int:
    from nax import tables
    from nax.characteristics import model

    _check(args)
    table = tables.load_archs(args.table, aggregate="mean", lower_is_better=args.lower_is_better)
    m = model.fit(table, args.source, seed=args.seed)
    m.save(str(args.out))
    print(f"wrote {args.out} ({len(m.names)} characteristics, sources {', '.join(m.sources)})", file=sys.stderr)
    return 0


def _strengths(args) -> int:
    from nax.characteristics import model

    if not args.model.is_file():
        raise FileNotFoundError(f"no such model file: {args.model}")
    df = model.strengths(model.CharacteristicModel.load(str(args.model)))
    cols = ["name", "mean", "sd", "p_positive"]
    print("strongest\n" + df.head(args.top)[cols].to_string(index=False))
    print("\nweakest\n" + df.tail(args.top)[cols].to_string(index=False))
    return 0
