"""The transferred freeze-thaw decision: continue a paused trial, or start a new architecture.

Freeze-thaw search (Swersky et al. 2014; ifBO, DyHPO) keeps runs paused and, at each
decision, spends the next epochs where they are worth most. nax values a choice with both
of its transfers:

- a paused trial ``i`` with ``e_i`` epochs: draws of its accuracy at the horizon from the
  transferred curve model (``nax.curves.predict(...).draws`` of its partial curve, with
  the target's finished runs as context and the within-target adapted calibration);
- a fresh architecture (no epochs yet): draws of its final accuracy from the
  characteristic model's posterior score (``nax.characteristics.sample_scores``), the
  architecture prior standing in for a curve that does not exist yet.

The value of a choice is its **expected improvement over the incumbent at the horizon per
epoch of cost** (the default, ``criterion="ei"``)::

    EI_i = mean_s max(draw_si - incumbent, 0),    cost_i = horizon - e_i,    score_i = EI_i / cost_i

so a paused trial that is nearly done needs few epochs to deliver its improvement, and a
new architecture pays the whole horizon. The alternative ``criterion="pi"`` uses the
probability of improvement, ``mean_s [draw_si > incumbent]``, per epoch: it ignores by how
much a trial would improve, so it prefers near-certain small gains (it exploits more and
is insensitive to the upper tail that makes an uncertain new architecture worth a try);
EI weighs both. The incumbent is the best final accuracy of a completed run; before any,
0 (accuracies are fractions in [0, 1], so EI is then the mean predicted accuracy).

Choosing "continue trial i" resumes it by ``delta`` epochs (not past the horizon), after
which the decision is taken again with its longer curve: the curve model's update is how
the within-target adaptation enters. :func:`decide` is the decision only; draws are
inputs, so it is tested without fitting a model. :func:`strategy` makes it a
multi-fidelity ask/tell strategy (:mod:`nax.search.multifidelity`) around two predictor
functions, so the curve model and the characteristic model plug in from above this layer.
The characteristic model scores on the normal-score scale of the target's ranks;
:func:`scores_to_accuracy` maps its draws to accuracies through the target's own finals.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import jax
import numpy as np
import scipy.stats

from nax.search import multifidelity as mf
from nax.search.strategies import Strategy

CRITERIA = ("ei", "pi")


class Decision(NamedTuple):
    """``action``: ``"continue"`` (resume paused trial ``index`` for ``epochs`` epochs) or
    ``"new"`` (start fresh candidate ``index`` for ``epochs`` epochs). ``score``: the
    chosen option's value per epoch; ``scores_paused`` [N], ``scores_new`` [M]: every
    option's (``-inf`` for a paused trial already at the horizon)."""

    action: str
    index: int
    epochs: int
    score: float
    scores_paused: np.ndarray
    scores_new: np.ndarray


def improvement_value(draws_SxN: np.ndarray, incumbent: float | None, criterion: str = "ei") -> np.ndarray:
    """Per column: expected improvement ``mean max(d - incumbent, 0)`` (``"ei"``) or
    probability of improvement ``mean [d > incumbent]`` (``"pi"``) over the draws."""
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; accepted: {', '.join(CRITERIA)}")
    d = np.asarray(draws_SxN, np.float64)
    inc = 0.0 if incumbent is None else float(incumbent)
    if criterion == "ei":
        return np.mean(np.maximum(d - inc, 0.0), axis=0)
    return np.mean(d > inc, axis=0)


def _draws(x, name: str, columns: int | None) -> np.ndarray:
    a = np.asarray(x, np.float64)
    if a.ndim == 1 and columns is not None and columns <= 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} must be draws [S, N], got shape {a.shape}")
    if columns is not None and a.shape[1] != columns:
        raise ValueError(f"{name} has {a.shape[1]} columns, expected {columns}")
    if np.isnan(a).any():
        raise ValueError(f"{name} holds NaN draws")
    return a


def decide(
    key: jax.Array,
    paused_draws_SxN: np.ndarray,
    paused_epochs_N: np.ndarray,
    new_draws_SxM: np.ndarray | None,
    *,
    horizon: int,
    incumbent: float | None,
    delta: int = 1,
    criterion: Literal["ei", "pi"] = "ei",
) -> Decision:
    """Continue a paused trial by ``delta`` epochs or start a new architecture.

    Args:
      key: breaks exact ties between best options uniformly (nothing else is random).
      paused_draws_SxN: draws of each paused trial's accuracy at ``horizon`` (fraction);
        ``N`` may be 0.
      paused_epochs_N: epochs each paused trial already has (``< horizon`` to be eligible).
      new_draws_SxM: draws of the final accuracy of ``M`` fresh candidates (the
        characteristic model's posterior score); ``None`` or ``M = 0``: no new one can start.
      horizon: epochs of a full run (the fidelity the value is measured at).
      incumbent: best final accuracy of a completed run so far; None before the first.
      delta: epochs to resume a paused trial by (capped at its remaining epochs); a new
        trial also starts for ``min(delta, horizon)`` epochs.
      criterion: ``"ei"`` (expected improvement) or ``"pi"`` (probability of improvement).

    Returns:
      The best option by value per epoch of cost to reach the horizon.

    Raises:
      ValueError: bad shapes, NaN draws, a non-positive horizon or delta, or no option.
    """
    if int(horizon) < 1 or int(delta) < 1:
        raise ValueError(f"horizon and delta must be positive epochs, got horizon={horizon}, delta={delta}")
    epochs_N = np.asarray(paused_epochs_N, np.int64).reshape(-1)
    n = len(epochs_N)
    paused = _draws(paused_draws_SxN, "paused_draws_SxN", n) if n else np.zeros((1, 0))
    if n and (epochs_N < 0).any():
        raise ValueError("paused_epochs_N must be non-negative")
    fresh = np.zeros((1, 0)) if new_draws_SxM is None else _draws(new_draws_SxM, "new_draws_SxM", None)

    remaining = horizon - epochs_N
    value_p = improvement_value(paused, incumbent, criterion)
    scores_p = np.where(remaining > 0, value_p / np.maximum(remaining, 1), -np.inf)
    scores_n = improvement_value(fresh, incumbent, criterion) / horizon
    all_scores = np.concatenate([scores_p, scores_n])
    if len(all_scores) == 0 or not np.isfinite(all_scores).any():
        raise ValueError("no option: every paused trial is at the horizon and no new candidate was given")
    best = np.flatnonzero(all_scores == all_scores.max())
    pick = int(best[int(jax.random.randint(key, (), 0, len(best)))]) if len(best) > 1 else int(best[0])
    if pick < n:
        return Decision("continue", pick, int(min(delta, remaining[pick])), float(all_scores[pick]), scores_p, scores_n)
    return Decision("new", pick - n, int(min(delta, horizon)), float(all_scores[pick]), scores_p, scores_n)


def scores_to_accuracy(score_draws: np.ndarray, finals: np.ndarray) -> np.ndarray:
    """Characteristic-model score draws (normal scores of the target's ranks, the model's
    Gaussian copula) as accuracies: the inverse of the copula on the target's own final
    accuracies ``finals`` (at least two distinct). Between the observed scores the map is
    piecewise linear; beyond them it continues with the least-squares slope of accuracy on
    score (a clamp would make a new architecture never better than the best seen). The
    result is clipped to [0, 1]."""
    y = np.sort(np.asarray(finals, np.float64).reshape(-1))
    if len(y) < 2 or not np.all(np.isfinite(y)) or y[0] == y[-1]:
        raise ValueError(f"mapping scores to accuracies needs at least two distinct finite final accuracies, got {y}")
    z = scipy.stats.norm.ppf((np.arange(1, len(y) + 1) - 0.5) / len(y))
    slope = max(float(np.polyfit(z, y, 1)[0]), 0.0)
    s = np.asarray(score_draws, np.float64)
    out = np.interp(s, z, y)
    out = np.where(s > z[-1], y[-1] + slope * (s - z[-1]), out)
    out = np.where(s < z[0], y[0] + slope * (s - z[0]), out)
    return np.clip(out, 0.0, 1.0)


# ---------------------------------------------------------------------------- as a strategy
#: ``predict_paused(key, curves, finished_curves) -> draws [S, N]``: each paused curve's
#: accuracy at the horizon, the target's finished curves as context (the curve model)
PausedPredictor = Callable[[jax.Array, Sequence[tuple[float, ...]], Sequence[tuple[float, ...]]], np.ndarray]
#: ``predict_new(key, encs_MxE, finished) -> draws [S, M]``: fresh architectures' final
#: accuracy given the target's ``(enc, final accuracy)`` so far (the characteristic model)
NewPredictor = Callable[[jax.Array, np.ndarray, Sequence[tuple[np.ndarray, float]]], np.ndarray]


class FreezeThawState(NamedTuple):
    trials: mf.Trials
    curves: tuple[tuple[float, ...], ...]  # by trial: its curve so far
    pending: tuple[int, ...]
    dead: frozenset[int]
    finished: tuple[int, ...]  # trials that reached the horizon, in order
    incumbent: float | None


def strategy(
    predict_paused: PausedPredictor,
    predict_new: NewPredictor,
    horizon: int,
    *,
    delta: int = 1,
    criterion: Literal["ei", "pi"] = "ei",
    max_paused: int | None = None,
    space=None,
    candidates: np.ndarray | None = None,
    base: Strategy | None = None,
) -> mf.MFStrategy:
    """Freeze-thaw search as a multi-fidelity strategy (:mod:`nax.search.multifidelity`).

        Each ask proposes one fresh architecture (the base strategy; the characteristic
        model's Thompson sampling with ``transfer.strategy_from_model``) and predicts it and
        every paused trial not in flight (paused first, then the fresh one, so a predictor pair
    may share what the first call learnt), then :func:`decide` s: resume a paused trial by
        ``delta`` epochs or start the fresh one for ``delta`` epochs (a fresh proposal not
        taken is forgotten). ``max_paused``: only the paused trials with the best last
        accuracy are considered (bounds the curve model's work per ask). A trial that reaches
        ``horizon`` is finished: it sets the incumbent and is told to the base strategy.
    """
    mf.check_fidelity(delta, horizon, 2)
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; accepted: {', '.join(CRITERIA)}")
    if max_paused is not None and max_paused < 1:
        raise ValueError(f"max_paused must be >= 1 or None, got {max_paused}")
    base = mf._base(space, candidates, base)

    def init(key: jax.Array, space_=None) -> FreezeThawState:
        bstate = base.init(key, space_) if space_ is not None else base.init(key)
        return FreezeThawState(mf.Trials(bstate, (), frozenset(), False), (), (), frozenset(), (), None)

    def ask(state: FreezeThawState, key: jax.Array) -> tuple[mf.Job | None, FreezeThawState]:
        k_prop, k_new, k_old, k_dec = jax.random.split(key, 4)
        busy = set(state.pending) | state.dead
        paused = [t for t, c in enumerate(state.curves) if t not in busy and len(c) < horizon]
        if max_paused is not None:
            paused = sorted(sorted(paused, key=lambda t: (-state.curves[t][-1], t))[:max_paused])
        sp = space if space is not None else mf._space_of(base, state.trials.base)
        t_new, trials_new = mf._new_trial(base, sp, state.trials, k_prop)
        if t_new is None:
            state = state._replace(trials=trials_new)
            if not paused:
                return None, state
        finished = [(state.trials.encs[t], state.curves[t][horizon - 1]) for t in state.finished]
        old = [state.curves[t] for t in paused]
        old_draws = (
            predict_paused(k_old, old, [state.curves[t] for t in state.finished]) if paused else np.zeros((1, 0))
        )
        new_draws = None if t_new is None else predict_new(k_new, trials_new.encs[t_new][None], finished)
        d = decide(
            k_dec,
            old_draws,
            [len(c) for c in old],
            new_draws,
            horizon=horizon,
            incumbent=state.incumbent,
            delta=delta,
            criterion=criterion,
        )
        if d.action == "continue":
            t = paused[d.index]
            return mf.Job(t, state.trials.encs[t], len(state.curves[t]) + d.epochs), state._replace(
                pending=state.pending + (t,)
            )
        return mf.Job(t_new, trials_new.encs[t_new], d.epochs), state._replace(
            trials=trials_new, curves=state.curves + ((),), pending=state.pending + (t_new,)
        )

    def tell(state: FreezeThawState, results: Sequence[mf.TrialResult]) -> FreezeThawState:
        pending, curves, dead = list(state.pending), list(state.curves), set(state.dead)
        finished, incumbent, told = list(state.finished), state.incumbent, []
        for r in results:
            if r.trial not in pending:
                raise ValueError(f"trial {r.trial} has no job in flight")
            pending.remove(r.trial)
            curves[r.trial] = tuple(map(float, r.curve))
            v = mf._value(r)
            if v == -np.inf:
                dead.add(r.trial)
                told.append((r.trial, None))
            elif len(r.curve) >= horizon:
                final = float(r.curve[horizon - 1])
                finished.append(r.trial)
                incumbent = final if incumbent is None else max(incumbent, final)
                told.append((r.trial, final))
        return FreezeThawState(
            mf._tell_base(base, state.trials, told),
            tuple(curves),
            tuple(pending),
            frozenset(dead),
            tuple(finished),
            incumbent,
        )

    return mf.MFStrategy(init, ask, tell)
