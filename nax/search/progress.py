"""What a running search shows: its start-up fits, one line per run, a bar of the budget.

On a terminal (``file`` a TTY and not ``quiet``) a tqdm bar counts the budget spent, the
run in flight's epochs, the best accuracy so far and an ETA, with each finished run's line
printed above it; otherwise (``quiet``, a log file, a pipe) only the lines are shown, each
with the budget fraction and an ETA of its own. A resumed search prints one line for the
runs it replays from the journal instead of repeating them.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Mapping

from tqdm.auto import tqdm


def _duration(s: float) -> str:
    s = max(0, int(round(s)))
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class Progress:
    """Progress of one search; ``log`` takes every line (default ``print``)."""

    def __init__(self, log: Callable[[str], None] = print, *, quiet: bool = False, decimals: int = 4, file=None):
        self.log, self.decimals = log, decimals
        self.file = file if file is not None else sys.stderr
        self.live = not quiet and bool(getattr(self.file, "isatty", lambda: False)())
        self._bar = None
        self._budget, self._max_epochs = None, 0
        self._replayed: frozenset[int] = frozenset()
        self._n_replayed, self._resume_told = 0, True
        self._spent, self._seconds, self._best = 0, 0.0, None
        self._t0, self._spent0 = time.perf_counter(), 0.0
        self._runs_seen = 0

    # ------------------------------------------------------------------ lines
    def _emit(self, line: str) -> None:
        if self._bar is not None:
            with tqdm.external_write_mode(file=sys.stdout):
                self.log(line)
        else:
            self.log(line)

    def _fmt(self, v: float | None) -> str:
        return "-" if v is None else f"{v:.{self.decimals}f}"

    @contextlib.contextmanager
    def stage(self, what: str):
        """Around one start-up fit: a live timer on a terminal, a line before and after otherwise."""
        t0 = time.perf_counter()
        if not self.live:
            self._emit(f"{what} ...")
            yield
            self._emit(f"{what}: done in {_duration(time.perf_counter() - t0)}")
            return
        bar = tqdm(total=None, desc=what, bar_format="{desc} ... {elapsed}", file=self.file, leave=False)
        done = threading.Event()

        def tick():  # tqdm redraws only on updates; a fit has none to give
            while not done.wait(0.5):
                bar.refresh()

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        try:
            yield
        finally:
            done.set()
            ticker.join()
            bar.close()
        self._emit(f"{what}: done in {_duration(time.perf_counter() - t0)}")

    # ------------------------------------------------------------------ the search
    def start(self, budget, max_epochs: int, replayed: Mapping[int, object] = {}) -> None:
        """The budget (``loop.Budget``), a full run's epochs, and the runs a resume replays."""
        self._budget, self._max_epochs = budget, int(max_epochs)
        self._replayed = frozenset(replayed)
        self._resume_told = not self._replayed
        self._t0 = time.perf_counter()
        if self._replayed:  # the strategy and stopping rule relearn them: seconds to minutes
            self._emit(f"replaying {len(self._replayed)} finished runs from the journal ...")
        if self.live:
            epochs = budget.epochs is not None
            self._bar = tqdm(
                total=budget.epochs if epochs else 60.0 * budget.minutes,
                unit="epoch" if epochs else "s",
                desc="search",
                file=self.file,
                dynamic_ncols=True,
                leave=True,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} {unit} "
                "[{elapsed}<{remaining}{postfix}]",
            )

    def _tell_resume(self) -> None:
        if not self._resume_told:
            self._resume_told = True
            self._emit(f"resumed {self._n_replayed} runs ({self._spent} epochs) from the journal")
            # the ETA counts from here: replaying the journal costs no training
            self._t0, self._spent0 = time.perf_counter(), self._used()
            if self._bar is not None:
                self._bar.reset(total=self._bar.total)
                self._bar.initial = self._bar.n = self._used()
                self._bar.refresh()

    def _used(self) -> float:
        return self._spent if self._budget is None or self._budget.epochs is not None else self._seconds

    def _status(self, epoch: int | None = None) -> None:
        if self._bar is None:
            return
        run = f"run {self._runs_seen}" + ("" if epoch is None else f" epoch {epoch}/{self._max_epochs}")
        self._bar.set_postfix_str(f"{run}, best {self._fmt(self._best)}", refresh=False)
        in_flight = (epoch or 0) if self._budget.epochs is not None else 0
        self._bar.n = self._used() + in_flight
        self._bar.refresh()

    def run_begins(self) -> None:
        """A new run starts (in this process)."""
        self._tell_resume()
        self._status(0)

    def epoch(self, epoch: int) -> None:
        """The run in flight finished ``epoch`` epochs."""
        self._status(epoch)

    def eta(self) -> float | None:
        """Seconds until the budget is spent, at the rate spent since the start (or resume)."""
        if self._budget is None:
            return None
        total = self._budget.epochs if self._budget.epochs is not None else 60.0 * self._budget.minutes
        done, dt = self._used() - self._spent0, time.perf_counter() - self._t0
        return None if done <= 0 or dt <= 0 else max(0.0, total - self._used()) * dt / done

    def on_run(self, run, best: float | None, spent: int) -> None:
        """``loop.run_search``'s ``on_run``."""
        self._spent, self._seconds, self._best = spent, self._seconds + run.result.cost_s, best
        self._runs_seen = max(self._runs_seen, run.run + 1)
        if (run.run if getattr(run, "job", None) is None else run.job) in self._replayed:
            self._n_replayed += 1
            return
        self._tell_resume()
        self._emit(self.line(run))
        self._status()

    def line(self, run) -> str:
        """``run   7 |arch| stopped 4/12 epochs acc 0.812 (predicted 0.850) | best 0.934 | 144/240 epochs (60%), eta 2m30s``"""
        r = run.result
        what = f"{r.status} {r.cost_epochs}/{self._max_epochs} epochs"
        if getattr(run, "job", None) is not None:  # a multi-fidelity job: where it took its trial
            what = f"{r.status} {run.start}->{len(r.curve)}/{self._max_epochs} epochs"
            if r.status == "paused" and r.curve:
                what += f" acc {self._fmt(r.curve[-1])}"
        if r.status == "completed":
            what += f" acc {self._fmt(r.final)}"
        elif r.status == "stopped":
            what += f" acc {self._fmt(r.curve[-1] if r.curve else None)} (predicted {self._fmt(r.predicted_final)})"
        elif r.error:
            what += f": {r.error}"
        b = self._budget
        if b is None:
            spent = f"{self._spent} epochs"
        elif b.epochs is not None:
            spent = f"{self._spent}/{b.epochs:g} epochs ({100 * self._spent / b.epochs:.0f}%)"
        else:
            spent = f"{self._seconds / 60:.1f}/{b.minutes:g} min ({100 * self._seconds / 60 / b.minutes:.0f}%)"
        eta = self.eta()
        return f"run {run.run:3d} {r.arch} {what} | best {self._fmt(self._best)} | {spent}" + (
            "" if eta is None else f", eta {_duration(eta)}"
        )

    def watch(self, evaluator) -> Watched:
        """``evaluator`` reporting each run's start and epochs here (in-process executors)."""
        return Watched(evaluator, self)

    def close(self) -> None:
        self._tell_resume()
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class Watched:
    """An evaluator that reports to a ``Progress``: same results, same stop decisions.

    It passes a stop test to every run (a no-op one when the search gives none), which
    evaluators call after each epoch but the last; that is where the epochs are seen.
    """

    def __init__(self, inner, progress: Progress):
        self.inner, self.progress = inner, progress
        self.dataset, self.space, self.max_epochs = inner.dataset, inner.space, inner.max_epochs

    def candidates(self):
        return self.inner.candidates()

    def __getattr__(self, name: str):
        # what the display does not watch (checkpoint bookkeeping: discard, disk_bytes) is the inner's
        if name == "inner":
            raise AttributeError(name)
        found = getattr(self.inner, name)
        if name != "evaluate_job":
            return found

        def evaluate_job(enc, seed: int, trial: int, start: int, epochs: int):
            self.progress.run_begins()
            return found(enc, seed, trial, start, epochs)

        return evaluate_job

    def evaluate(self, enc, seed: int, should_stop=None):
        self.progress.run_begins()

        def each_epoch(curve):
            self.progress.epoch(len(curve))
            return should_stop(curve) if should_stop is not None else (False, None)

        return self.inner.evaluate(enc, seed, each_epoch)
