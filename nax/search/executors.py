"""Executors: where evaluations run. In-process (default) or on a Ray cluster.

``executor.map(evaluator, tasks)`` yields one ``RunResult`` per task, in task order, each
as soon as it and all earlier ones are done. An exception raised inside an evaluation
becomes a ``failed`` result (the search goes on); it is not retried, since it would
recur. A Ray worker that dies mid-run (out of memory, killed, segfault) is retried once
on another worker, then recorded as ``failed``. Both executors produce the same results
for the same tasks: everything a run depends on travels with its task.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np

from nax.search.evaluators import Evaluator, RunResult, StopFn


class Task(NamedTuple):
    """One evaluation: run id, encoding ``(E,)``, seed, and the early-stopping test."""

    run: int
    enc: np.ndarray
    seed: int
    should_stop: StopFn | None = None


def _failed(evaluator: Evaluator, task: Task, error: str, wall_s: float) -> RunResult:
    return RunResult(evaluator.space.to_string(task.enc), "failed", wall_s=wall_s, error=error)


def run_task(evaluator: Evaluator, task: Task) -> RunResult:
    """Evaluate one task; an exception becomes a ``failed`` result naming it."""
    t0 = time.perf_counter()
    try:
        return evaluator.evaluate(task.enc, task.seed, task.should_stop)
    except Exception as e:  # noqa: BLE001 - any error of one run must not end the search
        where = traceback.extract_tb(e.__traceback__)[-1]
        msg = f"{type(e).__name__}: {e} (at {where.filename.rsplit('/', 1)[-1]}:{where.lineno})"
        return _failed(evaluator, task, msg, time.perf_counter() - t0)


class InProcessExecutor:
    """Evaluates tasks one after the other in this process."""

    name = "local"
    parallelism = 1

    def map(self, evaluator: Evaluator, tasks: Sequence[Task]) -> Iterator[RunResult]:
        for task in tasks:
            yield run_task(evaluator, task)

    def close(self) -> None:
        pass


class RayExecutor:
    """Evaluates tasks as Ray tasks, all of a batch at once.

    ``address``: a Ray cluster (``"auto"`` or ``ray://host:10001``); None starts or joins
    the local instance (``RAY_ADDRESS`` is honoured by Ray itself). ``num_cpus`` /
    ``num_gpus``: resources one evaluation claims, so a cluster of GPU machines runs one
    training per GPU with ``num_gpus=1``. ``max_retries``: re-runs after a worker dies.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: float = 1,
        num_gpus: float = 0,
        max_retries: int = 1,
        init_kwargs: dict | None = None,
    ):
        try:
            import ray
        except ImportError:
            raise ValueError("the ray executor needs Ray: pip install 'nax[ray]'") from None
        self._ray = ray
        if not ray.is_initialized():
            ray.init(address=address, **(init_kwargs or {}))
        self._remote = ray.remote(_ray_run_task).options(
            num_cpus=num_cpus, num_gpus=num_gpus, max_retries=max_retries, retry_exceptions=False
        )
        self.max_retries = max_retries
        self._evaluator_ref = (None, None)

    @property
    def parallelism(self) -> int:
        return max(1, int(self._ray.cluster_resources().get("CPU", 1)))

    def _ref(self, evaluator: Evaluator):
        # ship a (possibly large) table evaluator to the object store once, not per task
        if self._evaluator_ref[0] is not evaluator:
            self._evaluator_ref = (evaluator, self._ray.put(evaluator))
        return self._evaluator_ref[1]

    def map(self, evaluator: Evaluator, tasks: Sequence[Task]) -> Iterator[RunResult]:
        ref = self._ref(evaluator)
        t0 = time.perf_counter()
        futures = [self._remote.remote(ref, task) for task in tasks]
        for task, fut in zip(tasks, futures):
            try:
                yield self._ray.get(fut)
            except self._ray.exceptions.RayError as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                yield _failed(
                    evaluator,
                    task,
                    f"worker died ({1 + self.max_retries} attempts): {type(e).__name__}: {first}",
                    time.perf_counter() - t0,
                )

    def close(self) -> None:
        pass


def _ray_run_task(evaluator: Evaluator, task: Task) -> RunResult:
    return run_task(evaluator, task)


def get(name: str, **kw) -> InProcessExecutor | RayExecutor:
    """``'local'`` or ``'ray'``."""
    if name == "local":
        return InProcessExecutor()
    if name == "ray":
        return RayExecutor(**kw)
    raise ValueError(f"unknown executor {name!r}; accepted: local, ray")
