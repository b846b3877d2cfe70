"""Multi-fidelity search: jobs that pause and resume trials, as pure ask/tell functions.

The strategies are in :mod:`nax.search.halving` (successive halving, Hyperband, ASHA);
this module holds what they share (jobs, results, the rung ladder, Hyperband's bracket
table, proposals from a base strategy) and :func:`full_runs`, any single-fidelity
strategy as a multi-fidelity one (the baseline).

A multi-fidelity strategy hands out *jobs*, not architectures::

    state = strategy.init(key)
    job, state = strategy.ask(state, key)       # Job(trial, enc, epochs), or None
    state = strategy.tell(state, [TrialResult(trial, curve, status), ...])

``Job(trial, enc, epochs)`` means "train trial ``trial`` (architecture ``enc``) until it
has ``epochs`` epochs". A new trial starts from epoch 0; a known trial resumes from the
epochs it already has, so the evaluator must pause a trial after each job and resume it
later (a table replay does this for free; real training needs a checkpoint per trial).
A job therefore costs ``epochs`` minus the epochs the trial already had. The result told
back carries the trial's whole curve so far (validation accuracy per epoch, fractions) and
its status: ``"completed"`` when it reached the job's epochs; anything else (``"failed"``,
``"diverged"``) ends the trial, which ranks below every finished one and is never resumed.

``ask`` is called once per free worker, several times before any ``tell`` when workers
run in parallel. It returns ``None`` when no job can start now: a synchronous strategy
waits for a rung to finish, or nothing is left (the pool is used up, or a
non-repeating schedule is over). ``None`` while no job is in flight ends the search.

New architectures come from a base :class:`nax.search.strategies.Strategy` asked for one
architecture at a time (uniform random over the space or a table's pool by default; the
characteristic model's ``transfer.strategy_from_model`` plugs in the same way). The base
strategy is told a trial's value when the trial reaches the maximum epochs (its final
accuracy) or dies (``None``), never a low-fidelity value. In a finite pool no architecture
starts two trials: a proposal that repeats one is redrawn, and after ``_RETRIES`` repeats
the pool counts as used up.

Rungs: the epochs a trial may be paused at form a ladder from ``max_epochs`` down by
factors of ``eta``: ``round(max_epochs * eta**(k - K))`` for k = 0..K, where ``K`` is the
largest integer with ``min_epochs * eta**K <= max_epochs`` (``K = floor(log_eta(R / r))``
of Li et al. 2018). When ``max_epochs = min_epochs * eta**K`` the rungs are exactly
``min_epochs * eta**k``; otherwise they are rounded to whole epochs (not below
``min_epochs``; equal rounded rungs merge), and the top rung is always ``max_epochs``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from nax.search import strategies as strategies_lib
from nax.search.strategies import Observation, Strategy

#: proposals that repeat a trial's architecture before the pool counts as used up
_RETRIES = 8


class Job(NamedTuple):
    """Train trial ``trial`` (architecture ``enc``, int32 ``(E,)``) until it has ``epochs`` epochs."""

    trial: int
    enc: np.ndarray
    epochs: int


class TrialResult(NamedTuple):
    """What a job gave: the trial's validation accuracies so far (fractions, one per epoch
    trained, from epoch 1) and ``status`` (``"completed"``: it reached the job's epochs)."""

    trial: int
    curve: tuple[float, ...]
    status: str


class MFStrategy(NamedTuple):
    """``init(key) -> state``; ``ask(state, key) -> (Job | None, state)``;
    ``tell(state, results) -> state``; ``resumable(state) -> trials`` that may still be asked
    to continue (None: every paused trial may), so the driver can delete the checkpoints of
    the others as soon as the strategy has left them behind."""

    init: Callable[[jax.Array], Any]
    ask: Callable[[Any, jax.Array], tuple[Job | None, Any]]
    tell: Callable[[Any, Sequence[TrialResult]], Any]
    resumable: Callable[[Any], Iterable[int]] | None = None


def check_fidelity(min_epochs: int, max_epochs: int, eta: float) -> None:
    """One-line ValueError for a bad (min_epochs, max_epochs, eta)."""
    for name, v in (("min_epochs", min_epochs), ("max_epochs", max_epochs)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive whole number of epochs, got {v!r}")
    if min_epochs > max_epochs:
        raise ValueError(f"min_epochs ({min_epochs}) must not exceed max_epochs ({max_epochs})")
    if (
        isinstance(eta, bool)
        or not isinstance(eta, (int, float, np.integer, np.floating))
        or not math.isfinite(eta)
        or eta <= 1
    ):
        raise ValueError(f"eta must be a number > 1, got {eta!r}")


def rungs(min_epochs: int, max_epochs: int, eta: float) -> tuple[int, ...]:
    """The epochs trials may be paused at, ascending, the last one ``max_epochs``."""
    check_fidelity(min_epochs, max_epochs, eta)
    K = 0
    while min_epochs * eta ** (K + 1) <= max_epochs * (1 + 1e-9):  # exact for integer eta; tolerant of float eta
        K += 1
    ladder = [max(min_epochs, round(max_epochs * eta ** (k - K))) for k in range(K + 1)]
    return tuple(sorted(set(ladder)))


def hyperband_brackets(min_epochs: int, max_epochs: int, eta: float) -> list[list[tuple[int, int]]]:
    """Hyperband's brackets (Li et al. 2018, Algorithm 1), ``s = s_max .. 0``: for each, the
    rungs' ``(n_i, r_i)``, configurations and epochs. ``n = ceil((s_max+1)/(s+1) * eta**s)``,
    ``n_i = floor(n * eta**-i)`` and ``r_i`` the rung ladder from ``R * eta**-s`` up."""
    ladder = rungs(min_epochs, max_epochs, eta)
    s_max = len(ladder) - 1
    out = []
    for s in range(s_max, -1, -1):
        n = _bracket_size(s_max, s, eta)
        out.append([(_keep(n, i, eta), ladder[s_max - s + i]) for i in range(s + 1)])
    return out


def _bracket_size(s_max: int, s: int, eta: float) -> int:
    return math.ceil((s_max + 1) / (s + 1) * eta**s - 1e-9)


def _keep(n: int, i: int, eta: float) -> int:
    """``floor(n / eta**i)``, at least 1 (a bracket always carries one trial to its top rung)."""
    return max(1, math.floor(n / eta**i + 1e-9))


def _value(r: TrialResult) -> float:
    """The rung value: the last accuracy of a completed job; ``-inf`` for a dead trial."""
    if r.status != "completed" or not r.curve or not np.isfinite(r.curve[-1]):
        return -math.inf
    return float(r.curve[-1])


def _ranked(results: Sequence[tuple[int, float]]) -> list[tuple[int, float]]:
    """Best first; ties go to the older trial (deterministic)."""
    return sorted(results, key=lambda tv: (-tv[1], tv[0]))


# ---------------------------------------------------------------------------- proposals
class Trials(NamedTuple):
    """What every multi-fidelity state carries: the base strategy's state, each trial's
    encoding (by trial id), the space indices used, and whether the pool is used up."""

    base: Any
    encs: tuple[np.ndarray, ...]
    used: frozenset[int]
    exhausted: bool


def _base(space, candidates, base: Strategy | None) -> Strategy:
    if base is None:
        if space is None:
            raise ValueError("give a space (and optionally candidates) or a base strategy")
        return strategies_lib.random(space, batch=1, candidates=candidates)
    return base


def _new_trial(base: Strategy, space, trials: Trials, key: jax.Array) -> tuple[int | None, Trials]:
    """Ask the base strategy for an architecture no trial has; ``None`` once the pool is used up."""
    if trials.exhausted:
        return None, trials
    state = trials.base
    for k in jax.random.split(key, _RETRIES):
        encs, state = base.ask(state, k)
        if len(encs) != 1:
            raise ValueError(f"the base strategy must ask one architecture at a time (batch=1), got {len(encs)}")
        idx = int(space.index(encs[0]))
        if idx not in trials.used:
            t = len(trials.encs)
            return t, Trials(state, trials.encs + (np.asarray(encs[0]),), trials.used | {idx}, False)
    return None, trials._replace(base=state, exhausted=True)


def _tell_base(base: Strategy, trials: Trials, done: Sequence[tuple[int, float | None]]) -> Trials:
    """Tell the base strategy the trials that reached the top rung (value) or died (None)."""
    if not done:
        return trials
    obs = [Observation(trials.encs[t], v) for t, v in done]
    return trials._replace(base=base.tell(trials.base, obs))


def _space_of(base: Strategy, state) -> Any:
    pool = getattr(state, "pool", None)
    if pool is None:
        raise ValueError("the base strategy's state has no pool; pass space= explicitly")
    return pool.space


# ---------------------------------------------------------------------------- full runs
class FullRunState(NamedTuple):
    trials: Trials
    pending: tuple[int, ...]


def full_runs(
    max_epochs: int, *, space=None, candidates: np.ndarray | None = None, base: Strategy | None = None
) -> MFStrategy:
    """Any single-fidelity strategy (random search, regularized evolution, the transfer
    strategy) as a multi-fidelity one: every trial trains to ``max_epochs`` in one job.
    The baseline the multi-fidelity strategies are compared with."""
    check_fidelity(max_epochs, max_epochs, 2)
    base = _base(space, candidates, base)

    def init(key: jax.Array, space_=None) -> FullRunState:
        bstate = base.init(key, space_) if space_ is not None else base.init(key)
        return FullRunState(Trials(bstate, (), frozenset(), False), ())

    def ask(state: FullRunState, key: jax.Array) -> tuple[Job | None, FullRunState]:
        sp = space if space is not None else _space_of(base, state.trials.base)
        t, trials = _new_trial(base, sp, state.trials, key)
        if t is None:
            return None, state._replace(trials=trials)
        return Job(t, trials.encs[t], max_epochs), FullRunState(trials, state.pending + (t,))

    def tell(state: FullRunState, results: Sequence[TrialResult]) -> FullRunState:
        pending = list(state.pending)
        for r in results:
            if r.trial not in pending:
                raise ValueError(f"trial {r.trial} has no job in flight")
            pending.remove(r.trial)
        done = [(r.trial, None if _value(r) == -math.inf else _value(r)) for r in results]
        return FullRunState(_tell_base(base, state.trials, done), tuple(pending))

    return MFStrategy(init, ask, tell)
