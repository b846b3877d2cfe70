"""Support for the search tests (no tests here): a simulated curve table and a simple stopping rule."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from nax import space as space_lib
from nax.curves.stopping import Decision, Schedule, StopConfig, StopRule

EPOCHS = 8


def simulated_curve_csv(
    path: Path, datasets=("alpha", "beta", "gamma"), n_archs: int = 40, seed: int = 0, epochs: int = EPOCHS
) -> Path:
    """A curve table of NB201 cells: per dataset, curves ``a - b * t**-c`` whose final value
    ``a`` rises with the number of 3x3 convolutions (so there is something to find)."""
    rng = np.random.default_rng(seed)
    space = space_lib.nb201
    encs = space.sample(__import__("jax").random.key(seed), n_archs)
    encs = encs[np.unique(space.index(encs), return_index=True)[1]]
    lines = ["arch,training_dataset,train_time_s," + ",".join(f"acc_{t}" for t in range(1, epochs + 1))]
    t = np.arange(1, epochs + 1)
    for d_i, d in enumerate(datasets):
        for enc in encs:
            a = 0.5 + 0.08 * (enc == 3).sum() + 0.02 * d_i + rng.normal(0, 0.02)
            curve = np.clip(a - 0.3 * t ** -rng.uniform(0.5, 1.5) + rng.normal(0, 0.005, epochs), 0, 1)
            lines.append(f"{space.to_string(enc)},{d},{10.0 * epochs}," + ",".join(f"{v:.6f}" for v in curve))
    path.write_text("\n".join(lines) + "\n")
    return path


def _no_state(key):
    return 0


def _count(state, finished, key):
    return state + len(finished)


def _margin_decide(margin, state, curves, best) -> Decision:
    last = np.atleast_2d(np.asarray(curves, np.float64))[:, -1]
    if best is None:
        return Decision(np.zeros(len(last), bool), np.full(len(last), np.nan), np.full(len(last), np.nan))
    stop = last < best - margin
    return Decision(stop, np.where(stop, 0.0, 1.0), last)


def margin_rule(margin: float = 0.1, min_epochs: int = 2, horizon: int = EPOCHS) -> StopRule:
    """A ``nax.curves.stopping.StopRule`` without a model: stop once a run is ``margin`` below
    the best final accuracy so far (checked every epoch from ``min_epochs``); predicts its last value."""
    return StopRule(
        init=_no_state,
        update=_count,
        decide=functools.partial(_margin_decide, margin),
        judge=None,
        schedule=Schedule(min_epochs, 1, horizon),
        prior=None,
        horizon=horizon,
        config=StopConfig(min_epochs=min_epochs),
    )
