"""``nax search``: run, or resume, an architecture search."""

from __future__ import annotations

import argparse
import json

# the choices of nax.search.config, restated so `nax search --help` imports no library code
# (tests/test_cli_fast.py checks they match)
STRATEGIES = ("transfer", "evolution", "random", "hyperband", "asha", "successive-halving", "freeze-thaw")
EVALUATORS = ("train", "table")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "search",
        help="search architectures for a dataset, transferring from earlier datasets",
        description=(
            "Search architectures for --dataset: ask the strategy, evaluate (real training, or replaying a "
            "table with --evaluator table), stop unpromising runs early from the learning-curve prior, and "
            "journal every event to OUT/journal.jsonl; writes OUT/summary.json, curves.png and progress.png. "
            "--resume DIR continues a killed search exactly (the run in flight is redone)."
        ),
    )
    p.add_argument("--dataset", help="target dataset (a bundled dataset, or a dataset of --table)")
    p.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="transfer",
        help="transfer (default), evolution, random: whole runs; hyperband, asha, successive-halving, "
        "freeze-thaw: multi-fidelity, runs paused and resumed (--eta, --min-epochs, --max-epochs)",
    )
    p.add_argument(
        "--eta", type=float, default=None, help="multi-fidelity: each rung keeps 1/eta of its runs (default 3)"
    )
    p.add_argument(
        "--min-epochs",
        type=int,
        default=None,
        help="multi-fidelity: epochs a new run first trains (default 1); freeze-thaw: epochs per job "
        "(default a quarter of a run)",
    )
    p.add_argument(
        "--ft-jobs",
        choices=("delta", "rungs"),
        default="delta",
        help="freeze-thaw: jobs of --min-epochs each (delta, default) or ending on the rungs of "
        "--min-epochs (default 1) x --eta^k, Hyperband's and ASHA's (rungs)",
    )
    p.add_argument(
        "--asha-transfer",
        choices=("none", "selection", "both"),
        default="none",
        help="asha: new runs proposed by the characteristic model (selection), and a rung's promotions "
        "ranked by the curve prior's predicted final (both); default none, the paper's ASHA",
    )
    p.add_argument(
        "--max-epochs",
        type=int,
        default=None,
        help="multi-fidelity: epochs of a full run (default: the preset's or the table's)",
    )
    p.add_argument("--no-early-stop", dest="early_stop", action="store_false", help="train every architecture fully")
    p.add_argument(
        "--no-stop-adapt",
        dest="stop_adapt",
        action="store_false",
        help="early stopping keeps the sources' extrapolation noise instead of learning it "
        "from this search's finished runs too",
    )
    p.add_argument(
        "--transfer-from",
        nargs="+",
        default=[],
        metavar="NAME",
        help="earlier datasets to transfer from (default: every other dataset of the tables)",
    )
    b = p.add_mutually_exclusive_group()
    b.add_argument(
        "--budget-epochs",
        type=float,
        help="epochs to spend (default: 20 full runs); the journal header records the budget the search counts against",
    )
    b.add_argument("--budget-minutes", type=float, help="minutes of training to spend")
    p.add_argument(
        "--executor",
        choices=("local", "ray"),
        default=None,
        help="where runs execute (default local; ray: a local or RAY_ADDRESS cluster)",
    )
    p.add_argument(
        "--gpus-per-run",
        type=float,
        default=0.0,
        help="ray: GPUs each run claims (1 on a cluster of GPU machines: one training per GPU)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="output directory (default: search-DATASET-STRATEGY-sSEED)")
    p.add_argument("--resume", metavar="DIR", help="continue the search journaled in DIR")
    p.add_argument(
        "--evaluator", choices=EVALUATORS, default="train", help="train for real (default) or replay --table"
    )
    p.add_argument(
        "--table",
        nargs="+",
        default=[],
        metavar="CSV",
        help="curve tables or one architecture table (default: the shipped meta-dataset)",
    )
    p.add_argument(
        "--batch", type=int, default=1, help="architectures evaluated at once (multi-fidelity: jobs in flight)"
    )
    p.add_argument(
        "--preset",
        default="metadata",
        help="training preset of nax train (default metadata: as the shipped meta-dataset was trained)",
    )
    p.add_argument(
        "--epochs-per-run",
        type=int,
        default=None,
        help="epochs an architecture-table run is charged (default 200, NAS-Bench-201); other "
        "searches charge what a run trains, and the journal header records it",
    )
    p.add_argument(
        "--lower-is-better",
        action="store_true",
        help="the architecture table holds scores where lower is better (a loss): the search "
        "minimises them and the characteristic model ranks them reversed",
    )
    p.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bar: one plain line per run (for logs); the bar is off anyway when stderr is not a terminal",
    )
    p.add_argument("--population", type=int, default=20, help="evolution: population size")
    p.add_argument("--sample", type=int, default=5, help="evolution: tournament size")
    p.set_defaults(func=main)


def _config(args):
    from nax.search import config as config_lib

    return config_lib.SearchConfig(
        dataset=args.dataset,
        strategy=args.strategy,
        early_stop=args.early_stop,
        stop_adapt=args.stop_adapt,
        transfer_from=tuple(args.transfer_from),
        budget_epochs=args.budget_epochs,
        budget_minutes=args.budget_minutes,
        seed=args.seed,
        evaluator=args.evaluator,
        tables=tuple(args.table),
        batch=args.batch,
        preset=args.preset,
        epochs_per_run=args.epochs_per_run,
        population=args.population,
        sample=args.sample,
        executor=args.executor or "local",
        lower_is_better=args.lower_is_better,
        eta=args.eta,
        min_epochs=args.min_epochs,
        max_epochs=args.max_epochs,
        ft_jobs=args.ft_jobs,
        asha_transfer=args.asha_transfer,
    )


def main(args: argparse.Namespace) -> int:
    from nax.search import config as config_lib

    journaled = None
    if args.resume:
        out = args.resume
        if args.out and args.out != args.resume:
            raise ValueError("--resume DIR continues the search in DIR; do not give a different --out")
        journaled = config_lib.read_journal(out)  # once: a torn last line is reported once
        if args.dataset is None:
            # config as journaled; only the executor may change
            cfg = config_lib.SearchConfig.from_dict(journaled[0]["config"])
            if args.executor:
                cfg = config_lib.SearchConfig.from_dict({**cfg.to_dict(), "executor": args.executor})
        else:
            cfg = _config(args)
    else:
        if args.dataset is None:
            raise ValueError("--dataset is required (or --resume DIR)")
        cfg = _config(args)
        out = args.out or f"search-{cfg.dataset}-{cfg.strategy}-s{cfg.seed}"
    executor = None
    if cfg.executor == "ray":
        from nax.search.executors import RayExecutor

        executor = RayExecutor(num_gpus=args.gpus_per_run)
    summary = config_lib.execute(
        cfg, out, resume=bool(args.resume), journaled=journaled, executor=executor, quiet=args.quiet
    )
    print(
        json.dumps(
            {k: summary[k] for k in ("best_arch", "best_accuracy", "epochs_spent", "epochs_saved_by_stopping", "runs")}
        )
    )
    print(f"wrote {out}/journal.jsonl, summary.json, curves.png, progress.png")
    return 0
