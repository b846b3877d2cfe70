"""The search journal: an append-only JSONL file from which a search resumes exactly.

Line 1 is a header ``{"event": "header", "format", "nax_version", "seed", "config"}``;
every later line is one event::

    start    run, batch, arch, dataset, seed                      a run was handed out
    epoch    run, arch, dataset, epoch, metrics                   one epoch of that run
    end      run, arch, dataset, epoch, metrics, curve, cost_epochs, cost_s, wall_s
    stopped  ... as end, plus predicted_final                     cut by early stopping
    failed   ... as end, plus error                               raised, diverged or died
    resume   time                                                  a resumed process starts

A multi-fidelity search (jobs that pause and resume trials) writes, per job::

    job      job, run, arch, dataset, seed, start, epochs          train trial ``run`` from
                                                                   ``start`` to ``epochs`` epochs
    epoch    ... one per epoch the job trained (numbered within the trial)
    paused   ... as end, plus job, start                           the job ended below a full run
    end / failed ... plus job, start                               it ended the trial
    checkpoint  run, epoch, path, bytes                            the training state it left
    discarded   run, bytes                                         a trial's checkpoints deleted
                                                                   (it can no longer resume)

``epoch`` (1-based) in end/stopped/failed is the last epoch trained, ``metrics`` holds
``val_acc`` (fraction), ``curve`` the per-epoch validation accuracies. ``time`` (unix
seconds) and ``wall_s`` are the only fields that differ between two runs of the same
search. The file is a ``nax.journal`` (one ``write`` and ``fsync`` per run's epoch lines
and end line; a torn last line is dropped with a warning, and non-finite values are
written as ``null``); a run without its end line is redone on resume.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import nax
from nax import journal as jsonl
from nax import jsonio
from nax.journal import JournalWarning
from nax.search.evaluators import RunResult

FORMAT = 1
EVENTS = ("start", "epoch", "end", "stopped", "failed", "resume", "job", "paused", "checkpoint", "discarded")
_RESULT = ("run", "arch", "status", "curve", "final", "cost_epochs", "cost_s")
REQUIRED = {
    "header": ("format", "nax_version", "seed", "config"),
    "start": ("run", "arch", "seed"),
    "epoch": ("run", "epoch", "metrics"),
    "end": _RESULT,
    "stopped": _RESULT + ("predicted_final",),
    "failed": _RESULT + ("error",),
    "resume": (),
    "job": ("job", "run", "arch", "seed", "start", "epochs"),
    "paused": _RESULT + ("job", "start"),
    "checkpoint": ("run", "epoch", "path", "bytes"),
    "discarded": ("run", "bytes"),
}
#: fields that hold wall-clock measurements (left out when comparing two journals)
CLOCK_FIELDS = ("time", "wall_s")

__all__ = [
    "CLOCK_FIELDS",
    "EVENTS",
    "FORMAT",
    "Journal",
    "JournalWarning",
    "Replay",
    "check_header",
    "header",
    "read",
    "replay_from",
    "result_event",
    "strip_clock",
]


def header(config: Mapping[str, Any], seed: int) -> dict:
    """The header line of a journal for ``config`` (JSON-able mapping) and ``seed``."""
    return {
        "event": "header",
        "format": FORMAT,
        "nax_version": nax.__version__,
        "seed": int(seed),
        "config": jsonio.clean(dict(config)),
    }


class Journal(jsonl.Journal):
    """An open search journal (``nax.journal.Journal`` with the search's header)."""

    @classmethod
    def create(cls, path: str | os.PathLike, config: Mapping[str, Any], seed: int) -> Journal:
        """Start a new journal at ``path``; refuses to overwrite a non-empty file."""
        return super().create(
            path,
            header(config, seed),
            exists_hint=f"resume it with --resume {Path(path).parent} or choose another --out",
        )


def read(path: str | os.PathLike) -> tuple[dict, list[dict]]:
    """Header and events of a journal.

    A torn last line (no final newline: the process died while writing it) is dropped
    with a ``JournalWarning``. Any other unreadable line raises ValueError naming it.
    """
    path = Path(path)
    out = jsonl.read(path)
    if not out:
        raise ValueError(f"{path}: journal has no complete header line")
    for n, ev in enumerate(out, start=1):
        kind = ev.get("event")
        expected = ("header",) if n == 1 else EVENTS
        if kind not in expected:
            raise ValueError(f"{path}:{n}: corrupt journal line: event {kind!r}, expected one of {expected}")
        missing = [k for k in REQUIRED[kind] if k not in ev]
        if missing:
            raise ValueError(f"{path}:{n}: corrupt journal line: {kind} event lacks {missing}")
    head = out[0]
    if head.get("format") != FORMAT:
        raise ValueError(f"{path}: journal format {head.get('format')!r}, this nax reads format {FORMAT}")
    return head, out[1:]


def check_header(head: Mapping[str, Any], config: Mapping[str, Any], seed: int, ignore: Iterable[str] = ()) -> None:
    """Raise ValueError unless the journal was written by this nax version for this config."""
    if head.get("nax_version") != nax.__version__:
        raise ValueError(
            f"journal was written by nax {head.get('nax_version')}, this is nax "
            f"{nax.__version__}: a resumed search would not continue exactly; start a new one"
        )
    want = header(config, seed)
    diffs = [f"seed: journal {head.get('seed')!r}, now {want['seed']!r}"] if head.get("seed") != want["seed"] else []
    old, new = head.get("config", {}), want["config"]
    for k in sorted(set(old) | set(new)):
        if k in ignore:
            continue
        if old.get(k) != new.get(k):
            diffs.append(f"{k}: journal {old.get(k)!r}, now {new.get(k)!r}")
    if diffs:
        raise ValueError("journal config differs from this search's config (" + "; ".join(diffs) + ")")


def strip_clock(events: Iterable[Mapping[str, Any]]) -> list[dict]:
    """Events without their wall-clock fields, for comparing two journals."""
    return [{k: v for k, v in ev.items() if k not in CLOCK_FIELDS} for ev in events]


# ---------------------------------------------------------------------------- events <-> results
def result_event(run: int, result: RunResult, dataset: str, job: int | None = None, start: int = 0) -> dict:
    """The event that records ``result`` of ``run`` (with ``job``: a multi-fidelity job)."""
    r = result
    kind = {"completed": "end", "stopped": "stopped", "paused": "paused"}.get(r.status, "failed")
    ev = {
        "event": kind,
        "run": run,
        "arch": r.arch,
        "dataset": dataset,
        "status": r.status,
        "epoch": len(r.curve),
        "metrics": {"val_acc": r.final if r.status == "completed" else (r.curve[-1] if r.curve else None)},
        "curve": list(r.curve),
        "final": r.final,
        "cost_epochs": r.cost_epochs,
        "cost_s": r.cost_s,
        "wall_s": r.wall_s,
    }
    if job is not None:
        ev["job"], ev["start"] = job, start
    if r.warning:
        ev["warning"] = r.warning
    if kind == "stopped":
        ev["predicted_final"] = r.predicted_final
    if kind == "failed":
        ev["error"] = r.error
    return ev


def result_from_event(ev: Mapping[str, Any]) -> RunResult:
    return RunResult(
        ev["arch"],
        ev["status"],
        tuple(float(v) for v in ev["curve"]),
        ev.get("final"),
        ev.get("predicted_final"),
        int(ev["cost_epochs"]),
        float(ev["cost_s"]),
        float(ev.get("wall_s") or 0.0),
        ev.get("error"),
        tuple({"val_acc": float(v)} for v in ev["curve"][int(ev.get("start", 0)) :]),
    )


class Replay(NamedTuple):
    """What a journal recorded. Full runs: ``starts`` and ``finished`` results by run id.
    Multi-fidelity jobs: ``jobs`` (their job events) and ``job_results`` by job number,
    ``order`` the job numbers in the order their results were recorded (the order the
    strategy was told them), ``checkpoints`` each run's last checkpoint event."""

    starts: dict[int, dict]
    finished: dict[int, RunResult]
    jobs: dict[int, dict] = {}
    job_results: dict[int, RunResult] = {}
    order: tuple[int, ...] = ()
    checkpoints: dict[int, dict] = {}


def replay_from(events: Sequence[Mapping[str, Any]]) -> Replay:
    starts, finished, jobs, job_results, order, ckpts = {}, {}, {}, {}, [], {}
    for ev in events:
        kind = ev["event"]
        if kind == "start":
            starts[ev["run"]] = ev
        elif kind == "job":
            jobs[ev["job"]] = ev
        elif kind in ("end", "stopped", "failed", "paused"):
            if "job" in ev:
                job_results[ev["job"]] = result_from_event(ev)
                order.append(ev["job"])
            else:
                finished[ev["run"]] = result_from_event(ev)
        elif kind == "checkpoint":
            ckpts[ev["run"]] = ev
        elif kind == "discarded":
            ckpts.pop(ev["run"], None)
    return Replay(starts, finished, jobs, job_results, tuple(order), ckpts)
