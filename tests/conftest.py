"""Shared test set-up: two fake CPU devices and the location of ../shared/data."""

import os
import pathlib

# Multi-device code paths run on every test machine (must precede the first jax import).
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]


def shared_data_dir() -> pathlib.Path:
    """``$NAX_SHARED_DATA`` or ``<repo>/../shared/data``."""
    return pathlib.Path(os.environ.get("NAX_SHARED_DATA", REPO.parent / "shared" / "data"))


#: clear the compiled programs once a process holds this many memory mappings: Linux's
#: default ``vm.max_map_count`` is 65,530, and the whole suite in one process, cleared after
#: every module, peaked at 17,245 (so no module adds more than that)
MAX_MAPPINGS = 30_000


def _mappings() -> int | None:
    try:
        with open("/proc/self/maps", "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return None


@pytest.fixture(scope="module", autouse=True)
def _release_compiled_programs():
    """Drop every compiled program after a test module once the process holds many mappings.

    CI runs the whole suite in one process. Each XLA:CPU executable holds about six
    memory mappings, and jit caches keep them alive, so the suite passed Linux's
    ``vm.max_map_count`` and LLVM aborted inside a compile (exit 134) after about
    1,100 s. ``jax.clear_caches`` unmaps them even where jitted functions are still
    referenced; below the threshold the programs stay cached (modules share them).
    """
    yield
    import sys

    n = _mappings()
    if "jax" in sys.modules and (n is None or n > MAX_MAPPINGS):
        sys.modules["jax"].clear_caches()


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    d = shared_data_dir()
    if not d.is_dir():
        pytest.skip(f"reference data folder {d} is absent (set NAX_SHARED_DATA to a copy of shared/data)")
    return d


@pytest.fixture(scope="session")
def digits_splits():
    """Real data, small and fast: scikit-learn's bundled 8x8 digits as train/val/test splits."""
    import numpy as np
    from sklearn.datasets import load_digits

    from nax import train

    d = load_digits()
    x = (d.images[..., None] / 16.0).astype(np.float32)
    x = (x - x.mean()) / x.std()
    y = d.target.astype(np.int32)
    return train.Splits("digits", 10, x[:1024], y[:1024], x[1024:1400], y[1024:1400], x[1400:], y[1400:])
