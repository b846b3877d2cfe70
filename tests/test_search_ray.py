"""The Ray executor against a local Ray instance: same results as in-process; dead workers."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import jax
import pytest

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'nax[ray]')")

# ray.init starts its processes with fork+exec, which JAX's fork warning cannot tell apart
# Ray starts worker processes: tens of seconds per test on two cores
pytestmark = [pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning"), pytest.mark.slow]

from test_search_support import EPOCHS, margin_rule, simulated_curve_csv  # noqa: E402

from nax import tables  # noqa: E402
from nax.search import journal as journal_lib  # noqa: E402
from nax.search import loop, strategies  # noqa: E402
from nax.search.evaluators import CurveTableEvaluator  # noqa: E402
from nax.search.executors import InProcessExecutor, RayExecutor, Task  # noqa: E402


@pytest.fixture(scope="module")
def ray_executor():
    from ray import cloudpickle

    # workers cannot import the test modules: ship their classes by value
    for name in ("test_search_support", __name__):
        cloudpickle.register_pickle_by_value(sys.modules[name])
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}},
    )
    try:
        yield RayExecutor()
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def evaluator(tmp_path_factory):
    return CurveTableEvaluator(
        tables.load_curves(simulated_curve_csv(tmp_path_factory.mktemp("t") / "sim.csv")), "beta"
    )


def _search(evaluator, executor, out: Path):
    strat = strategies.evolution(evaluator.space, population=4, sample=2, batch=3, candidates=evaluator.candidates())
    j = journal_lib.Journal.create(out / "journal.jsonl", {"batch": 3}, 1)
    try:
        return loop.run_search(
            strat,
            evaluator,
            loop.Budget(epochs=8 * EPOCHS),
            jax.random.key(1),
            executor=executor,
            journal=j,
            stop_rule=margin_rule(),
        )
    finally:
        j.close()


def test_ray_equals_in_process(evaluator, ray_executor, tmp_path):
    a = _search(evaluator, InProcessExecutor(), tmp_path / "a")
    b = _search(evaluator, ray_executor, tmp_path / "b")
    ja = journal_lib.strip_clock(journal_lib.read(tmp_path / "a" / "journal.jsonl")[1])
    jb = journal_lib.strip_clock(journal_lib.read(tmp_path / "b" / "journal.jsonl")[1])
    assert ja == jb
    assert len(a.runs) >= 9 and any(r.result.status == "stopped" for r in b.runs)


def _stable(arch: str) -> str:
    return hashlib.sha1(arch.encode()).hexdigest()[:12]  # str hash() differs between processes


class DyingEvaluator:
    """Replays a table, but the worker process dies (os._exit) on chosen attempts: the
    first attempt of ``flaky``, every attempt of ``doomed``. Attempts are counted in files
    because each attempt runs in a fresh worker."""

    def __init__(self, inner, marks: Path, flaky: str, doomed: str):
        self.inner, self.marks, self.flaky, self.doomed = inner, marks, flaky, doomed
        self.space, self.dataset, self.max_epochs = inner.space, inner.dataset, inner.max_epochs

    def candidates(self):
        return self.inner.candidates()

    def attempts(self, arch: str) -> int:
        return len(list(self.marks.glob(f"{_stable(arch)}-*")))

    def evaluate(self, enc, seed, should_stop=None):
        arch = self.space.to_string(enc)
        n = self.attempts(arch)
        (self.marks / f"{_stable(arch)}-{n}").touch()
        if arch == self.doomed or (arch == self.flaky and n == 0):
            os._exit(1)
        return self.inner.evaluate(enc, seed, should_stop)


def test_dead_worker_is_retried_once_then_failed(evaluator, ray_executor, tmp_path):
    encs = evaluator.candidates()[:3]
    names = [evaluator.space.to_string(e) for e in encs]
    dying = DyingEvaluator(evaluator, tmp_path, flaky=names[0], doomed=names[1])
    results = list(ray_executor.map(dying, [Task(i, e, 0, None) for i, e in enumerate(encs)]))
    assert [r.status for r in results] == ["completed", "failed", "completed"]
    assert results[0].curve == evaluator.evaluate(encs[0], 0).curve
    assert "worker died (2 attempts)" in results[1].error
    assert dying.attempts(names[0]) == 2 and dying.attempts(names[1]) == 2 and dying.attempts(names[2]) == 1


def test_asha_runs_asynchronously_on_ray_and_resumes_in_process(evaluator, ray_executor, tmp_path):
    """ASHA with two jobs in flight on Ray: each result is told as its job finishes; the
    journal records that order, and a search resumed from it in process replays it exactly."""
    from nax.search import halving

    def strat():
        return halving.asha(1, EPOCHS, 2, space=evaluator.space, candidates=evaluator.candidates())

    path = tmp_path / "ray" / "journal.jsonl"
    j = journal_lib.Journal.create(path, {"strategy": "asha"}, 0)
    try:
        out = loop.run_search(
            strat(), evaluator, loop.Budget(epochs=40), jax.random.key(0), executor=ray_executor, journal=j, workers=2
        )
    finally:
        j.close()
    assert out.epochs_spent <= 40 and any(r.start > 0 for r in out.runs)
    for r in out.runs:  # every job's curve is the table's, sliced to where the job took it
        assert r.result.curve == evaluator.evaluate(r.enc, r.seed).curve[: len(r.result.curve)]
    events = journal_lib.read(path)[1]
    # resumed in process from the whole journal, then from a cut one: the same jobs, in the same order
    for keep in (len(events), len(events) // 2):
        cut = tmp_path / f"cut{keep}" / "journal.jsonl"
        cut.parent.mkdir()
        cut.write_bytes(b"".join(line + b"\n" for line in path.read_bytes().split(b"\n")[: keep + 1]))
        replay = loop.replay_from(journal_lib.read(cut)[1])
        j = journal_lib.Journal.reopen(cut)
        try:
            again = loop.run_search(
                strat(), evaluator, loop.Budget(epochs=40), jax.random.key(0), journal=j, replay=replay, workers=2
            )
        finally:
            j.close()
        n = len(replay.order)
        mine = [(r.run, r.job, r.start, r.result.curve) for r in again.runs]
        assert mine[:n] == [(r.run, r.job, r.start, r.result.curve) for r in out.runs][:n]
        if keep == len(events):
            assert len(again.runs) == len(out.runs) and again.epochs_spent == out.epochs_spent
