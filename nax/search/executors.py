"""Executors: where evaluations run. In-process (default) or on a Ray cluster.

``executor.map(evaluator, tasks)`` yields one ``RunResult`` per task, in task order, each
as soon as it and all earlier ones are done. The search driver uses ``submit(evaluator,
tasks)`` and ``take(task=None) -> (task, result)``: the result of ``task``, or with None
of whichever submitted task finishes first (ties and the in-process executor: the one
submitted first), which is how ASHA runs asynchronously on Ray. An exception raised inside an evaluation
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
    """One evaluation: run id, encoding ``(E,)``, seed, and the early-stopping test.

    A job of a multi-fidelity search also has ``job`` (its number), ``start`` (the epochs
    trial ``run`` already has) and ``epochs`` (train it until it has that many); it is
    evaluated by ``evaluator.evaluate_job``."""

    run: int
    enc: np.ndarray
    seed: int
    should_stop: StopFn | None = None
    job: int | None = None
    start: int = 0
    epochs: int | None = None

    @property
    def key(self) -> tuple[int, int | None]:
        return (self.run, self.job)


def _failed(evaluator: Evaluator, task: Task, error: str, wall_s: float) -> RunResult:
    return RunResult(evaluator.space.to_string(task.enc), "failed", wall_s=wall_s, error=error)


def run_task(evaluator: Evaluator, task: Task) -> RunResult:
    """Evaluate one task; an exception becomes a ``failed`` result naming it."""
    t0 = time.perf_counter()
    try:
        if task.epochs is not None:
            return evaluator.evaluate_job(task.enc, task.seed, task.run, task.start, task.epochs)
        return evaluator.evaluate(task.enc, task.seed, task.should_stop)
    except Exception as e:  # noqa: BLE001 - any error of one run must not end the search
        where = traceback.extract_tb(e.__traceback__)[-1]
        msg = f"{type(e).__name__}: {e} (at {where.filename.rsplit('/', 1)[-1]}:{where.lineno})"
        return _failed(evaluator, task, msg, time.perf_counter() - t0)


class InProcessExecutor:
    """Evaluates tasks one after the other in this process."""

    name = "local"
    parallelism = 1

    def __init__(self):
        self._queue: list[tuple[Evaluator, Task]] = []

    def map(self, evaluator: Evaluator, tasks: Sequence[Task]) -> Iterator[RunResult]:
        for task in tasks:
            yield run_task(evaluator, task)

    def submit(self, evaluator: Evaluator, tasks: Sequence[Task]) -> None:
        # evaluated lazily in take(): a search closed early never runs what it did not take
        self._queue.extend((evaluator, t) for t in tasks)

    def take(self, task: Task | None = None) -> tuple[Task, RunResult]:
        i = 0 if task is None else next(i for i, (_, t) in enumerate(self._queue) if t.key == task.key)
        evaluator, t = self._queue.pop(i)
        return t, run_task(evaluator, t)

    def cancel(self) -> None:
        """Forget the submitted tasks not taken."""
        self._queue.clear()

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
        self._futures: list[tuple[Evaluator, Task, object, float]] = []

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
            yield self._get(evaluator, task, fut, t0)

    def _get(self, evaluator: Evaluator, task: Task, fut, t0: float) -> RunResult:
        try:
            return self._ray.get(fut)
        except self._ray.exceptions.RayError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            return _failed(
                evaluator,
                task,
                f"worker died ({1 + self.max_retries} attempts): {type(e).__name__}: {first}",
                time.perf_counter() - t0,
            )

    def submit(self, evaluator: Evaluator, tasks: Sequence[Task]) -> None:
        ref, t0 = self._ref(evaluator), time.perf_counter()
        self._futures.extend((evaluator, t, self._remote.remote(ref, t), t0) for t in tasks)

    def take(self, task: Task | None = None) -> tuple[Task, RunResult]:
        if task is not None:
            i = next(i for i, f in enumerate(self._futures) if f[1].key == task.key)
        else:  # the first to finish; of several finished, the one submitted first
            ready, _ = self._ray.wait([f[2] for f in self._futures], num_returns=1)
            done = set(ready)
            i = next(i for i, f in enumerate(self._futures) if f[2] in done)
        evaluator, t, fut, t0 = self._futures.pop(i)
        return t, self._get(evaluator, t, fut, t0)

    def cancel(self) -> None:
        """Drop the submitted tasks not taken (a search closed early): their results are
        never read; a resumed search evaluates them again."""
        self._futures.clear()

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
