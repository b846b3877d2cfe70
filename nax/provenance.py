"""Where a result came from: the record every experiment writes next to its outputs.

    meta = {"config": dataclasses.asdict(cfg), "command": cfg.command, "seed": cfg.seed,
            **provenance(paths=["nax", "experiments/my_experiment.py"])}

The record holds no host name, user name or path outside the repository, so it can be
published with the results.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path

import nax

#: the checkout nax is imported from (an editable install); not a git repository otherwise
REPO = Path(nax.__file__).resolve().parents[1]


def _git(*args: str, cwd: Path) -> str | None:
    try:
        done = subprocess.run(["git", *args], check=False, cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def provenance(paths: Sequence[str | os.PathLike] = ("nax",), *, repo: str | os.PathLike | None = None) -> dict:
    """Versions, commit and machine of this run, as a flat JSON-serialisable dict.

    Args:
      paths: files or folders (relative to the repository root, or absolute; those
        outside the checkout are ignored) whose uncommitted changes make ``git_dirty``
        true: the code that produced the result, not unrelated work in the same checkout.
      repo: the git checkout (default: the one nax is imported from).

    Returns:
      ``nax_version``; ``git_commit`` (40 hex digits, None outside a git checkout);
      ``git_dirty`` (bool, None outside a checkout); ``python``, ``jax``, ``jaxlib``,
      ``flax``, ``optax``, ``numpyro`` versions; ``platform`` (OS and release), ``machine`` (CPU
      architecture), ``cpu_count``, ``jax_backend`` and ``jax_devices`` (device kinds
      and count, e.g. ``"2 x cpu"``); ``time_utc`` (ISO 8601, seconds).
    """
    import flax
    import jax
    import jaxlib
    import numpyro
    import optax

    root = Path(repo) if repo is not None else REPO
    commit = _git("rev-parse", "HEAD", cwd=root)
    dirty = None
    if commit is not None:
        rel = []
        for p in map(Path, paths):
            if p.is_absolute():
                try:
                    p = p.resolve().relative_to(root.resolve())
                except ValueError:  # outside the checkout: git knows nothing about it
                    continue
            rel.append(str(p))
        status = _git("status", "--porcelain", "--", *rel, cwd=root) if rel else ""
        dirty = None if status is None else bool(status)
    kinds: dict[str, int] = {}
    for d in jax.devices():
        kinds[d.device_kind] = kinds.get(d.device_kind, 0) + 1
    return {
        "nax_version": nax.__version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "numpyro": numpyro.__version__,
        "platform": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "jax_backend": jax.default_backend(),
        "jax_devices": ", ".join(f"{n} x {k}" for k, n in kinds.items()),
        "time_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


__all__ = ["provenance"]
