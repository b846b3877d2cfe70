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

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import jax

from nax import space as space_lib
from nax.search import evaluators as ev_lib
from nax.search import executors as ex_lib
from nax.search import journal as journal_lib
from nax.search import loop, report
from nax.search import progress as progress_lib
from nax.search.parts import MODEL_FILE, PRIOR_FILE, Parts, Setup, fit_parts
from nax.search.sources import load_tables, sources_of

__all__ = ["MODEL_FILE", "PRIOR_FILE", "Parts", "SearchConfig", "Setup", "build", "execute", "fit_parts", "prepare"]

STRATEGIES = ("transfer", "evolution", "random", "hyperband", "asha", "successive-halving", "freeze-thaw")
#: the multi-fidelity strategies: jobs that pause and resume runs (``nax.search.multifidelity``)
MULTI_FIDELITY = ("hyperband", "asha", "successive-halving", "freeze-thaw")
EVALUATORS = ("train", "table")
JOURNAL = "journal.jsonl"
CHECKPOINTS = "checkpoints"


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
    #: epochs an architecture-table run is charged (None: 200, as NAS-Bench-201 trains);
    #: the journal records the epochs a run of the search's evaluator really trains
    epochs_per_run: int | None = None
    population: int = 20
    sample: int = 5
    space: str = "nb201"
    executor: str = "local"
    #: the architecture table holds scores where lower is better (losses): the search
    #: maximises their negation, and the characteristic model ranks them reversed
    lower_is_better: bool = False
    #: multi-fidelity strategies: each rung keeps 1/eta of its trials (None: 3); a trial
    #: first trains min_epochs (None: 1), at most max_epochs (None: a full run's epochs)
    eta: float | None = None
    min_epochs: int | None = None
    max_epochs: int | None = None
    #: freeze-thaw's jobs: "delta" (each ``min_epochs`` epochs, default a quarter of a run) or
    #: "rungs" (each ends at the next rung of ``min_epochs`` (default 1) x ``eta``^k, Hyperband's)
    ft_jobs: str = "delta"
    #: ASHA with nax's transfers: "none" (the paper's ASHA, uniform proposals), "selection"
    #: (the characteristic model proposes new runs) or "both" (and a rung's promotions are
    #: ranked by the curve prior's predicted final, ``nax.search.halving_rank``)
    asha_transfer: str = "none"

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
        _check_fidelity(self)
        if self.dataset in self.transfer_from:
            raise ValueError(f"the target dataset {self.dataset!r} cannot also be a transfer-from dataset")
        space_lib.get(self.space)
        from nax import train  # noqa: PLC0415  (flax only when a config is checked)

        if self.preset not in train.PRESETS:
            raise ValueError(f"unknown training preset {self.preset!r}; accepted: {', '.join(train.PRESETS)}")

    @property
    def multi_fidelity(self) -> bool:
        return self.strategy in MULTI_FIDELITY

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> SearchConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields
        if unknown:
            raise ValueError(f"unknown search config fields {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def _check_fidelity(c: SearchConfig) -> None:
    """One-line errors for the multi-fidelity options (η ≤ 1, min above max, on a strategy without rungs)."""
    if c.ft_jobs not in ("delta", "rungs"):
        raise ValueError(f"--ft-jobs must be delta or rungs, got {c.ft_jobs!r}")
    if c.ft_jobs != "delta" and c.strategy != "freeze-thaw":
        raise ValueError(f"--ft-jobs {c.ft_jobs}: only for --strategy freeze-thaw")
    if c.asha_transfer not in ("none", "selection", "both"):
        raise ValueError(f"--asha-transfer must be none, selection or both, got {c.asha_transfer!r}")
    if c.asha_transfer != "none" and c.strategy != "asha":
        raise ValueError(f"--asha-transfer {c.asha_transfer}: only for --strategy asha")
    given = [f"--{n.replace('_', '-')}" for n in ("eta", "min_epochs", "max_epochs") if getattr(c, n) is not None]
    if not c.multi_fidelity:
        if given:
            raise ValueError(f"{', '.join(given)}: only for the strategies {', '.join(MULTI_FIDELITY)}")
        return
    if c.eta is not None and not (isinstance(c.eta, (int, float)) and c.eta > 1 and c.eta < float("inf")):
        raise ValueError(f"--eta must be a number > 1 (each rung keeps 1/eta of its trials), got {c.eta:g}")
    for n in ("min_epochs", "max_epochs"):
        v = getattr(c, n)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"--{n.replace('_', '-')} must be a positive whole number of epochs, got {v!r}")
    if c.min_epochs is not None and c.max_epochs is not None and c.min_epochs > c.max_epochs:
        raise ValueError(f"--min-epochs ({c.min_epochs}) must not exceed --max-epochs ({c.max_epochs})")


# ---------------------------------------------------------------------------- parts
def prepare(config: SearchConfig, *, strict: bool = True) -> Setup:
    """Load the tables and make the evaluator; resolve the budget and epochs per run."""
    space = space_lib.get(config.space)
    mf = config.multi_fidelity
    needs_tables = (
        config.evaluator == "table"
        or config.strategy in ("transfer", "freeze-thaw")
        or config.asha_transfer != "none"
        or (config.early_stop and not mf)
    )
    kind, table = load_tables(config) if needs_tables else (None, None)
    if config.evaluator == "table":
        if kind == "arch":
            if mf:
                raise ValueError(
                    f"--strategy {config.strategy} pauses and resumes runs: it needs learning curves, "
                    "and an architecture table has none (give curve tables)"
                )
            evaluator = ev_lib.ArchTableEvaluator(table, config.dataset, epochs=config.epochs_per_run or 200)
        else:
            evaluator = ev_lib.CurveTableEvaluator(table, config.dataset, space, epochs=config.max_epochs)
        candidates = evaluator.candidates()
    else:
        from nax import train

        cfg = train.preset(config.preset)
        if config.max_epochs is not None:
            cfg = cfg.replace(epochs=config.max_epochs)  # the schedule's horizon: a full run
        evaluator = ev_lib.TrainingEvaluator(config.dataset, cfg, space)
        candidates = None
    sources = sources_of(config, kind, table) if kind is not None else []
    config = resolve(config, evaluator, strict=strict)
    budget = loop.Budget(epochs=config.budget_epochs, minutes=config.budget_minutes)
    return Setup(config, space, kind, table, evaluator, candidates, sources, budget)


def resolve(config: SearchConfig, evaluator, *, strict: bool = True) -> SearchConfig:
    """``config`` as the journal records it: the epochs a run of ``evaluator`` trains, and
    the budget (default: 20 full runs) in the units it is counted in. ``strict``: refuse
    an ``epochs_per_run`` that is not the evaluator's (only an architecture table takes one)."""
    epochs = int(evaluator.max_epochs)
    fixed = not isinstance(evaluator, ev_lib.ArchTableEvaluator)
    if strict and fixed and config.epochs_per_run not in (None, epochs):
        raise ValueError(
            f"--epochs-per-run is for an architecture table; a run of this search trains {epochs} "
            f"epochs, not {config.epochs_per_run}"
        )
    budget = config.budget_epochs
    if budget is None and config.budget_minutes is None:
        budget = float(20 * epochs)
    fidelity = {}
    if config.multi_fidelity:
        low = config.min_epochs
        if low is None and config.strategy == "freeze-thaw" and config.ft_jobs == "delta":
            from nax.search.freeze_thaw import default_delta  # noqa: PLC0415  (its epochs per job)

            low = default_delta(epochs)
        low = 1 if low is None else low
        if low > epochs:
            raise ValueError(f"--min-epochs ({low}) exceeds the epochs of a full run ({epochs})")
        fidelity = {"eta": 3 if config.eta is None else config.eta, "min_epochs": low, "max_epochs": epochs}
    return dataclasses.replace(config, epochs_per_run=epochs, budget_epochs=budget, **fidelity)


def build(config: SearchConfig, *, log: Callable[[str], None] = lambda s: None) -> Parts:
    """Evaluator, strategy, budget and stopping rule of ``config`` (nothing saved)."""
    return fit_parts(prepare(config), log=log)


# ---------------------------------------------------------------------------- run / resume
def read_journal(out: str | Path) -> tuple[dict, list[dict]]:
    """Header and events of the search in ``out`` (read once: a torn line warns once)."""
    return journal_lib.read(Path(out) / JOURNAL)


def execute(
    config: SearchConfig | None,
    out: str | Path,
    *,
    resume: bool = False,
    journaled=None,
    log: Callable[[str], None] = print,
    quiet: bool = False,
    on_run=None,
    executor=None,
) -> dict:
    """Run (or with ``resume``, continue) the search of ``config`` in ``out``; returns the summary.

    The journal header goes first, then the transferred models are fitted and saved beside
    it (a resumed search loads them), then the runs. ``config`` None with ``resume``: as
    journaled. ``journaled``: ``read_journal(out)`` when the caller already read it.
    ``log`` takes every line shown; ``quiet``: no progress bar. ``on_run(run, best,
    epochs_spent)`` is called after every run too; ``executor`` overrides ``config.executor``.
    """
    out = Path(out)
    path = out / JOURNAL
    replay = None
    if resume:
        head, events = journaled if journaled is not None else read_journal(out)
        config = config or SearchConfig.from_dict(head["config"])
        replay = loop.replay_from(events)
    elif path.exists() and path.stat().st_size > 0:
        raise ValueError(f"{out} already holds a search; continue it with --resume {out} or choose another --out")
    setup = prepare(config, strict=not resume)
    config = setup.config
    if config.multi_fidelity and isinstance(setup.evaluator, ev_lib.TrainingEvaluator):
        # paused trials' training state, beside the journal (deleted once they cannot resume)
        setup.evaluator.checkpoints = str((out / CHECKPOINTS).absolute())
    if resume:
        # a journal from before the budget was resolved in its header resumes too
        then = resolve(SearchConfig.from_dict(head["config"]), setup.evaluator, strict=False).to_dict()
        journal_lib.check_header({**head, "config": then}, config.to_dict(), config.seed, ignore=SearchConfig.RESUMABLE)
        journal = journal_lib.Journal.reopen(path)
        journal.append({"event": "resume", "time": time.time()})
    else:
        journal = journal_lib.Journal.create(path, config.to_dict(), config.seed)
    decimals, why = report.accuracy_decimals(setup.evaluator)
    show = progress_lib.Progress(log=log, quiet=quiet, decimals=4 if decimals is None else decimals)
    try:
        parts = fit_parts(setup, out, reuse=resume, stage=show.stage, log=log)
        for n in parts.notes:
            log(n)
        executor = executor or ex_lib.get(config.executor)
        evaluator = show.watch(parts.evaluator) if isinstance(executor, ex_lib.InProcessExecutor) else parts.evaluator
        show.start(parts.budget, parts.evaluator.max_epochs, (replay.finished or replay.job_results) if replay else {})

        def each(run, best, spent):
            show.on_run(run, best, spent)
            if on_run is not None:
                on_run(run, best, spent)

        outcome = loop.run_search(
            parts.strategy,
            evaluator,
            parts.budget,
            jax.random.key(config.seed),
            executor=executor,
            journal=journal,
            stop_rule=parts.stop_rule,
            replay=replay,
            on_run=each,
            max_runs=parts.max_runs,
            workers=parts.workers,
        )
    finally:
        show.close()
        journal.close()
    score = setup.kind == "arch" and setup.table.unit == "score"
    if score:  # the runs' finals are oriented (a loss negated); report the table's own value
        best = outcome.best
        extra_score = {
            "best_accuracy": None,
            "lower_is_better": config.lower_is_better,
            "best_score": None if best is None else (-1 if config.lower_is_better else 1) * best.result.final,
        }
    extra = {
        "strategy": config.strategy,
        "early_stop": parts.stop_rule is not None,
        "seed": config.seed,
        "budget_epochs": parts.budget.epochs,
        "budget_minutes": parts.budget.minutes,
        **({k: getattr(config, k) for k in ("eta", "min_epochs", "max_epochs")} if config.multi_fidelity else {}),
        **({"ft_jobs": config.ft_jobs} if config.strategy == "freeze-thaw" else {}),
        **({"asha_transfer": config.asha_transfer} if config.asha_transfer != "none" else {}),
        "notes": parts.notes,
        "accuracy_decimals_from": why,
        **(extra_score if score else {}),
    }
    name = (
        ("negated score (lower is better)" if config.lower_is_better else "score") if score else "validation accuracy"
    )
    return report.write_outputs(outcome, out, extra, decimals=decimals, budget=parts.budget, value_name=name)


def config_of(out: str | Path) -> SearchConfig:
    """The config recorded in the journal of the search in ``out``."""
    return SearchConfig.from_dict(read_journal(out)[0]["config"])
