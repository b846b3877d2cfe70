"""The parts of a search, fitted: strategy, stopping rule and what the loop needs besides.

:func:`fit_parts` turns a prepared :class:`Setup` (tables, evaluator, budget; from
``nax.search.config.prepare``) into :class:`Parts`, fitting the transferred models (the
characteristic model, the curve prior) or loading the copies an earlier start of the same
search saved beside its journal.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from nax import space as space_lib
from nax.search import loop, strategies
from nax.search import progress as progress_lib
from nax.search.sources import final_accuracies


@dataclasses.dataclass
class Setup:
    """What a search needs before anything is fitted (seconds): tables, evaluator, budget."""

    config: Any  # the resolved nax.search.config.SearchConfig: the real budget and epochs per run
    space: space_lib.CellSpace
    kind: str | None
    table: Any
    evaluator: Any
    candidates: np.ndarray | None
    sources: list[str]
    budget: loop.Budget


@dataclasses.dataclass
class Parts:
    strategy: strategies.Strategy
    evaluator: Any
    budget: loop.Budget
    stop_rule: loop.StopRule | None
    notes: list[str]
    #: a table evaluator's number of architectures: the search ends when all have run
    max_runs: int | None = None
    #: jobs in flight at once (multi-fidelity strategies: ``--batch``)
    workers: int = 1


MODEL_FILE = "characteristic_model.npz"
PRIOR_FILE = "curve_prior.json"


def _fitted(path: Path | None, what: str, fit, save, load, reuse: bool, stage, log):
    """Fit (or with ``reuse``, load from ``path``) and save atomically; the search uses the
    saved copy, so a fresh and a resumed search run from the same numbers."""
    if reuse and path is not None and path.is_file():
        log(f"loaded {what} (saved by an earlier start in {path})")
        return load(path)
    with stage(f"fitting {what}"):
        obj = fit()
    if path is None:
        return obj
    tmp = path.with_name(path.name + ".part")
    save(obj, tmp)
    os.replace(tmp, path)  # a kill while saving leaves no half-written file to be loaded
    return load(path)


def fit_parts(
    setup: Setup,
    out: Path | None = None,
    *,
    reuse: bool = False,
    stage=None,
    log: Callable[[str], None] = lambda s: None,
) -> Parts:
    """Strategy and stopping rule of ``setup``: the transferred models are fitted, or with
    ``reuse`` loaded from ``out`` where an earlier start of this search saved them.
    ``stage(what)``: a context manager around each fit (default: ``log`` a line first)."""
    stage = stage or progress_lib.Progress(log, quiet=True).stage
    config, space, kind, table, sources = setup.config, setup.space, setup.kind, setup.table, setup.sources
    notes: list[str] = []
    max_runs = None if setup.candidates is None else len(setup.candidates)

    def model():
        from nax import characteristics as ch

        return _fitted(
            out and out / MODEL_FILE,
            f"the characteristic model on {', '.join(sources)}",
            lambda: ch.fit(final_accuracies(kind, table, space), list(sources), seed=config.seed, space=space),
            lambda m, p: m.save(str(p)),
            lambda p: ch.CharacteristicModel.load(str(p)),
            reuse,
            stage,
            log,
        )

    def prior():
        from nax import curves

        curve_sources = table.subset(np.isin(table.datasets, sources))
        return _fitted(
            out and out / PRIOR_FILE,
            f"the curve prior on {', '.join(sources)}",
            lambda: curves.fit_prior(curve_sources, seed=config.seed, max_curves=200),
            lambda pr, p: pr.save(p),
            curves.CurvePrior.load,
            reuse,
            stage,
            log,
        )

    if config.multi_fidelity:
        from nax.search import fidelity

        strategy = fidelity.strategy(config, space, setup.candidates, kind, sources, model, prior)
        if config.early_stop:
            notes.append(f"early stopping off: {config.strategy} itself decides which runs continue")
        return Parts(strategy, setup.evaluator, setup.budget, None, notes, max_runs, workers=config.batch)
    if config.strategy == "random":
        strategy = strategies.random(space, batch=config.batch, candidates=setup.candidates)
    elif config.strategy == "evolution":
        strategy = strategies.evolution(space, config.population, config.sample, config.batch, setup.candidates)
    else:
        if not sources:
            raise ValueError("the transfer strategy needs transfer-from datasets: none in the tables")
        from nax.search import transfer

        strategy = transfer.strategy_from_model(model(), space, batch=config.batch, candidates=setup.candidates)

    stop_rule = None
    if config.early_stop:
        if kind != "curve":
            notes.append("early stopping off: an architecture table has no learning curves to learn from")
        else:
            from nax.curves import stopping

            stop_rule = stopping.stop_rule(
                prior(), setup.evaluator.max_epochs, stopping.StopConfig(adapt=config.stop_adapt)
            )
    return Parts(strategy, setup.evaluator, setup.budget, stop_rule, notes, max_runs)
