"""The transferred freeze-thaw policy: continue a paused trial by one job, or start a new architecture.

Freeze-thaw search (Swersky et al. 2014; DyHPO, Wistuba et al. 2022; ifBO, Rakotoarison
et al. 2024) keeps runs paused and, at each decision, spends the next epochs where they are
worth most. nax values every option with both of its transfers, in one decision, by
**DyHPO's multi-fidelity expected improvement at the next fidelity, per epoch of cost**::

    option = a paused trial i with e_i epochs, or a fresh architecture (e = 0)
    e'     = min(e + Δ, H)                    the fidelity the job would reach
    y*_e'  = the best accuracy any trial has shown at epoch e'
             (before any reached e': the best it has shown at any epoch)
    value  = E[max(y(e') - y*_e', 0)] / (e' - e)

- a paused trial's ``y(e')``: the transferred curve posterior's predictive of its
  accuracy at ``e'`` given its own prefix (the one stopping rule's prediction: its prior,
  the target's completed runs as context, its within-target adapted calibration of the
  extrapolation noise), so freeze-thaw and early stopping share one model and one
  adaptation (the rule's ``update``);
- a fresh architecture's ``y(Δ)``: the characteristic model's posterior score draws for
  the proposal (``nax.characteristics.sample_scores``; the base strategy's state when it is
  :func:`nax.search.transfer.strategy_from_model`), mapped to accuracies through the
  target's accuracies *at epoch Δ* seen so far (:func:`scores_to_accuracy`, the model's
  Gaussian copula; its extrapolation past the best lets a proposal beat it). Without a
  characteristic model (a random base, e.g. networks outside the cell space) the scores
  are standard normal draws: the copula's marginal, an architecture about which nothing is
  known. The score draws carry the model's observation noise (a predictive of what the
  architecture will show, as the curve side's draws are). Until two distinct accuracies
  at Δ are known, a new architecture starts.

**Why this rule** (chosen a priori, from the literature, before any measurement of it; the
previous rule was seen on one seed of the meta-dataset's digits target, NOTES §8): the
previous value, the probability of beating the incumbent *at the horizon* per expected
epoch, asks a 3-epoch prefix whether its final will beat the best final. On curves whose
early extrapolation is wide (the meta-dataset's 12-epoch curves, NOTES §6) that
probability stays high for every plausible prefix, and the policy finished all 39 trials
it started (selection with full runs). DyHPO (Wistuba, Kadra and Grabocka, NeurIPS 2022)
asks a question the data can answer: is the trial's value *one step ahead* likely to beat
the best value anyone has shown *at that step*? A budget-matched incumbent compares like
with like (a prefix with the other prefixes, never with finals), the short extrapolation
(Δ epochs, not H − e) has little noise, and a trial is only carried past a fidelity while
it is expected to lead there: successive halving's promotion, learned instead of fixed at
a ratio. Expected improvement rather than probability (DyHPO's choice): a near-tie that
cannot improve much is worth little. Every job of Δ epochs costs the same, as in DyHPO's
one-step budgets; a trial's last job may be shorter, so the value is per epoch.
**Seen before measuring**: the rule was run once on the meta-dataset's digits target (seed
0) to check it works; that run left out the observation noise of a fresh proposal's
scores (the latent posterior only), which the paragraph above adds as the predictive it
should have been; the same run showed the curve posterior's draws three epochs ahead
overdispersed on digits (NOTES §8), which is the curve model's calibration, not this rule's,
and was left as it is.

**The look-ahead's spread, optionally calibrated** (``ahead=``, the third version,
:mod:`nax.search.ahead_calibration`): a paused trial's draws at ``e'`` rescaled around their
median by a factor learned on the sources' prefixes (and the target's resumed trials). It made
the policy less greedy on two meta-dataset targets and slower there (0.91x vs regularized
evolution against 1.07x uncalibrated; NOTES §8), so it is off by default.

**Jobs on the halving rungs** (``jobs="rungs"``, the fourth version; written before any
measurement of it on a reported suite, helper F14d): the value and the choice above are
unchanged, only where a job ends. Instead of ``e' = min(e + Δ, H)`` the fidelity grid is
the ladder Hyperband and ASHA use for the same search, ``rungs(r_min, H, eta)``
(:func:`nax.search.multifidelity.rungs`: ``r_min * eta^k`` capped at ``H``, ``H``
included, with the halving methods' own ``r_min`` and ``eta``, no new constant): a new
trial's first job ends at the first rung (its value: the expected improvement at that rung
over the best shown there, per epoch of the job), a trial paused at ``e`` continues to the
smallest rung above ``e`` (value per ``e' - e`` epochs). Why: with Δ = round(H/4) every new
configuration pays Δ epochs before anything is known about it (13 of LCBench's 52), while
the halving methods it is compared with try every configuration at their first rung (2
epochs there) and promote by ``eta``; on LCBench freeze-thaw started 17-25 configurations
for 220-325 epochs of first jobs against Hyperband's / ASHA's 60 for all 30 (a diagnosis
made on the committed LCBench results, a reported suite). On the rungs its exploration
costs what theirs does, and its decision replaces their fixed promotion by eta with the
expected improvement at the next rung. Rungs grow geometrically, so a late job (17 -> 52 on
LCBench) is long; the value per epoch charges it so. The look-ahead calibration (``ahead=``)
is learned at fixed steps of Δ and is refused with ``jobs="rungs"``.

A trial's value counts only once it completes (the driver's rule), so the incumbent of
the search stays the best final; ``y*_e'`` is the decision's reference only. When no
option has any expected improvement (every value 0) a new architecture starts. Nothing is
fitted on a reported suite: the rule is fixed a priori, and so is Δ (callers choose it;
the acceleration experiment uses a quarter of a run, the stopping rule's check cadence on
the meta-dataset).

:func:`decide` is the decision on given expected improvements (tested without models);
:func:`strategy` makes it a multi-fidelity ask/tell strategy
(:mod:`nax.search.multifidelity`) around a :class:`CurveModel`, which
:func:`curve_model` builds from a stopping rule; a prediction is kept per trial until
its curve grows (one fit per decision), and recomposed under the latest calibration. The
value and the choice themselves are :mod:`nax.search.freeze_thaw_decision` (pure numpy).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from nax import characteristics as ch
from nax.search import multifidelity as mf
from nax.search.freeze_thaw_curves import CurveModel, ModelState, curve_model, draws_of  # noqa: F401 (re-exported)
from nax.search.freeze_thaw_decision import Decision, Jobs, best_at, decide, expected_improvement  # noqa: F401 (the policy's API)
from nax.search.strategies import Strategy
from nax.search.transfer import scores_to_accuracy, strategy_from_model

#: characteristic-model draws of a fresh proposal's score per decision
NEW_DRAWS = 256


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


def _new_improvement(key, base_state, enc, at_delta: np.ndarray, best: float) -> float:
    """A fresh proposal's expected improvement at epoch Δ over ``best``: score draws mapped
    through the target's accuracies at Δ (``at_delta``, two distinct values at least) by the
    characteristic model's copula; standard normal scores without a model posterior."""
    k_f, k_noise = jax.random.split(key)
    posterior = getattr(base_state, "posterior", None)
    if posterior is not None:
        # the predictive of the architecture's observed score: the posterior draws of its
        # latent score plus the model's observation noise (the curve side's draws include
        # theirs), or the proposal's spread is only the model's doubt about its mean
        f = ch.sample_scores(posterior, np.asarray(enc)[None], None, k_f, n=NEW_DRAWS)[:, 0]
        sigma = float(np.mean(posterior.sigma))
        scores = f + sigma * np.asarray(jax.random.normal(k_noise, (NEW_DRAWS,)), np.float64)
    else:
        scores = np.asarray(jax.random.normal(k_noise, (NEW_DRAWS,)), np.float64)
    return float(expected_improvement(scores_to_accuracy(scores, at_delta)[:, None], [best])[0])


def strategy(
    model: CurveModel,
    horizon: int,
    *,
    delta: int | None = None,
    jobs: Jobs | None = None,
    space=None,
    candidates: np.ndarray | None = None,
    base: Strategy | None = None,
) -> mf.MFStrategy:
    """Freeze-thaw search as a multi-fidelity strategy (:mod:`nax.search.multifidelity`).

    Each ask brings the predictions of paused trials whose curves grew up to date (one
    joint fit, each at its next epoch), proposes one fresh architecture (``base``: uniform
    random by default, the characteristic model's Thompson sampling with
    ``transfer.strategy_from_model``), and :func:`decide` s: resume a paused trial by
    ``delta`` epochs or start the proposal for ``delta`` epochs (a proposal not taken is
    forgotten); with ``jobs`` (:class:`Jobs`, e.g. ``Jobs.on_rungs``) instead of ``delta``,
    every job ends where ``jobs.end`` says (the halving methods' next rung). A trial that reaches ``horizon`` sets the incumbent, is told to the base
    strategy (its within-target update) and to the curve model (``update``, the
    within-target adaptation of the calibration); a failed trial is never resumed.
    """
    if (delta is None) == (jobs is None):
        raise ValueError(
            "give freeze-thaw's jobs either as delta (epochs per job) or as jobs (where each ends), not both"
        )
    if jobs is None:
        mf.check_fidelity(delta, horizon, 2)
        jobs = Jobs.every(delta, horizon)
    elif jobs.horizon != horizon:
        raise ValueError(f"jobs end at a horizon of {jobs.horizon} epochs, the search's is {horizon}")
    base = mf._base(space, candidates, base)
    first = jobs.end(0)

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
        ahead = [jobs.end(len(state.curves[t])) for t in stale]
        preds = model.fit(state.model, [np.asarray(state.curves[t]) for t in stale], ahead, seed)
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
        seen = [c for t, c in enumerate(state.curves) if t not in state.dead]
        if paused:
            refs = np.array([best_at(seen, jobs.end(len(state.curves[t]))) for t in paused], np.float64)
            ei_old = model.improvement(state.model, [state.fitted[t][1] for t in paused], refs)
        else:
            ei_old = np.zeros(0)
        ei_new = None
        if t_new is not None:
            at_delta = np.array([c[first - 1] for c in seen if len(c) >= first], np.float64)
            at_delta = at_delta[np.isfinite(at_delta)]
            if len(np.unique(at_delta)) < 2:
                ei_new = np.array([np.inf])  # nothing to compare with yet: start
            else:
                best = best_at(seen, first)
                ei_new = np.array([_new_improvement(k_new, trials_new.base, trials_new.encs[t_new], at_delta, best)])
        d = decide(k_dec, ei_old, [len(state.curves[t]) for t in paused], ei_new, horizon=horizon, jobs=jobs)
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
        finished, incumbent, told, completed, observed = list(state.finished), state.incumbent, [], [], []
        for r in results:
            if r.trial not in pending:
                raise ValueError(f"trial {r.trial} has no job in flight")
            pending.remove(r.trial)
            was, a = state.fitted[r.trial]
            if (
                model.observe is not None
                and a is not None
                and was == len(state.curves[r.trial])
                and 0 < a.to <= len(r.curve)
                and r.status == "completed"
            ):
                observed.append((a, float(r.curve[a.to - 1])))
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
        for a, value in observed:  # before the update: as predicted, under the calibration then
            m = model.observe(m, a, value)
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
    ahead=None,
    jobs: str = "delta",
    min_epochs: int | None = None,
    eta: float | None = None,
) -> mf.MFStrategy:
    """Freeze-thaw with both transfers: the curve posterior of ``prior`` (a fitted
    ``nax.curves.CurvePrior``; its stopping rule's predictions and adaptation under
    ``stop_config``, default ``nax.curves.StopConfig()``) and proposals and new-architecture
    chances from ``model`` (a ``nax.characteristics.CharacteristicModel``; None: uniform
    random proposals, the population standing in). ``delta``: :func:`default_delta`.
    ``ahead``: the look-ahead's spread calibration learned on the sources
    (:func:`nax.search.ahead_calibration.fit_ahead`; None: uncalibrated).

    ``jobs``: ``"delta"`` (every job ``delta`` epochs, the second version) or ``"rungs"``
    (the fourth: every job ends at the next rung of Hyperband's and ASHA's ladder
    ``rungs(min_epochs, horizon, eta)``; ``min_epochs`` and ``eta`` are the halving methods'
    own and must be given; ``delta`` and ``ahead`` do not apply)."""
    from nax.curves.stopping import StopConfig, stop_rule

    if jobs not in ("delta", "rungs"):
        raise ValueError(f"freeze-thaw jobs must be 'delta' or 'rungs', got {jobs!r}")
    if jobs == "rungs":
        if min_epochs is None or eta is None:
            raise ValueError("freeze-thaw jobs='rungs' needs min_epochs and eta (the halving methods' own)")
        if delta is not None:
            raise ValueError("freeze-thaw jobs='rungs' ends jobs on the rungs: give no delta")
        if ahead is not None:
            raise ValueError(
                "the look-ahead calibration (ahead=) is learned at fixed steps of delta epochs; "
                "it does not apply to jobs='rungs'"
            )
        grid = Jobs.on_rungs(min_epochs, horizon, eta)
    elif min_epochs is not None or eta is not None:
        raise ValueError("min_epochs and eta set the rungs of jobs='rungs'; with jobs='delta' give delta")

    rule = stop_rule(prior, horizon, stop_config if stop_config is not None else StopConfig())
    base = None if model is None else strategy_from_model(model, space, candidates=candidates)
    return strategy(
        curve_model(rule, ahead),
        horizon,
        delta=None if jobs == "rungs" else default_delta(horizon) if delta is None else delta,
        jobs=grid if jobs == "rungs" else None,
        space=space,
        candidates=candidates,
        base=base,
    )
