"""Successive halving, Hyperband and ASHA over the jobs of :mod:`nax.search.multifidelity`.

Successive halving and Hyperband are synchronous: a rung's survivors are promoted only
once every result of the rung is in, so ``ask`` returns ``None`` (wait) while a rung
runs. ASHA promotes as soon as a result allows it, so every ask gives a free worker a job
while the pool lasts. All three resume a promoted trial from the epochs it has (a job
costs only the epochs it adds) and tell their base strategy only final values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from nax.search.multifidelity import (
    Job,
    MFStrategy,
    TrialResult,
    Trials,
    _base,
    _keep,
    _new_trial,
    _ranked,
    _space_of,
    _tell_base,
    _value,
    hyperband_brackets,
    rungs,
)
from nax.search.strategies import Strategy

#: the rank hook's random stream (folded off the keys ASHA is given)
_RANK_STREAM = 0x5A4B


# ---------------------------------------------------------------------------- synchronous brackets
class BracketState(NamedTuple):
    trials: Trials
    iteration: int  # brackets begun before the current one
    s: int  # current bracket: rungs ladder[K - s:], ``n`` new trials at its first rung
    n: int
    rung: int  # index within the bracket
    queue: tuple[int, ...]  # trials promoted into this rung, not asked yet
    members: int  # trials in this rung asked so far
    results: tuple[tuple[int, float], ...]  # (trial, value) told for this rung
    pending: tuple[int, ...]
    finished: bool


def _brackets(
    schedule: Callable[[int], tuple[int, int] | None],
    min_epochs: int,
    max_epochs: int,
    eta: float,
    space,
    candidates,
    base: Strategy | None,
) -> MFStrategy:
    """Successive halving over the brackets ``schedule(iteration) -> (s, n)`` (None: stop),
    one after another, each rung waiting for all of its results before promoting."""
    ladder = rungs(min_epochs, max_epochs, eta)
    K = len(ladder) - 1
    base = _base(space, candidates, base)

    def start(state: BracketState, iteration: int) -> BracketState:
        sn = schedule(iteration)
        if sn is None:
            return state._replace(finished=True)
        s, n = sn
        return state._replace(iteration=iteration, s=s, n=n, rung=0, queue=(), members=0, results=(), pending=())

    def init(key: jax.Array, space_=None) -> BracketState:
        bstate = base.init(key, space_) if space_ is not None else base.init(key)
        empty = BracketState(Trials(bstate, (), frozenset(), False), 0, K, 0, 0, (), 0, (), (), False)
        return start(empty, 0)

    def ask(state: BracketState, key: jax.Array) -> tuple[Job | None, BracketState]:
        sp = space if space is not None else _space_of(base, state.trials.base)
        while not state.finished:
            epochs = ladder[K - state.s + state.rung]
            if state.rung == 0 and state.members < state.n and not state.trials.exhausted:
                t, trials = _new_trial(base, sp, state.trials, key)
                state = state._replace(trials=trials)
                if t is not None:
                    return Job(t, trials.encs[t], epochs), state._replace(
                        members=state.members + 1, pending=state.pending + (t,)
                    )
                continue
            if state.queue:
                t = state.queue[0]
                return Job(t, state.trials.encs[t], epochs), state._replace(
                    queue=state.queue[1:], pending=state.pending + (t,)
                )
            if state.pending:
                return None, state  # the rung is still running
            if state.members == 0:  # the pool ran out before this bracket started a trial
                return None, state._replace(finished=True)
            alive = [tv for tv in _ranked(state.results) if tv[1] > -math.inf]
            if state.rung == state.s or not alive:
                state = start(state, state.iteration + 1)
                continue
            top = tuple(t for t, _ in alive[: _keep(state.members, 1, eta)])
            state = state._replace(rung=state.rung + 1, queue=top, members=len(top), results=())
        return None, state

    def tell(state: BracketState, results: Sequence[TrialResult]) -> BracketState:
        pending, told, done = list(state.pending), list(state.results), []
        top = state.rung == state.s
        for r in results:
            if r.trial not in pending:
                raise ValueError(f"trial {r.trial} has no job in flight")
            pending.remove(r.trial)
            v = _value(r)
            told.append((r.trial, v))
            if top or v == -math.inf:
                done.append((r.trial, None if v == -math.inf else v))
        trials = _tell_base(base, state.trials, done)
        return state._replace(trials=trials, pending=tuple(pending), results=tuple(told))

    def resumable(state: BracketState) -> set[int]:
        # the current rung's trials (promoted next, or waiting to be asked); a rung's trials
        # not promoted into the next are never asked again, nor are earlier brackets'
        return {*state.queue, *state.pending, *(t for t, _ in state.results)}

    return MFStrategy(init, ask, tell, resumable)


def successive_halving(
    n: int,
    min_epochs: int,
    max_epochs: int,
    eta: float = 3,
    *,
    space=None,
    candidates: np.ndarray | None = None,
    base: Strategy | None = None,
    repeat: bool = True,
) -> MFStrategy:
    """Successive halving (Jamieson & Talwalkar 2016, as in Li et al. 2018): ``n`` new
    trials to the first rung, then the top ``floor(n_i / eta)`` (at least one) of each
    rung resumed to the next, up to ``max_epochs``. With ``repeat`` a new round of ``n``
    starts when one ends (until the pool is used up)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n (configurations per round) must be a positive whole number, got {n!r}")
    K = len(rungs(min_epochs, max_epochs, eta)) - 1
    schedule = lambda it: (K, int(n)) if repeat or it == 0 else None
    return _brackets(schedule, min_epochs, max_epochs, eta, space, candidates, base)


def hyperband(
    min_epochs: int,
    max_epochs: int,
    eta: float = 3,
    *,
    space=None,
    candidates: np.ndarray | None = None,
    base: Strategy | None = None,
    repeat: bool = True,
) -> MFStrategy:
    """Hyperband (Li et al. 2018, JMLR, Algorithm 1): successive halving in the brackets
    of :func:`hyperband_brackets`, ``s = s_max`` (most exploratory) down to 0 (full runs
    only), one bracket at a time; with ``repeat`` the cycle starts again."""
    brackets = hyperband_brackets(min_epochs, max_epochs, eta)
    s_max = len(brackets) - 1

    def schedule(it: int) -> tuple[int, int] | None:
        if not repeat and it > s_max:
            return None
        s = s_max - it % (s_max + 1)
        return s, brackets[s_max - s][0][0]

    return _brackets(schedule, min_epochs, max_epochs, eta, space, candidates, base)


# ---------------------------------------------------------------------------- asynchronous
class ASHAState(NamedTuple):
    trials: Trials
    rung_results: tuple[tuple[tuple[int, float], ...], ...]  # rung k: (trial, value) told, arrival order
    promoted: tuple[frozenset[int], ...]  # rung k: trials promoted out of it
    pending: tuple[tuple[int, int], ...]  # (trial, rung) asked, not told
    rank: Any = None  # the rank hook's state (None without one)


def asha(
    min_epochs: int,
    max_epochs: int,
    eta: float = 3,
    *,
    early_stopping_rate: int = 0,
    space=None,
    candidates: np.ndarray | None = None,
    base: Strategy | None = None,
    rank=None,
) -> MFStrategy:
    """Asynchronous successive halving (Li et al. 2020, MLSys, Algorithm 2).

    Each ask serves one free worker: from the highest rung down, the first rung with a
    promotable trial (among the top ``floor(|rung| / eta)`` of its told results, one not
    promoted yet) promotes its best such trial one rung up; otherwise a new trial starts
    at the bottom rung. Rung k is ``ladder[early_stopping_rate + k]``. A promotion is
    recorded when asked, so several asks before any tell never promote a trial twice.

    ``rank``: a :class:`nax.search.halving_rank.Rank` that orders a rung's told results
    instead of their values at the rung (None: by value, the paper's ASHA), e.g. by the
    transferred curve posterior's predicted final (``halving_rank.predicted_final``). It
    changes only *which* trials form a rung's top ``floor(|rung| / eta)``; how many, the order
    of the rungs and the proposals are ASHA's.
    """
    if (
        isinstance(early_stopping_rate, bool)
        or not isinstance(early_stopping_rate, (int, np.integer))
        or early_stopping_rate < 0
    ):
        raise ValueError(f"early_stopping_rate must be a whole number >= 0, got {early_stopping_rate!r}")
    ladder = rungs(min_epochs, max_epochs, eta)[early_stopping_rate:]
    if not ladder:
        raise ValueError(
            f"early_stopping_rate {early_stopping_rate} leaves no rung between "
            f"{min_epochs} and {max_epochs} epochs at eta={eta}"
        )
    top = len(ladder) - 1
    base = _base(space, candidates, base)

    def init(key: jax.Array, space_=None) -> ASHAState:
        bstate = base.init(key, space_) if space_ is not None else base.init(key)
        # the hook's key is folded off, so the base strategy's draws are those of plain ASHA
        rstate = rank.init(jax.random.fold_in(key, _RANK_STREAM)) if rank is not None else None
        return ASHAState(
            Trials(bstate, (), frozenset(), False), ((),) * len(ladder), (frozenset(),) * len(ladder), (), rstate
        )

    def ask(state: ASHAState, key: jax.Array) -> tuple[Job | None, ASHAState]:
        for k in range(top - 1, -1, -1):
            told = state.rung_results[k]
            keep = math.floor(len(told) / eta + 1e-9)
            if not keep or all(v == -math.inf or t in state.promoted[k] for t, v in told):
                continue  # nothing promotable whatever the ranking (and no hook call)
            if rank is None:
                ranked = _ranked(told)
            else:
                ranked, rstate = rank.order(state.rank, told, ladder[k], jax.random.fold_in(key, _RANK_STREAM + k))
                state = state._replace(rank=rstate)
            promotable = [t for t, v in ranked[:keep] if v > -math.inf and t not in state.promoted[k]]
            if promotable:
                t = promotable[0]
                promoted = state.promoted[:k] + (state.promoted[k] | {t},) + state.promoted[k + 1 :]
                return Job(t, state.trials.encs[t], ladder[k + 1]), state._replace(
                    promoted=promoted, pending=state.pending + ((t, k + 1),)
                )
        sp = space if space is not None else _space_of(base, state.trials.base)
        t, trials = _new_trial(base, sp, state.trials, key)
        state = state._replace(trials=trials)
        if t is None:
            return None, state
        return Job(t, trials.encs[t], ladder[0]), state._replace(pending=state.pending + ((t, 0),))

    def tell(state: ASHAState, results: Sequence[TrialResult]) -> ASHAState:
        pending, rr, done, told = list(state.pending), [list(r) for r in state.rung_results], [], []
        for r in results:
            k = next((k for t, k in pending if t == r.trial), None)
            if k is None:
                raise ValueError(f"trial {r.trial} has no job in flight")
            pending.remove((r.trial, k))
            v = _value(r)
            rr[k].append((r.trial, v))
            told.append((r.trial, ladder[k], r))
            if k == top or v == -math.inf:
                done.append((r.trial, None if v == -math.inf else v))
        trials = _tell_base(base, state.trials, done)
        rstate = rank.tell(state.rank, told) if rank is not None else state.rank
        return state._replace(trials=trials, rung_results=tuple(map(tuple, rr)), pending=tuple(pending), rank=rstate)

    return MFStrategy(init, ask, tell)
