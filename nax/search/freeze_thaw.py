"""The transferred freeze-thaw policy: continue a paused trial by Δ epochs, or start a new architecture.

Freeze-thaw search (Swersky et al. 2014; DyHPO, Wistuba et al. 2022; ifBO) keeps runs
paused and, at each decision, spends the next epochs where they are worth most. nax
values every option with both of its transfers, in one decision:

- a paused trial ``i`` with ``e_i`` epochs: ``p_i``, the probability that its accuracy at
  the horizon beats the incumbent, under the transferred curve posterior with the target's
  completed runs as context and the within-target adapted calibration: the one stopping
  rule's prediction (:mod:`nax.curves.stopping`, ``judge``), so freeze-thaw and early
  stopping share one model and one adaptation (the rule's ``update``);
- a fresh architecture: ``p_new`` from the characteristic model's posterior score of the
  proposal (``nax.characteristics.sample_scores``; the base strategy's state when it is
  :func:`nax.search.transfer.strategy_from_model`), mapped to accuracies through the
  target's population seen so far (:func:`scores_to_accuracy`). Without a characteristic
  model (a random base, e.g. networks outside the cell space) a new architecture is a
  random draw from the target's population: ``p_new`` is the trials' mean ``p``, smoothed
  by the rule of succession (the chance of beating the best of ``k`` is about ``1/(k+1)``).

**The value of an option is its probability of beating the incumbent per expected epoch
of cost**, where the cost counts what learning will save::

    paused trial:       index_i = p_i / (H - e_i)
    new architecture:   index   = p / (d + p * (H - d)),    d = min(Δ, H)

A new architecture is judged by a population-level model; its first ``d`` epochs turn
that into a curve, after which it is continued only if it still looks good, so it is
charged ``d`` for sure and the rest in proportion to its chance (DyHPO's point: value
the next budget step, not the whole run). A paused trial's ``p`` already rests on its own
curve, so finishing it costs what remains. Why not expected improvement per epoch of
remaining cost for both (the first prototype): a new architecture then pays its whole run
while a started one gets cheaper with every epoch (sunk cost), and with the wide early
extrapolation of the meta-dataset's curves it finished 74 of 75 trials. Here a long shot
is cheap to try (index about ``p / Δ``), and a paused trial is resumed only while its own
chance per remaining epoch beats that of a fresh proposal. The incumbent is the best
final accuracy of a completed run; before the first, the best predicted final of a
paused trial. When no option has any
chance (every index 0) a new architecture starts. Nothing is fitted on a reported suite:
the rule is fixed a priori, and so is Δ (callers choose it; the acceleration experiment
uses a quarter of a run, the stopping rule's check cadence on the meta-dataset).

:func:`decide` is the decision on given probabilities (tested without models);
:func:`strategy` makes it a multi-fidelity ask/tell strategy
(:mod:`nax.search.multifidelity`) around a :class:`CurveModel`, which
:func:`curve_model` builds from a stopping rule; a prediction is kept per trial until
its curve grows (one fit per decision), and recomposed under the latest calibration.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from nax import characteristics as ch
from nax.curves.predict import predict
from nax.curves.stopping import FinalDraws, Finished, StopRule
from nax.search import multifidelity as mf
from nax.search.strategies import Strategy
from nax.search.transfer import scores_to_accuracy, strategy_from_model

#: characteristic-model draws of a fresh proposal's score per decision
NEW_DRAWS = 256


class Decision(NamedTuple):
    """``action``: ``"continue"`` (resume paused trial ``index`` for ``epochs`` epochs) or
    ``"new"`` (start fresh candidate ``index`` for ``epochs`` epochs). ``score``: the
    chosen option's index; ``scores_paused`` [N], ``scores_new`` [M]: every option's
    (``-inf`` for a paused trial already at the horizon)."""

    action: str
    index: int
    epochs: int
    score: float
    scores_paused: np.ndarray
    scores_new: np.ndarray


def lookahead_index(p, remaining, delta: int, *, learns: bool = True) -> np.ndarray:
    """Probability of beating the incumbent per expected epoch: ``p / (d + p * (remaining -
    d))`` with ``d = min(delta, remaining)`` when the next ``d`` epochs decide whether the
    rest is worth paying (``learns``, a new architecture), else ``p / remaining``. 0 where
    ``p`` is 0; ``-inf`` where nothing remains."""
    p = np.clip(np.asarray(p, np.float64), 0.0, 1.0)
    rem = np.asarray(remaining, np.float64)
    d = np.minimum(delta, rem) if learns else rem
    cost = d + p * (rem - d)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(p > 0, p / np.where(cost > 0, cost, 1.0), 0.0)
    return np.where(rem > 0, out, -np.inf)


def _probs(x, name: str, n: int | None) -> np.ndarray:
    a = np.asarray(x, np.float64).reshape(-1)
    if n is not None and len(a) != n:
        raise ValueError(f"{name} has {len(a)} values, expected {n}")
    if np.isnan(a).any() or (a < 0).any() or (a > 1).any():
        raise ValueError(f"{name} must be probabilities in [0, 1], got {a}")
    return a


def decide(
    key: jax.Array,
    p_paused_N,
    paused_epochs_N,
    p_new_M=None,
    *,
    horizon: int,
    delta: int = 1,
) -> Decision:
    """Continue a paused trial by ``delta`` epochs or start a new architecture.

    Args:
      key: breaks exact ties between the best options uniformly (nothing else is random).
      p_paused_N: each paused trial's probability of beating the incumbent at ``horizon``.
      paused_epochs_N: epochs each paused trial already has (``< horizon`` to be eligible).
      p_new_M: the same for ``M`` fresh candidates; ``None`` or empty: none can start.
      horizon: epochs of a full run; delta: epochs of a job (capped at what is left).

    Returns:
      The option with the largest :func:`lookahead_index` (a new one when every index is 0).

    Raises:
      ValueError: bad shapes or probabilities, a non-positive horizon or delta, or no option.
    """
    if int(horizon) < 1 or int(delta) < 1:
        raise ValueError(f"horizon and delta must be positive epochs, got horizon={horizon}, delta={delta}")
    epochs_N = np.asarray(paused_epochs_N, np.int64).reshape(-1)
    if (epochs_N < 0).any():
        raise ValueError("paused_epochs_N must be non-negative")
    n = len(epochs_N)
    p_old = _probs(p_paused_N, "p_paused_N", n)
    p_new = np.zeros(0) if p_new_M is None else _probs(p_new_M, "p_new_M", None)
    remaining = horizon - epochs_N
    scores_p = lookahead_index(p_old, remaining, delta, learns=False)
    scores_n = lookahead_index(p_new, np.full(len(p_new), horizon), delta)
    all_scores = np.concatenate([scores_p, scores_n])
    if len(all_scores) == 0 or not np.isfinite(all_scores).any():
        raise ValueError("no option: every paused trial is at the horizon and no new candidate was given")
    if all_scores.max() <= 0 and len(p_new):
        best = n + np.arange(len(p_new))  # nothing has a chance: explore
    else:
        best = np.flatnonzero(all_scores == all_scores.max())
    pick = int(best[int(jax.random.randint(key, (), 0, len(best)))]) if len(best) > 1 else int(best[0])
    if pick < n:
        return Decision("continue", pick, int(min(delta, remaining[pick])), float(all_scores[pick]), scores_p, scores_n)
    return Decision("new", pick - n, int(min(delta, horizon)), float(all_scores[pick]), scores_p, scores_n)


# ---------------------------------------------------------------------------- the curve model
class CurveModel(NamedTuple):
    """The curve posterior as freeze-thaw uses it (:func:`curve_model` builds it from a
    stopping rule; tests build exact ones):

    - ``init(key) -> state``;
    - ``update(state, completed_curves, key) -> state``: the within-target adaptation
      after runs completed (each curve [horizon]);
    - ``fit(state, curves, seed) -> list``: one opaque prediction per partial curve;
    - ``judge(state, fitted, best) -> (p [N], predicted_final [N])``: P(final > best)
      under the state's current calibration, and the predictive mean of the final.
    """

    init: Callable[[jax.Array], Any]
    update: Callable[[Any, Sequence[np.ndarray], jax.Array], Any]
    fit: Callable[[Any, Sequence[np.ndarray], int], list]
    judge: Callable[[Any, list, float], tuple[np.ndarray, np.ndarray]]


def _stack(draws: Sequence[FinalDraws]) -> FinalDraws:
    cat = lambda xs: None if xs[0] is None else np.concatenate(xs, axis=-1)
    return FinalDraws(
        cat([d.y for d in draws]),
        cat([d.ext for d in draws]),
        cat([d.gap for d in draws]),
        cat([d.head for d in draws]),
        cat([d.mean for d in draws]),
        all(d.ok for d in draws),
        draws[0].minimize,
    )


def curve_model(rule: StopRule) -> CurveModel:
    """Freeze-thaw's curve posterior from the one stopping rule: predictions as the rule's
    checks make them (its prior, inference, context of the target's completed runs), judged
    by the rule's ``judge`` (its adapted calibration), adapted by the rule's ``update``."""
    if rule.prior is None:
        raise ValueError("freeze-thaw needs a transferred curve prior (fit one on the source datasets' curves)")
    if rule.config.minimize:
        raise ValueError("freeze-thaw maximises accuracy; this stopping rule minimises a loss")
    H = rule.horizon

    def update(state, completed, key):
        return rule.update(state, [Finished(np.asarray(c, np.float64), True) for c in completed], key)

    def fit(state, curves, seed):
        padded = np.full((len(curves), H), np.nan)
        for i, c in enumerate(curves):
            padded[i, : len(c)] = c
        ctx = state.context if len(state.context) else None
        pred = predict(
            rule.prior,
            padded,
            horizon=H,
            context=ctx,
            inference=rule.config.inference,
            seed=int(seed),
            calibration=state.calibration,
        )
        fd = FinalDraws.from_prediction(pred)
        return [fd.take(np.array([i])) for i in range(len(curves))]

    def judge(state, fitted, best):
        d = rule.judge(state, _stack(fitted), best)
        return np.asarray(d.prob_better, np.float64), np.asarray(d.predicted_final, np.float64)

    return CurveModel(rule.init, update, fit, judge)


# ---------------------------------------------------------------------------- as a strategy
class FreezeThawState(NamedTuple):
    trials: mf.Trials
    curves: tuple[tuple[float, ...], ...]  # by trial: its curve so far
    fitted: tuple[tuple[int, Any], ...]  # by trial: (epochs when predicted, prediction)
    pending: tuple[int, ...]
    dead: frozenset[int]
    finished: tuple[int, ...]  # trials that reached the horizon, in order
    incumbent: float | None
    model: Any  # the curve model's state
    key: jax.Array


def _new_probability(key, base_state, enc, population: np.ndarray, p_trials: np.ndarray, best: float) -> float:
    """P(a fresh proposal's final > best): the characteristic model's score draws through
    the target's population when the base strategy carries a posterior and the population
    has two distinct values; otherwise a random member of the population: the trials' mean
    ``p`` with one pseudo-success and one pseudo-failure (Laplace's rule of succession)."""
    posterior = getattr(base_state, "posterior", None)
    pop = population[np.isfinite(population)]
    if posterior is not None and len(np.unique(pop)) >= 2:
        scores = ch.sample_scores(posterior, np.asarray(enc)[None], None, key, n=NEW_DRAWS)[:, 0]
        return float(np.mean(scores_to_accuracy(scores, pop) > best))
    # the rule of succession: a random member beats the best of k trials seen with chance
    # about 1/(k+1), which the trials' own p (0 for the completed ones below the incumbent)
    # would call 0
    return float((np.sum(p_trials) + 1.0) / (len(p_trials) + 2.0))


def strategy(
    model: CurveModel,
    horizon: int,
    *,
    delta: int,
    space=None,
    candidates: np.ndarray | None = None,
    base: Strategy | None = None,
) -> mf.MFStrategy:
    """Freeze-thaw search as a multi-fidelity strategy (:mod:`nax.search.multifidelity`).

    Each ask brings the predictions of paused trials whose curves grew up to date (one
    joint fit), proposes one fresh architecture (``base``: uniform random by default, the
    characteristic model's Thompson sampling with ``transfer.strategy_from_model``), and
    :func:`decide` s: resume a paused trial by ``delta`` epochs or start the proposal for
    ``delta`` epochs (a proposal not taken is forgotten). A trial that reaches ``horizon``
    sets the incumbent, is told to the base strategy (its within-target update) and to the
    curve model (``update``, the within-target adaptation of the calibration); a failed
    trial is never resumed.
    """
    mf.check_fidelity(delta, horizon, 2)
    base = mf._base(space, candidates, base)

    def init(key: jax.Array, space_=None) -> FreezeThawState:
        k_base, k_model, k_tell = jax.random.split(key, 3)
        bstate = base.init(k_base, space_) if space_ is not None else base.init(k_base)
        trials = mf.Trials(bstate, (), frozenset(), False)
        return FreezeThawState(trials, (), (), (), frozenset(), (), None, model.init(k_model), k_tell)

    def _refresh(state: FreezeThawState, paused: list[int], key) -> FreezeThawState:
        stale = [t for t in paused if state.fitted[t][0] != len(state.curves[t])]
        if not stale:
            return state
        seed = int(jax.random.randint(key, (), 0, 2**30))
        preds = model.fit(state.model, [np.asarray(state.curves[t]) for t in stale], seed)
        fitted = list(state.fitted)
        for t, p in zip(stale, preds):
            fitted[t] = (len(state.curves[t]), p)
        return state._replace(fitted=tuple(fitted))

    def ask(state: FreezeThawState, key: jax.Array) -> tuple[mf.Job | None, FreezeThawState]:
        k_prop, k_new, k_fit, k_dec = jax.random.split(key, 4)
        busy = set(state.pending) | state.dead
        paused = [t for t, c in enumerate(state.curves) if t not in busy and 0 < len(c) < horizon]
        state = _refresh(state, paused, k_fit)
        sp = space if space is not None else mf._space_of(base, state.trials.base)
        t_new, trials_new = mf._new_trial(base, sp, state.trials, k_prop)
        if t_new is None:
            state = state._replace(trials=trials_new)
            if not paused:
                return None, state
        finals = np.array([state.curves[t][horizon - 1] for t in state.finished])
        fitted = [state.fitted[t][1] for t in paused]
        if paused:
            ref = state.incumbent
            if ref is None:  # no completed run yet: the best predicted final stands in
                ref = float(np.nanmax(model.judge(state.model, fitted, 0.0)[1]))
            p_old, mean_old = model.judge(state.model, fitted, ref)
        else:
            ref, p_old, mean_old = state.incumbent, np.zeros(0), np.zeros(0)
        p_new = None
        if t_new is not None:
            if ref is None:
                p_new = np.ones(1)  # nothing known yet
            else:
                population = np.concatenate([finals, mean_old])
                p_trials = np.concatenate([(finals > ref).astype(float), p_old])
                p_new = np.array(
                    [_new_probability(k_new, trials_new.base, trials_new.encs[t_new], population, p_trials, ref)]
                )
        d = decide(k_dec, p_old, [len(state.curves[t]) for t in paused], p_new, horizon=horizon, delta=delta)
        if d.action == "continue":
            t = paused[d.index]
            return mf.Job(t, state.trials.encs[t], len(state.curves[t]) + d.epochs), state._replace(
                pending=state.pending + (t,)
            )
        return mf.Job(t_new, trials_new.encs[t_new], d.epochs), state._replace(
            trials=trials_new,
            curves=state.curves + ((),),
            fitted=state.fitted + ((0, None),),
            pending=state.pending + (t_new,),
        )

    def tell(state: FreezeThawState, results: Sequence[mf.TrialResult]) -> FreezeThawState:
        pending, curves, dead = list(state.pending), list(state.curves), set(state.dead)
        finished, incumbent, told, completed = list(state.finished), state.incumbent, [], []
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
                completed.append(np.asarray(r.curve[:horizon], np.float64))
                incumbent = final if incumbent is None else max(incumbent, final)
                told.append((r.trial, final))
        m = state.model
        if completed:
            m = model.update(m, completed, jax.random.fold_in(state.key, len(finished)))
        return state._replace(
            trials=mf._tell_base(base, state.trials, told),
            curves=tuple(curves),
            pending=tuple(pending),
            dead=frozenset(dead),
            finished=tuple(finished),
            incumbent=incumbent,
            model=m,
        )

    return mf.MFStrategy(init, ask, tell)


def default_delta(horizon: int) -> int:
    """Epochs of a freeze-thaw job when none is given: a quarter of a run (at least one),
    fixed a priori (the stopping rule checks the meta-dataset's 12-epoch runs every 3)."""
    return max(1, round(horizon / 4))


def from_models(
    prior,
    model,
    space,
    horizon: int,
    *,
    delta: int | None = None,
    stop_config=None,
    candidates: np.ndarray | None = None,
) -> mf.MFStrategy:
    """Freeze-thaw with both transfers: the curve posterior of ``prior`` (a fitted
    ``nax.curves.CurvePrior``; its stopping rule's predictions and adaptation under
    ``stop_config``, default ``nax.curves.StopConfig()``) and proposals and new-architecture
    chances from ``model`` (a ``nax.characteristics.CharacteristicModel``; None: uniform
    random proposals, the population standing in). ``delta``: :func:`default_delta`."""
    from nax.curves.stopping import StopConfig, stop_rule

    rule = stop_rule(prior, horizon, stop_config if stop_config is not None else StopConfig())
    base = None if model is None else strategy_from_model(model, space, candidates=candidates)
    return strategy(
        curve_model(rule),
        horizon,
        delta=default_delta(horizon) if delta is None else delta,
        space=space,
        candidates=candidates,
        base=base,
    )
