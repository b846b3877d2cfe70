"""Checkpoints of training runs that pause and resume (orbax), the latest epoch per run only.

A checkpoint *root* holds one folder per run, named by a run id its caller picks (the
search uses its trial numbers). A run folder holds one finalized orbax checkpoint,
``epoch-000005/``, with two items: ``state`` (the training state's arrays) and ``meta``
(JSON: which run it is, the epoch and step reached, the RNG key, the curve so far, the
seconds spent, a SHA-256 of the arrays). orbax writes a checkpoint to a temporary folder
and renames it when complete, and the previous epoch's folder is deleted only after that,
so a process killed at any moment leaves one whole checkpoint (the old or the new one)
and disk use stays at one checkpoint per run. The write runs in a background thread
while the next epoch trains (the arrays are copied to the host first).

``nax.train.train_architecture(..., checkpoints=RunCheckpoints(root, run_id), resume=...,
until_epoch=...)`` saves and restores through :class:`RunCheckpoints`; a resumed run
gives the curve the uninterrupted run gives, bit for bit on CPU (the data order of an
epoch is a function of the seed and epoch; the learning rate one of the step).

    ck = RunCheckpoints("/tmp/run.ckpt", "trial-000003")
    rec = train.train_architecture(enc, splits, cfg, checkpoints=ck, until_epoch=4)   # paused after 4
    rec = train.train_architecture(enc, splits, cfg, checkpoints=ck, resume=True)     # epochs 5..cfg.epochs
    usage("/tmp/run.ckpt")        # Usage(bytes=..., runs=..., per_run={...})

A missing or unreadable checkpoint at resume is not an error: the run restarts from
epoch 0 with one :class:`CheckpointWarning` line. A checkpoint of *another* run (other
architecture, dataset or config) is one: resuming it would mix two runs.

One ``RunCheckpoints`` per job; a run folder has one writer at a time (the search never
runs two jobs of one trial at once). Runs in other processes (Ray workers) write other
folders; they need the same file system and an absolute root.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
import warnings
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from nax import jsonio
from nax.records import EpochMetrics

FORMAT = 1
_EPOCH_DIR = re.compile(r"^epoch-(\d{6})$")


class CheckpointWarning(UserWarning):
    """A run could not resume from its checkpoint (missing or unreadable) and restarts from epoch 0."""


class Saved(NamedTuple):
    """A checkpoint on disk: its folder, the epochs it holds, its size."""

    path: str
    epoch: int
    bytes: int


class Progress(NamedTuple):
    """Where a run stands after ``epoch`` epochs (the non-array part of its checkpoint)."""

    epoch: int
    step: int  # optimiser steps taken: the learning-rate schedule's position
    curve: tuple[EpochMetrics, ...]
    elapsed_s: float  # wall seconds spent on the run so far, all segments together
    rng: tuple[int, ...]  # the run's PRNG key data (every random draw derives from it)


class Usage(NamedTuple):
    """Disk use of a checkpoint root: total bytes, run folders, bytes per run id."""

    bytes: int
    runs: int
    per_run: dict[str, int]


def folder_bytes(path: str | os.PathLike) -> int:
    """Bytes of the files under ``path`` (0 when absent)."""
    total = 0
    for base, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(base, f)).st_size
            except FileNotFoundError:  # removed while walking (another job pruning)
                pass
    return total


# ---------------------------------------------------------------- packing
# orbax writes one tensorstore array per leaf: the supernet state has ~300 small leaves,
# which cost ~1.5 s per save on the 2-core machine. The leaves' bytes, concatenated into
# one uint8 array, take ~0.2 s (measured there, loaded), restore exactly whatever the
# dtypes, and make a corrupt file one failed read (several concurrent reads of which one
# fails leave tensorstore callbacks on orbax's closed event loop: "Event loop is closed"
# tracebacks after the warning). The template state gives the tree back.


def pack(leaves: Sequence[np.ndarray]) -> np.ndarray:
    """The leaves' bytes, in tree order, as one flat uint8 array."""
    parts = [np.ascontiguousarray(leaf).reshape(-1).view(np.uint8) for leaf in leaves]
    return np.concatenate(parts) if parts else np.zeros(0, np.uint8)


def unpack(flat: np.ndarray, template: Sequence[Any]) -> list[np.ndarray]:
    """Leaves shaped and typed like ``template``'s from ``pack``'s bytes; ValueError if sizes differ."""
    flat = np.ascontiguousarray(flat, np.uint8)
    sizes = [int(np.prod(t.shape)) * np.dtype(t.dtype).itemsize for t in template]
    if sum(sizes) != flat.size:
        raise ValueError(f"the saved state has {flat.size} bytes, the network's {sum(sizes)}")
    ends = np.cumsum(sizes)
    return [flat[e - n : e].view(np.dtype(t.dtype)).reshape(t.shape) for t, n, e in zip(template, sizes, ends)]


def fingerprint(flat: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(flat).tobytes()).hexdigest()


def _curve_to_json(curve: Iterable[EpochMetrics]) -> list:
    # float.hex: exact, and JSON-safe for NaN and infinities (jsonio would write null)
    return [[m.epoch, *(float(v).hex() for v in m[1:])] for m in curve]


def _curve_from_json(rows: Iterable) -> tuple[EpochMetrics, ...]:
    return tuple(EpochMetrics(int(r[0]), *(float.fromhex(v) for v in r[1:])) for r in rows)


# ---------------------------------------------------------------- one run


class RunCheckpoints:
    """The checkpoint folder ``root/run_id`` of one run: its latest epoch only.

    After ``train_architecture`` returns: ``resumed_epoch`` (epochs restored from the
    checkpoint; 0 when the run started from scratch), ``warning`` (the warning line when a
    resume fell back to epoch 0, else None) and ``saved`` (the checkpoint left on disk:
    a paused run's; None once the run completed, diverged or was stopped).
    """

    def __init__(self, root: str | os.PathLike, run_id: str):
        if not run_id or "/" in run_id or run_id.startswith("."):
            raise ValueError(f"run id {run_id!r} must be a plain folder name")
        self.root, self.run_id = Path(root), run_id
        self.path = self.root / run_id
        self.resumed_epoch: int = 0
        self.warning: str | None = None
        self.saved: Saved | None = None
        self._pending: Future | None = None

    def _epochs(self) -> list[tuple[int, Path]]:
        if not self.path.is_dir():
            return []
        found = ((_EPOCH_DIR.match(p.name), p) for p in self.path.iterdir())
        return sorted((int(m.group(1)), p) for m, p in found if m)

    def latest(self) -> Saved | None:
        """The finalized checkpoint on disk (no restore, no check), or None."""
        eps = self._epochs()
        return Saved(str(eps[-1][1]), eps[-1][0], folder_bytes(eps[-1][1])) if eps else None

    def delete(self) -> int:
        """Delete the run's folder (it can no longer resume); bytes freed."""
        if self._pending is not None:  # let it finish, or it would write the folder back
            self._pending.exception()
            self._pending = None
        freed = folder_bytes(self.path)
        shutil.rmtree(self.path, ignore_errors=True)
        self.saved = None
        return freed

    def save(self, leaves: Sequence[Any], progress: Progress, identity: Mapping[str, Any]) -> None:
        """Checkpoint the state ``leaves`` (host or device arrays, tree order) after ``progress.epoch``.

        The arrays are copied to the host here (the caller may then donate or overwrite them);
        orbax writes them in a background thread while the next epoch trains. One write at a
        time per run, in epoch order; ``wait`` returns the checkpoint once written and raises
        the error of a failed write.
        """
        import jax

        flat = pack([np.asarray(x) for x in jax.device_get(list(leaves))])
        meta = {
            "format": FORMAT,
            "run": jsonio.clean(dict(identity)),
            "epoch": progress.epoch,
            "step": progress.step,
            "rng": [int(v) for v in progress.rng],
            "curve": _curve_to_json(progress.curve),
            "elapsed_s": float(progress.elapsed_s).hex(),
            "sha256": fingerprint(flat),
        }
        self.wait()
        self._pending = _writer().submit(self._write, flat, meta)

    def wait(self) -> Saved | None:
        """The checkpoint on disk once the pending write (if any) is done."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self.saved = pending.result()
        return self.saved

    def _write(self, flat: np.ndarray, meta: Mapping[str, Any]) -> Saved:
        import orbax.checkpoint as ocp

        self.path.mkdir(parents=True, exist_ok=True)
        target = self.path / f"epoch-{meta['epoch']:06d}"
        if target.exists():  # a run restarted without resuming re-reaches an epoch it had saved
            shutil.rmtree(target)
        ocp.Checkpointer(ocp.CompositeCheckpointHandler()).save(
            target, args=ocp.args.Composite(state=ocp.args.StandardSave({"bytes": flat}), meta=ocp.args.JsonSave(meta))
        )
        # only now, with the new one committed: older epochs and torn temporary folders
        for p in self.path.iterdir():
            if p != target:
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        return Saved(str(target), int(meta["epoch"]), folder_bytes(target))

    def restore(self, template: Sequence[Any], identity: Mapping[str, Any]) -> tuple[list[np.ndarray], Progress]:
        """The state leaves (shaped like ``template``'s) and progress of the latest checkpoint.

        Raises FileNotFoundError (none), ``ValueError`` subclass :class:`OtherRun` (it is
        another run's), or another exception (unreadable: corrupt or torn).
        """
        import orbax.checkpoint as ocp

        eps = self._epochs()
        if not eps:
            raise FileNotFoundError(f"no checkpoint in {self.path}")
        epoch, path = eps[-1]
        ck = ocp.Checkpointer(ocp.CompositeCheckpointHandler())
        meta = ck.restore(path, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        if meta.get("format") != FORMAT or meta.get("epoch") != epoch:
            raise ValueError(f"unexpected checkpoint metadata (format {meta.get('format')}, epoch {meta.get('epoch')})")
        if meta["run"] != jsonio.clean(dict(identity)):
            diff = sorted(
                k for k in set(meta["run"]) | set(identity) if meta["run"].get(k) != jsonio.clean(identity.get(k))
            )
            raise OtherRun(f"checkpoint {path} belongs to another run (differs in {', '.join(diff)})")
        flat = np.asarray(ck.restore(path, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]["bytes"])
        if fingerprint(flat) != meta["sha256"]:
            raise ValueError("the arrays do not match their SHA-256 (corrupt)")
        progress = Progress(
            epoch,
            int(meta["step"]),
            _curve_from_json(meta["curve"]),
            float.fromhex(meta["elapsed_s"]),
            tuple(meta["rng"]),
        )
        return unpack(flat, template), progress

    def resume(self, template: Sequence[Any], identity: Mapping[str, Any]) -> tuple[list[np.ndarray], Progress] | None:
        """``restore``, or None after one CheckpointWarning (and deleting what was there)
        when the checkpoint is missing or unreadable; another run's raises OtherRun."""
        self.resumed_epoch, self.warning = 0, None
        try:
            leaves, progress = self.restore(template, identity)
        except OtherRun:
            raise
        except Exception as e:  # noqa: BLE001 - whatever is unreadable, the run restarts
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            self.warning = f"checkpoint of run {self.run_id} cannot be resumed ({reason}); it restarts from epoch 0"
            warnings.warn(self.warning, CheckpointWarning, stacklevel=3)
            self.delete()
            return None
        self.resumed_epoch = progress.epoch
        self.saved = self.latest()
        return leaves, progress

    def start_fresh(self) -> None:
        """A run that does not resume replaces whatever checkpoint its folder held."""
        self.resumed_epoch, self.warning = 0, None
        self.delete()


_WRITER: ThreadPoolExecutor | None = None
_WRITER_LOCK = threading.Lock()


def _writer() -> ThreadPoolExecutor:
    """The background threads that write checkpoints (joined at interpreter exit, so a
    pending write completes; a killed process leaves orbax's temporary folder only)."""
    global _WRITER
    with _WRITER_LOCK:
        if _WRITER is None:
            _WRITER = ThreadPoolExecutor(max_workers=2, thread_name_prefix="nax-checkpoint")
        return _WRITER


class OtherRun(ValueError):
    """The checkpoint found belongs to another run (architecture, dataset or config differ)."""


# ---------------------------------------------------------------- a root of many runs


def run_ids(root: str | os.PathLike) -> list[str]:
    """The run folders under ``root`` (sorted)."""
    root = Path(root)
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def usage(root: str | os.PathLike) -> Usage:
    """Disk use of a checkpoint root: bytes in all, run folders, bytes per run."""
    per_run = {r: folder_bytes(Path(root) / r) for r in run_ids(root)}
    return Usage(sum(per_run.values()), len(per_run), per_run)


def delete_run(root: str | os.PathLike, run_id: str) -> int:
    """Delete one run's checkpoints (it can no longer resume); bytes freed."""
    return RunCheckpoints(root, run_id).delete()


def prune(root: str | os.PathLike, keep: Iterable[str]) -> int:
    """Delete every run's checkpoints except those of ``keep``; bytes freed."""
    keep = set(keep)
    return sum(delete_run(root, r) for r in run_ids(root) if r not in keep)
