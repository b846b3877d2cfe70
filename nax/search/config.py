"""A search from its configuration: build the parts, run or resume it, write its outputs.

``SearchConfig`` is what ``nax search`` parses and what the journal header records;
``run(config, out)`` starts a search in ``out`` and ``resume(out)`` continues one.

Where knowledge from earlier datasets comes from: a *table* search (``evaluator="table"``)
evaluates the target by replaying its rows in the given tables and transfers from the
tables' other datasets; a *training* search (``evaluator="train"``) trains on a bundled
dataset and transfers from the tables given, by default the shipped meta-dataset
(``nax/metadata/*.csv``), leaving out the target itself.
"""

from __future__ import annotations

import csv
import dataclasses
import time
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np

from nax import space as space_lib
from nax import tables
from nax.search import evaluators as ev_lib
from nax.search import executors as ex_lib
from nax.search import journal as journal_lib
from nax.search import loop
from nax.search import report
from nax.search import strategies

STRATEGIES = ("transfer", "evolution", "random")
EVALUATORS = ("train", "table")
JOURNAL = "journal.jsonl"
METADATA_DIR = Path(__file__).resolve().parent.parent / "metadata"


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """Everything that determines a search (with the seed); units: epochs, minutes."""

    dataset: str
    strategy: str = "transfer"
    early_stop: bool = True
    #: the stopping rule learns its extrapolation noise from the target's finished runs too
    #: (``nax.curves.calibration.adapt``); False: the sources' calibration throughout
    stop_adapt: bool = True
    #: datasets to transfer from; empty = every other dataset of the tables
    transfer_from: tuple[str, ...] = ()
    #: one of the two; neither = 20 full runs' worth of epochs
    budget_epochs: float | None = None
    budget_minutes: float | None = None
    seed: int = 0
    evaluator: str = "train"
    #: curve tables (or one architecture table); empty = the shipped meta-dataset
    tables: tuple[str, ...] = ()
    #: architectures handed out at once (the executor evaluates them in parallel)
    batch: int = 1
    #: training preset of ``nax.train`` (training evaluator); "metadata" trains as the shipped
    #: meta-dataset was trained, so what transfers from it is on the same scale
    preset: str = "metadata"
    #: epochs an architecture-table run is charged (NAS-Bench-201 trains 200)
    epochs_per_run: int = 200
    population: int = 20
    sample: int = 5
    space: str = "nb201"
    executor: str = "local"

    #: fields a resumed search may change: they do not change its results
    RESUMABLE = ("executor",)

    def __post_init__(self):
        object.__setattr__(self, "transfer_from", tuple(self.transfer_from))
        object.__setattr__(self, "tables", tuple(str(t) for t in self.tables))
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; accepted: {', '.join(STRATEGIES)}")
        if self.evaluator not in EVALUATORS:
            raise ValueError(f"unknown evaluator {self.evaluator!r}; accepted: {', '.join(EVALUATORS)}")
        if self.executor not in ("local", "ray"):
            raise ValueError(f"unknown executor {self.executor!r}; accepted: local, ray")
        if self.budget_epochs is not None and self.budget_minutes is not None:
            raise ValueError("give one budget: --budget-epochs or --budget-minutes, not both")
        for name in ("budget_epochs", "budget_minutes"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise ValueError(f"{name.replace('_', '-')} must be positive, got {v}")
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1, got {self.batch}")
        if self.dataset in self.transfer_from:
            raise ValueError(f"the target dataset {self.dataset!r} cannot also be a transfer-from dataset")
        space_lib.get(self.space)
        from nax import train  # noqa: PLC0415  (flax only when a config is checked)

        if self.preset not in train.PRESETS:
            raise ValueError(f"unknown training preset {self.preset!r}; accepted: {', '.join(train.PRESETS)}")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "SearchConfig":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields
        if unknown:
            raise ValueError(f"unknown search config fields {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


# ---------------------------------------------------------------------------- tables
def _table_kind(path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"table {path} not found")
    with open(path, newline="") as fh:
        header = [h.strip() for h in next(csv.reader(fh), [])]
    if {"arch", "dataset", "accuracy"} <= set(header):
        return "arch"
    return "curve"


def table_paths(config: SearchConfig) -> list[Path]:
    """The tables of this search: given, or the shipped meta-dataset."""
    if config.tables:
        return [Path(t) for t in config.tables]
    # the curve tables (archs.csv holds the same final accuracies, derived from them)
    paths = [p for p in sorted(METADATA_DIR.glob("*.csv")) if _table_kind(p) == "curve"]
    if not paths:
        raise FileNotFoundError(f"no meta-dataset in {METADATA_DIR}; give --table CSV (a curve table or "
                                "an architecture table such as NAS-Bench-201's)")
    return paths


def load_tables(config: SearchConfig):
    """``("curve", CurveTable)`` or ``("arch", ArchTable)`` of all the search's tables."""
    paths = table_paths(config)
    kinds = {_table_kind(p) for p in paths}
    if kinds == {"arch"}:
        if len(paths) != 1:
            raise ValueError("give one architecture table (or curve tables)")
        return "arch", tables.load_archs(paths[0], space=space_lib.get(config.space))
    if kinds != {"curve"}:
        raise ValueError("tables must be all curve tables or one architecture table")
    return "curve", tables.concat([tables.load_curves(p) for p in paths])


def final_accuracies(kind: str, table, space) -> tables.ArchTable:
    """An architecture table of final accuracies (a curve table's last observed values)."""
    if kind == "arch":
        return table
    if "arch" not in table.meta:
        raise ValueError(f"curve table {table.source} has no 'arch' column: cannot transfer selection from it")
    full = table.lengths == table.lengths.max() if len(table.lengths) else np.zeros(0, bool)
    sub = table.subset(full)
    return tables.ArchTable.from_encodings(
        np.stack([space.from_string(str(a)) for a in sub.meta["arch"]]), sub.datasets, sub.final,
        space=space, source=table.source)


def _datasets(kind: str, table) -> list[str]:
    return sorted(set(map(str, table.datasets)))


def sources_of(config: SearchConfig, kind: str, table) -> list[str]:
    """The transfer-from datasets: as configured, else every table dataset but the target."""
    present = _datasets(kind, table)
    if config.transfer_from:
        missing = [d for d in config.transfer_from if d not in present]
        if missing:
            raise ValueError(f"transfer-from datasets {missing} are not in the tables; present: {', '.join(present)}")
        return list(config.transfer_from)
    return [d for d in present if d != config.dataset]


# ---------------------------------------------------------------------------- parts
@dataclasses.dataclass
class Parts:
    strategy: strategies.Strategy
    evaluator: Any
    budget: loop.Budget
    stop_rule: loop.StopRule | None
    notes: list[str]
    #: a table evaluator's number of architectures: the search ends when all have run
    max_runs: int | None = None


def build(config: SearchConfig, *, log: Callable[[str], None] = lambda s: None) -> Parts:
    """Evaluator, strategy, budget and stopping rule of ``config``."""
    space = space_lib.get(config.space)
    notes: list[str] = []
    needs_tables = config.evaluator == "table" or config.strategy == "transfer" or config.early_stop
    kind, table = load_tables(config) if needs_tables else (None, None)

    if config.evaluator == "table":
        if kind == "arch":
            evaluator = ev_lib.ArchTableEvaluator(table, config.dataset, epochs=config.epochs_per_run)
        else:
            evaluator = ev_lib.CurveTableEvaluator(table, config.dataset, space)
        candidates = evaluator.candidates()
    else:
        from nax import train

        evaluator = ev_lib.TrainingEvaluator(config.dataset, train.preset(config.preset), space)
        candidates = None

    if config.budget_epochs is None and config.budget_minutes is None:
        budget = loop.Budget(epochs=20 * evaluator.max_epochs)
    else:
        budget = loop.Budget(epochs=config.budget_epochs, minutes=config.budget_minutes)

    sources = sources_of(config, kind, table) if kind is not None else []
    if config.strategy == "random":
        strategy = strategies.random(space, batch=config.batch, candidates=candidates)
    elif config.strategy == "evolution":
        strategy = strategies.evolution(space, config.population, config.sample, config.batch, candidates)
    else:
        if not sources:
            raise ValueError("the transfer strategy needs transfer-from datasets: none in the tables")
        from nax.search import transfer

        log(f"fitting the characteristic model on {', '.join(sources)}")
        strategy = transfer.strategy(space, final_accuracies(kind, table, space), sources, seed=config.seed,
                                     batch=config.batch, candidates=candidates)

    stop_rule = None
    if config.early_stop:
        if kind != "curve":
            notes.append("early stopping off: an architecture table has no learning curves to learn from")
        else:
            from nax.search import stopping

            log(f"fitting the curve prior on {', '.join(sources)}")
            curve_sources = table.subset(np.isin(table.datasets, sources))
            stop_rule = stopping.curve_rule(curve_sources, evaluator.max_epochs, seed=config.seed,
                                            adapt=config.stop_adapt)
    max_runs = None if candidates is None else len(candidates)
    return Parts(strategy, evaluator, budget, stop_rule, notes, max_runs)


# ---------------------------------------------------------------------------- run / resume
def execute(config: SearchConfig, out: str | Path, *, resume: bool = False,
            log: Callable[[str], None] = print, on_run=None, executor=None) -> dict:
    """Run (or with ``resume``, continue) the search of ``config`` in ``out``; returns the summary.

    ``on_run(run, best_so_far, epochs_spent)`` is called after every run (default: a
    progress line); ``executor`` overrides the one ``config.executor`` names.
    """
    out = Path(out)
    path = out / JOURNAL
    replay = None
    if resume:
        head, events = journal_lib.read(path)
        journal_lib.check_header(head, config.to_dict(), config.seed, ignore=SearchConfig.RESUMABLE)
        replay = loop.replay_from(events)
    elif path.exists() and path.stat().st_size > 0:
        raise ValueError(f"{out} already holds a search; continue it with --resume {out} or choose another --out")
    parts = build(config, log=log)
    for n in parts.notes:
        log(n)
    if resume:
        journal = journal_lib.Journal.reopen(path)
        journal.append({"event": "resume", "time": time.time()})
    else:
        journal = journal_lib.Journal.create(path, config.to_dict(), config.seed)
    if on_run is None:
        max_epochs = parts.evaluator.max_epochs

        def on_run(run, best, spent):
            log(loop.progress_line(run, max_epochs, best, spent))

    executor = executor or ex_lib.get(config.executor)
    try:
        outcome = loop.run_search(parts.strategy, parts.evaluator, parts.budget, jax.random.key(config.seed),
                                  executor=executor, journal=journal, stop_rule=parts.stop_rule,
                                  replay=replay, on_run=on_run, max_runs=parts.max_runs)
    finally:
        journal.close()
    extra = {"strategy": config.strategy, "early_stop": parts.stop_rule is not None, "seed": config.seed,
             "budget_epochs": parts.budget.epochs, "budget_minutes": parts.budget.minutes, "notes": parts.notes}
    return report.write_outputs(outcome, out, extra)


def config_of(out: str | Path) -> SearchConfig:
    """The config recorded in the journal of the search in ``out``."""
    head, _ = journal_lib.read(Path(out) / JOURNAL)
    return SearchConfig.from_dict(head["config"])
