"""The search journal: an append-only JSONL file from which a search resumes exactly.

Line 1 is a header ``{"event": "header", "format", "nax_version", "seed", "config"}``;
every later line is one event::

    start    run, batch, arch, dataset, seed                      a run was handed out
    epoch    run, arch, dataset, epoch, metrics                   one epoch of that run
    end      run, arch, dataset, epoch, metrics, curve, cost_epochs, cost_s, wall_s
    stopped  ... as end, plus predicted_final                     cut by early stopping
    failed   ... as end, plus error                               raised, diverged or died
    resume   time                                                  a resumed process starts

``epoch`` (1-based) in end/stopped/failed is the last epoch trained, ``metrics`` holds
``val_acc`` (fraction), ``curve`` the per-epoch validation accuracies. ``time`` (unix
seconds) and ``wall_s`` are the only fields that differ between two runs of the same
search. Lines are written with one ``write`` and ``fsync``ed (a run's epoch lines together with
its end line), so a crash leaves at most one torn last line, which the reader drops
with a warning; a run without its end line is redone on resume.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

import nax

FORMAT = 1
EVENTS = ("start", "epoch", "end", "stopped", "failed", "resume")
_RESULT = ("run", "arch", "status", "curve", "final", "cost_epochs", "cost_s")
REQUIRED = {"header": ("format", "nax_version", "seed", "config"), "start": ("run", "arch", "seed"),
            "epoch": ("run", "epoch", "metrics"), "end": _RESULT, "stopped": _RESULT + ("predicted_final",),
            "failed": _RESULT + ("error",), "resume": ()}
#: fields that hold wall-clock measurements (left out when comparing two journals)
CLOCK_FIELDS = ("time", "wall_s")


class JournalWarning(UserWarning):
    """A torn last line was dropped."""


def _clean(x: Any) -> Any:
    """JSON-ready copy: numpy scalars to Python, non-finite floats to None."""
    if isinstance(x, Mapping):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if hasattr(x, "tolist") and not isinstance(x, (str, bytes)):
        return _clean(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def header(config: Mapping[str, Any], seed: int) -> dict:
    """The header line of a journal for ``config`` (JSON-able mapping) and ``seed``."""
    return {"event": "header", "format": FORMAT, "nax_version": nax.__version__, "seed": int(seed),
            "config": _clean(dict(config))}


class Journal:
    """An open journal; ``append`` writes one event line durably."""

    def __init__(self, path: str | os.PathLike, fh):
        self.path = Path(path)
        self._fh = fh

    @classmethod
    def create(cls, path: str | os.PathLike, config: Mapping[str, Any], seed: int) -> "Journal":
        """Start a new journal at ``path``; refuses to overwrite a non-empty file."""
        path = Path(path)
        if path.exists() and path.stat().st_size > 0:
            raise ValueError(f"{path} already holds a journal; resume it with --resume {path.parent} "
                             "or choose another --out")
        path.parent.mkdir(parents=True, exist_ok=True)
        j = cls(path, open(path, "ab"))
        j.append(header(config, seed))
        return j

    @classmethod
    def reopen(cls, path: str | os.PathLike) -> "Journal":
        """Open an existing journal for appending, cutting a torn last line first."""
        path = Path(path)
        valid = _valid_length(path)
        if valid < path.stat().st_size:
            with open(path, "r+b") as fh:
                fh.truncate(valid)
                fh.flush()
                os.fsync(fh.fileno())
        return cls(path, open(path, "ab"))

    def append(self, event: Mapping[str, Any]) -> None:
        """Write one event line and make it durable."""
        self.extend([event])

    def extend(self, events: Iterable[Mapping[str, Any]]) -> None:
        """Write several event lines with one write and one ``fsync`` (a run's epochs and end)."""
        text = "".join(json.dumps(_clean(dict(e)), allow_nan=False, separators=(",", ":")) + "\n" for e in events)
        self._fh.write(text.encode())
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _split(path: Path) -> tuple[list[bytes], bool]:
    """Complete lines, and whether a torn (newline-less) tail follows them."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    torn = lines[-1] != b""
    return lines[:-1], torn


def _valid_length(path: Path) -> int:
    data = path.read_bytes()
    return data.rfind(b"\n") + 1


def read(path: str | os.PathLike) -> tuple[dict, list[dict]]:
    """Header and events of a journal.

    A torn last line (no final newline: the process died while writing it) is dropped
    with a ``JournalWarning``. Any other unreadable line raises ValueError naming it.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no journal at {path}")
    lines, torn = _split(path)
    if torn:
        warnings.warn(f"{path}: last line is incomplete (the search was killed while writing it); "
                      "it is ignored", JournalWarning, stacklevel=2)
    if not lines:
        raise ValueError(f"{path}: journal has no complete header line")
    out = []
    for n, raw in enumerate(lines, start=1):
        try:
            ev = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}:{n}: corrupt journal line ({e.msg if hasattr(e, 'msg') else e}): "
                             f"{raw[:80]!r}") from None
        kind = ev.get("event") if isinstance(ev, dict) else None
        expected = ("header",) if n == 1 else EVENTS
        if kind not in expected:
            raise ValueError(f"{path}:{n}: corrupt journal line: event {kind!r}, expected one of {expected}")
        missing = [k for k in REQUIRED[kind] if k not in ev]
        if missing:
            raise ValueError(f"{path}:{n}: corrupt journal line: {kind} event lacks {missing}")
        out.append(ev)
    head = out[0]
    if head.get("format") != FORMAT:
        raise ValueError(f"{path}: journal format {head.get('format')!r}, this nax reads format {FORMAT}")
    return head, out[1:]


def check_header(head: Mapping[str, Any], config: Mapping[str, Any], seed: int,
                 ignore: Iterable[str] = ()) -> None:
    """Raise ValueError unless the journal was written by this nax version for this config."""
    if head.get("nax_version") != nax.__version__:
        raise ValueError(f"journal was written by nax {head.get('nax_version')}, this is nax "
                         f"{nax.__version__}: a resumed search would not continue exactly; start a new one")
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
