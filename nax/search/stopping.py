"""Early termination in the search: the curves rule (``nax.curves``) as a ``loop.StopRule``.

The prior over curve shapes is fitted once on the transfer-from datasets' curves. On the
target, every finished or stopped curve joins the context that informs the target's own
level, and a running curve is stopped when ``P(final > best so far) < delta`` under the
posterior predictive (``nax.curves.stopping.should_stop``), never before ``min_epochs``
epochs. A stopped run reports the predictive mean of its final value.

With a calibrated prior the extrapolation noise also adapts to the target (``adapt``): each
run that finishes is predicted again from its own prefixes at a few checkpoint epochs (one
joint fit per checkpoint for the runs of a batch, the context as it was before them), and
the calibration is refitted on these predictions and the finals they should have foreseen
(:func:`nax.curves.calibration.adapt`): a target whose curves jump later than the sources'
did widens its predictive after its first finished runs instead of stopping its best ones.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import numpy as np

from nax import curves
from nax.curves.stopping import adapt_checkpoints, finished_evidence, should_stop
from nax.search.evaluators import RunResult
from nax.search.loop import StopRule


class CurveRuleState(NamedTuple):
    context: np.ndarray  # [M, horizon] curves of the target so far, NaN padded
    seed: int  # seeds the predictions of the next batch
    calibration: dict | None = None  # the extrapolation noise now (None: the prior's)
    evidence: tuple = ()  # calibration.Evidence of the target's finished runs


class CurveTest:
    """``should_stop(curve) -> (stop, predicted_final)`` for one batch (picklable)."""

    def __init__(self, prior, context, best, horizon, delta, min_epochs, seed, num_samples, num_steps,
                 calibration=None):
        self.prior, self.context, self.best, self.horizon = prior, context, best, horizon
        self.delta, self.min_epochs, self.seed = delta, min_epochs, seed
        self.num_samples, self.num_steps = num_samples, num_steps
        self.calibration = calibration

    def __call__(self, curve: Sequence[float]) -> tuple[bool, float | None]:
        e = len(curve)
        if e < self.min_epochs or e >= self.horizon or not np.all(np.isfinite(curve)):
            return False, None
        row = np.full((1, self.horizon), np.nan)
        row[0, :e] = curve
        pred = curves.predict(self.prior, row, horizon=self.horizon,
                              context=self.context if len(self.context) else None, minimize=False,
                              num_samples=self.num_samples, num_steps=self.num_steps, seed=self.seed + e,
                              calibration=self.calibration)
        stop = bool(should_stop(pred, self.best, delta=self.delta)[0])
        return stop, (float(pred.mean[0]) if stop else None)


def rule_from_prior(prior: curves.CurvePrior | None, horizon: int, *, delta: float = 0.05, min_epochs: int = 3,
                    num_samples: int = 300, num_steps: int = 800, adapt: bool = True,
                    adapt_checks: int = 3) -> StopRule:
    """The stopping rule for runs of ``horizon`` epochs (``prior`` None: no transfer).

    ``adapt`` (with a calibrated prior): learn the extrapolation noise within the target
    from its finished runs, each predicted again at ``adapt_checks`` checkpoint epochs.
    """
    adapting = adapt and prior is not None and prior.calibration is not None
    checks = adapt_checkpoints(horizon, min_epochs, adapt_checks)

    def init(key: jax.Array) -> CurveRuleState:
        return CurveRuleState(np.zeros((0, horizon)), int(jax.random.randint(key, (), 0, 2**30)))

    def learn(state: CurveRuleState, finished: np.ndarray) -> CurveRuleState:
        # unique run ids: later batches start past this context
        ev = finished_evidence(prior, finished, state.context, checks, first_id=len(state.context),
                               num_samples=num_samples, num_steps=num_steps, seed=state.seed)
        evidence = state.evidence + tuple(ev)
        return state._replace(evidence=evidence,
                              calibration=curves.calibration.adapt(prior.calibration, list(evidence)))

    def update(state: CurveRuleState, results: Sequence[RunResult], key: jax.Array) -> CurveRuleState:
        rows, finished = [], []
        for r in results:
            c = np.asarray(r.curve[:horizon], np.float64)
            if len(c) and np.all(np.isfinite(c)) and r.status in ("completed", "stopped"):
                row = np.full(horizon, np.nan)
                row[: len(c)] = c
                rows.append(row)
                if r.status == "completed" and len(c) == horizon:
                    finished.append(row)
        if adapting and finished and len(checks):
            state = learn(state, np.array(finished))
        context = np.concatenate([state.context, np.array(rows).reshape(-1, horizon)])
        return state._replace(context=context, seed=int(jax.random.randint(key, (), 0, 2**30)))

    def decide(state: CurveRuleState, best: float | None, max_epochs: int):
        if best is None:
            return None
        return CurveTest(prior, state.context, best, horizon, delta, min_epochs, state.seed, num_samples, num_steps,
                         calibration=state.calibration)

    return StopRule(init, update, decide)


def curve_rule(source_table, horizon: int, *, seed: int = 0, max_curves: int | None = 200, **kw) -> StopRule:
    """Fit the curve prior on ``source_table`` (a ``CurveTable`` of the transfer-from
    datasets) and return the stopping rule for runs of ``horizon`` epochs."""
    prior = curves.fit_prior(source_table, seed=seed, max_curves=max_curves)
    return rule_from_prior(prior, horizon, **kw)
