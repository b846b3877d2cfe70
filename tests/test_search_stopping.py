"""The curves stopping rule inside the search: what the loop tells it and the per-run test it hands out."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from nax.curves.inference import InferenceConfig
from nax.curves.stopping import StopConfig, run_check, stop_rule
from nax.search import loop
from nax.search.evaluators import RunResult

H = 8


def _curve(final, t=np.arange(1, H + 1)):
    return final - 0.25 * t**-1.0


@pytest.mark.slow  # SVI fits: over a minute on two shared cores
def test_hopeless_run_is_stopped_a_promising_one_is_not():
    rule = stop_rule(None, H, StopConfig(min_epochs=3, inference=InferenceConfig(num_samples=200, num_steps=300)))
    state = rule.init(jax.random.key(0))
    done = [
        RunResult("a", "completed", tuple(_curve(f)), _curve(f)[-1], cost_epochs=H) for f in (0.8, 0.82, 0.85, 0.83)
    ]
    failed = RunResult("b", "failed", (), error="x")
    told = loop.finished(done + [failed])
    assert len(told) == 4 and all(f.completed for f in told)  # a failed run has no curve to learn from
    state = rule.update(state, told, jax.random.key(1))
    assert state.context.shape == (4, H)
    best = max(r.final for r in done)
    assert run_check(rule, state, None) is None  # nothing to compare with before a run completes
    test = run_check(rule, state, best)
    bad = tuple(_curve(0.4)[:4])
    assert test(bad[:2]) == (False, None)  # never before min_epochs
    stop, predicted = test(bad)
    assert stop and predicted is not None and predicted < 0.6
    best_curve = tuple(_curve(0.85)[:4])
    assert test(best_curve)[0] is False  # as good as the best so far: P(better) is near 1/2
