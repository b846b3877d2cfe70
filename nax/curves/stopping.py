"""Early termination: one stopping rule, in optax's shape, for every caller.

A running curve is stopped when ``P(final value better than best) < delta`` under the
posterior predictive (:func:`nax.curves.predict.predict`, with the target's ended runs as
context), where ``best`` is the best final of a run trained to the end; "better" is higher
for accuracies and lower for losses (``StopConfig.minimize``). A rule is pure functions of
an explicit state:

    rule = stop_rule(prior, horizon, StopConfig())
    state = rule.init(key)
    decision = rule.decide(state, curves, best)          # curves [N, e] running
    state = rule.update(state, [Finished(curve, completed=True)], key)   # runs that ended

``rule.schedule`` says after which epochs a run is checked (``min_epochs``, then every
``check_every``); :func:`run_check` packs ``decide`` and the schedule into the per-run
callback a training loop or an evaluator calls after each epoch. ``nax search``, the
``nax curves early-stop`` replay, the acceleration experiment and a training callback all
use this one rule.

Within-target adaptation (``adapt``, with a calibrated prior): a run that completed is
predicted again from its own prefixes at ``adapt_checks`` epochs (one joint fit per epoch
for the runs of one update, the context as it was before them), and the extrapolation
noise is refitted on these predictions and the finals they should have foreseen
(:func:`nax.curves.calibration.adapt`) when ``StopConfig.refit`` says so (default: at
every update that brought completed runs). A replay that already holds these predictions
passes them as ``Finished.evidence``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import numpy as np

from nax.curves import calibration as calib
from nax.curves.calibration import Calibration, Evidence
from nax.curves.inference import InferenceConfig
from nax.curves.predict import Prediction, compose_draws, predict
from nax.curves.prior import CurvePrior


class Schedule(NamedTuple):
    """Epochs after which a run of ``horizon`` epochs is checked: ``min_epochs``,
    ``min_epochs + check_every``, ... (never the last: a run that ends has nothing left)."""

    min_epochs: int
    check_every: int
    horizon: int

    def due(self, epoch: int) -> bool:
        return self.min_epochs <= epoch < self.horizon and (epoch - self.min_epochs) % self.check_every == 0

    def epochs(self) -> np.ndarray:
        return np.arange(self.min_epochs, self.horizon, self.check_every)


@dataclasses.dataclass(frozen=True)
class Refit:
    """When the adapted calibration is refitted, given ``runs`` completed runs learned from
    and ``last`` at the previous refit: always while ``runs <= first`` (``first`` None:
    always), then whenever their number has grown by ``growth``, never past ``max_runs``
    (None: no limit)."""

    first: int | None = None
    growth: float = 1.25
    max_runs: int | None = None

    def due(self, runs: int, last: int) -> bool:
        if self.max_runs is not None and runs > self.max_runs:
            return False
        return self.first is None or runs <= self.first or runs >= self.growth * last


#: the prediction each check makes (also each adaptation prefix): SVI, fewer steps and
#: draws than an extrapolation benchmark, since it runs after every checked epoch
STOP_INFERENCE = InferenceConfig(num_samples=300, num_steps=800)


@dataclasses.dataclass(frozen=True)
class StopConfig:
    """``delta``: stop when P(better than best) < delta; ``min_epochs``, ``check_every``:
    the check :class:`Schedule`; ``adapt``: learn the extrapolation noise within the target
    from its completed runs, each predicted again at ``adapt_checks`` epochs, refitted as
    ``refit`` says; ``minimize``: values are losses; ``inference``: every prediction's."""

    delta: float = 0.05
    min_epochs: int = 3
    check_every: int = 1
    adapt: bool = True
    adapt_checks: int = 3
    refit: Refit = Refit()
    minimize: bool = False
    inference: InferenceConfig = STOP_INFERENCE

    def __post_init__(self):
        if not 0 < self.delta < 1:
            raise ValueError(f"delta is a probability in (0, 1), got {self.delta}")
        if self.min_epochs < 1 or self.check_every < 1:
            raise ValueError("min_epochs and check_every are at least 1")

    def replace(self, **changes) -> StopConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class Finished(NamedTuple):
    """A run of the target that ended (completed, or stopped by the rule; a failed run has
    nothing to teach): ``curve`` [e] its observed values (table units), which join the
    context when finite; ``completed``: trained to the horizon, so its last value is a final. ``evidence``: its
    :class:`~nax.curves.calibration.Evidence` when the caller already holds predictions of
    it from its prefixes (a replay); None: the rule predicts it again."""

    curve: np.ndarray
    completed: bool
    evidence: tuple[Evidence, ...] | None = None


class Decision(NamedTuple):
    """``stop`` bool [N]; ``prob_better`` [N]: P(final better than best); ``predicted_final``
    [N]: the predictive mean of the final value (NaN where nothing was predicted)."""

    stop: np.ndarray
    prob_better: np.ndarray
    predicted_final: np.ndarray


class StopState(NamedTuple):
    """``context`` [M, horizon]: the target's ended runs (NaN padded); ``seed``: seeds the
    predictions until the next update; ``calibration``: adapted to the target (None: the
    prior's); ``evidence``: of the completed runs; ``runs``: completed runs learned from,
    ``fitted_at``: their number at the last refit."""

    context: np.ndarray
    seed: int
    calibration: Calibration | None = None
    evidence: tuple = ()
    runs: int = 0
    fitted_at: int = 0


class FinalDraws(NamedTuple):
    """What a decision needs of the predictive of ``N`` final values, recomposable under
    any calibration (:func:`nax.curves.predict.compose_draws`): ``y``, ``ext`` [S, N]
    model-scale draws without the extrapolation term and its standard Student-t draws,
    ``gap``, ``head`` [N], ``mean`` [S, N] the expected final value per posterior draw
    (model scale), ``ok``: the fit succeeded."""

    y: np.ndarray
    ext: np.ndarray | None
    gap: np.ndarray | None
    head: np.ndarray | None
    mean: np.ndarray
    ok: bool
    minimize: bool

    @classmethod
    def from_prediction(cls, pred: Prediction) -> FinalDraws:
        y, ext, gap, head = pred.draw_components(pred.horizon[:, None])
        last = lambda a: None if a is None else a[..., 0]
        return cls(last(y), last(ext), last(gap), last(head), pred.final_mean_scale()[0], pred.ok, pred.minimize)

    def take(self, rows) -> FinalDraws:
        """The draws of runs ``rows`` (an index array or slice)."""
        col = lambda a: None if a is None else a[..., rows]
        return FinalDraws(
            col(self.y), col(self.ext), col(self.gap), col(self.head), col(self.mean), self.ok, self.minimize
        )


class StopRule(NamedTuple):
    """``init(key) -> state``; ``update(state, finished, key) -> state`` with the runs that
    ended (:class:`Finished`); ``decide(state, curves, best) -> Decision`` for running
    curves [N, e] (no decision, never a stop, while ``best`` is None); ``judge(state,
    draws, best) -> Decision``: the threshold on :class:`FinalDraws` under the state's
    calibration (what ``decide`` applies to its prediction); ``schedule``: when a run is
    checked; ``prior``, ``horizon``, ``config``: what the rule was built with."""

    init: Callable
    update: Callable
    decide: Callable
    judge: Callable
    schedule: Schedule
    prior: CurvePrior | None
    horizon: int
    config: StopConfig


def adapt_checkpoints(horizon: int, min_epochs: int, n: int = 3) -> np.ndarray:
    """Up to ``n`` epochs, from ``min_epochs`` to the one before the last, at which a
    completed run is predicted again to adapt the calibration to the target."""
    if min_epochs >= horizon:
        return np.zeros(0, int)
    return np.unique(np.round(np.linspace(min_epochs, horizon - 1, n)).astype(int))


def finished_evidence(
    prior: CurvePrior,
    finished: np.ndarray,
    context: np.ndarray | None,
    checks,
    *,
    first_id: int = 0,
    minimize: bool = False,
    inference: InferenceConfig = STOP_INFERENCE,
    seed: int = 0,
) -> list[Evidence]:
    """:class:`~nax.curves.calibration.Evidence` of completed runs ``finished`` [M,
    horizon]: each predicted from its prefix at every epoch of ``checks`` (one joint fit
    per epoch), with ``context`` (the target's curves before these runs) as context; run
    ids from ``first_id``. Failed fits give no evidence."""
    horizon = finished.shape[1]
    ids = first_id + np.arange(len(finished))
    out = []
    for e in checks:
        prefix = np.where(np.arange(horizon) < e, finished, np.nan)
        pred = predict(
            prior,
            prefix,
            horizon=horizon,
            context=context if context is not None and len(context) else None,
            minimize=minimize,
            inference=inference,
            seed=seed + 7919 * int(e),
        )
        if pred.ok:
            out.append(calib.evidence(pred, finished[:, -1], np.arange(len(finished)), run_ids=ids))
    return out


def _init(horizon: int, key: jax.Array) -> StopState:
    return StopState(np.zeros((0, horizon)), int(jax.random.randint(key, (), 0, 2**30)))


def _calibration(prior: CurvePrior | None, state: StopState) -> Calibration | None:
    if prior is None:
        return None
    return state.calibration if state.calibration is not None else prior.calibration


def _judge(prior, config: StopConfig, state: StopState, draws: FinalDraws, best) -> Decision:
    cal = _calibration(prior, state) if draws.ext is not None else None
    if cal is None:
        samples = compose_draws(draws.y, None, None, None, None, draws.minimize)
    else:
        samples = compose_draws(draws.y, draws.ext, draws.gap, draws.head, cal, draws.minimize)
    best = np.asarray(best, np.float64)
    prob = (samples < best).mean(0) if config.minimize else (samples > best).mean(0)
    # a failed fit never stops a run: it must not end a search's candidates
    stop = prob < config.delta if draws.ok else np.zeros(prob.shape, bool)
    if draws.minimize:
        final = samples.mean(0)
    else:  # the expected final value (no Monte Carlo noise from the noise draws)
        final = draws.mean.mean(0)
        if cal is not None:
            final = final + calib.ext_shift(cal, draws.gap, draws.head)
    return Decision(stop, prob, final)


def _decide(prior, horizon: int, config: StopConfig, state: StopState, curves, best) -> Decision:
    curves = np.atleast_2d(np.asarray(curves, np.float64))
    n, e = curves.shape
    if e > horizon:
        raise ValueError(f"curves have {e} epochs, more than the horizon of {horizon}")
    if best is None:
        return Decision(np.zeros(n, bool), np.full(n, np.nan), np.full(n, np.nan))
    # always [n, horizon] wide, so every epoch reuses one compiled program
    padded = np.pad(curves, ((0, 0), (0, horizon - e)), constant_values=np.nan)
    pred = predict(
        prior,
        padded,
        horizon=horizon,
        context=state.context if len(state.context) else None,
        minimize=config.minimize,
        inference=config.inference,
        seed=state.seed + e,
        calibration=state.calibration,
    )
    return _judge(prior, config, state, FinalDraws.from_prediction(pred), best)


def _update(
    prior, horizon: int, config: StopConfig, state: StopState, finished: Sequence[Finished], key: jax.Array
) -> StopState:
    adapting = config.adapt and prior is not None and prior.calibration is not None
    checks = adapt_checkpoints(horizon, config.min_epochs, config.adapt_checks)
    rows, again, given, completed = [], [], [], 0
    for f in finished:
        c = np.asarray(f.curve, np.float64)[:horizon]
        finite = bool(len(c)) and bool(np.all(np.isfinite(c)))
        if finite:
            row = np.full(horizon, np.nan)
            row[: len(c)] = c
            rows.append(row)
        if not f.completed:
            continue
        if f.evidence is not None:
            given.extend(f.evidence)
            completed += 1
        elif finite and len(c) == horizon:
            again.append(row)
            completed += 1
    if adapting and completed and (given or len(checks)):
        ev = []
        if again and len(checks):
            # run ids continue past the context, so each run weighs one in the refit
            ev = finished_evidence(
                prior,
                np.array(again),
                state.context,
                checks,
                first_id=len(state.context),
                minimize=config.minimize,
                inference=config.inference,
                seed=state.seed,
            )
        runs = state.runs + completed
        state = state._replace(evidence=state.evidence + tuple(ev) + tuple(given), runs=runs)
        if config.refit.due(runs, state.fitted_at):
            state = state._replace(calibration=calib.adapt(prior.calibration, list(state.evidence)), fitted_at=runs)
    context = np.concatenate([state.context, np.array(rows).reshape(-1, horizon)])
    return state._replace(context=context, seed=int(jax.random.randint(key, (), 0, 2**30)))


def stop_rule(prior: CurvePrior | None, horizon: int, config: StopConfig = StopConfig()) -> StopRule:
    """The stopping rule for runs of ``horizon`` epochs of one target dataset.

    ``prior``: the transferred :class:`~nax.curves.prior.CurvePrior` (None: no transfer,
    the ``no_transfer`` model). Every function is a module-level function bound to
    (``prior``, ``horizon``, ``config``), so the rule and its state pickle (a Ray worker
    receives :func:`run_check`'s test).
    """
    return StopRule(
        init=functools.partial(_init, horizon),
        update=functools.partial(_update, prior, horizon, config),
        decide=functools.partial(_decide, prior, horizon, config),
        judge=functools.partial(_judge, prior, config),
        schedule=Schedule(config.min_epochs, config.check_every, horizon),
        prior=prior,
        horizon=horizon,
        config=config,
    )


class RunCheck:
    """``check(curve) -> (stop, predicted_final or None)`` for one run, after each epoch:
    checks only when ``rule.schedule`` is due and the curve so far is finite."""

    def __init__(self, rule: StopRule, state: StopState, best: float):
        self.rule, self.state, self.best = rule, state, best

    def __call__(self, curve: Sequence[float]) -> tuple[bool, float | None]:
        e = len(curve)
        if not self.rule.schedule.due(e) or not np.all(np.isfinite(curve)):
            return False, None
        d = self.rule.decide(self.state, np.asarray(curve, np.float64)[None], self.best)
        stop = bool(d.stop[0])
        return stop, (float(d.predicted_final[0]) if stop else None)


def run_check(rule: StopRule, state: StopState, best: float | None) -> RunCheck | None:
    """The per-run test of a batch of runs started now (None while nothing completed:
    there is no best to beat). Picklable."""
    return None if best is None else RunCheck(rule, state, best)


__all__ = [
    "Decision",
    "FinalDraws",
    "Finished",
    "Refit",
    "RunCheck",
    "STOP_INFERENCE",
    "Schedule",
    "StopConfig",
    "StopRule",
    "StopState",
    "adapt_checkpoints",
    "finished_evidence",
    "run_check",
    "stop_rule",
]
