"""An append-only JSONL journal that survives a kill: the one nax uses for every long job.

A journal is a file of JSON objects, one a line, the first a header. Lines are written
with one ``write`` and ``fsync``ed (several lines that belong together, with one write),
so a process killed at any moment leaves complete lines followed by at most one torn,
newline-less tail. :func:`read` drops that tail with a :class:`JournalWarning`;
:meth:`Journal.reopen` cuts it before appending. Values are encoded by
:mod:`nax.jsonio` (non-finite floats as ``null``).

Users: the search journal (``nax.search.journal``, its event schema on top of this) and
the meta-dataset builder (``experiments/build_metadataset.py``, one training record a line).

    with Journal.create(path, {"kind": "my-job", "config": cfg}) as j:
        j.append({"step": 1, "loss": 0.5})
    header, *records = read(path)
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from nax import jsonio


class JournalWarning(UserWarning):
    """A torn last line (the writer was killed while writing it) was dropped."""


def encode(obj: Mapping[str, Any]) -> str:
    """One journal line (without its newline)."""
    return jsonio.dumps(dict(obj), separators=(",", ":"))


class Journal:
    """An open journal; ``append`` / ``extend`` write lines durably."""

    def __init__(self, path: str | os.PathLike, fh):
        self.path = Path(path)
        self._fh = fh

    @classmethod
    def create(cls, path: str | os.PathLike, header: Mapping[str, Any], *, exists_hint: str = "") -> Journal:
        """A new journal at ``path`` starting with ``header``; refuses a non-empty file
        (``exists_hint`` is added to that error, e.g. how to resume instead)."""
        path = Path(path)
        if path.exists() and path.stat().st_size > 0:
            raise ValueError(f"{path} already holds a journal" + (f"; {exists_hint}" if exists_hint else ""))
        path.parent.mkdir(parents=True, exist_ok=True)
        j = cls(path, open(path, "ab"))
        j.append(header)
        return j

    @classmethod
    def reopen(cls, path: str | os.PathLike) -> Journal:
        """Open an existing journal for appending, cutting a torn last line first."""
        path = Path(path)
        valid = path.read_bytes().rfind(b"\n") + 1
        if valid < path.stat().st_size:
            with open(path, "r+b") as fh:
                fh.truncate(valid)
                fh.flush()
                os.fsync(fh.fileno())
        return cls(path, open(path, "ab"))

    def append(self, obj: Mapping[str, Any]) -> None:
        """Write one line and make it durable."""
        self.extend([obj])

    def extend(self, objs: Iterable[Mapping[str, Any]]) -> None:
        """Write several lines with one write and one ``fsync`` (all or, after a kill, a torn tail)."""
        text = "".join(encode(o) + "\n" for o in objs)
        if not text:
            return
        self._fh.write(text.encode())
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read(path: str | os.PathLike) -> list[dict]:
    """Every complete line of the journal at ``path``, parsed (the header first).

    A torn last line is dropped with one ``JournalWarning``; any other line that is not
    a JSON object raises ValueError naming ``path:line``. A missing file raises
    FileNotFoundError; an empty one gives ``[]``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no journal at {path}")
    lines = path.read_bytes().split(b"\n")
    if lines[-1] != b"":
        warnings.warn(
            f"{path}: last line is incomplete (the writer was killed while writing it); it is ignored",
            JournalWarning,
            stacklevel=2,
        )
    out = []
    for n, raw in enumerate(lines[:-1], start=1):
        try:
            obj = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}:{n}: corrupt journal line ({getattr(e, 'msg', e)}): {raw[:80]!r}") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{path}:{n}: corrupt journal line (not a JSON object): {raw[:80]!r}")
        out.append(obj)
    return out
