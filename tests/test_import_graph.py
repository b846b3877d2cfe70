"""nax runs without TensorFlow: it is neither imported nor required by anything nax installs."""

from __future__ import annotations

import importlib.metadata as md
import json
import subprocess
import sys

import pytest
from packaging.requirements import Requirement

FORBIDDEN = ("tensorflow", "keras")


def _closure(dist: str) -> dict[str, str]:
    """Every distribution ``pip install dist`` installs (no extras), mapped to who requires it."""
    seen = {dist.lower(): "(root)"}
    todo = [dist]
    while todo:
        name = todo.pop()
        for spec in md.requires(name) or []:
            req = Requirement(spec)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue  # an extra or another platform's dependency
            key = req.name.lower().replace("_", "-")
            if key in seen:
                continue
            seen[key] = name
            try:
                md.distribution(req.name)
            except md.PackageNotFoundError:
                continue  # not installed here: it has no metadata to follow (and pip would say so)
            todo.append(req.name)
    return seen


def test_installing_nax_pulls_no_tensorflow():
    """The dependency closure of nax (as installed metadata declares it) holds no TensorFlow or keras."""
    try:
        md.distribution("nax")
    except md.PackageNotFoundError:
        pytest.skip("nax is not installed (pip install -e .)")
    closure = _closure("nax")
    assert "jax" in closure and "tensorflow-datasets" in closure  # the walk itself works
    for bad in FORBIDDEN:
        assert bad not in closure, f"{bad} is required through {closure[bad]}"


def test_data_path_and_cli_import_no_tensorflow(tmp_path):
    """Importing nax, building the CLI, preparing, loading and batching every present dataset."""
    code = (
        "import json, sys\n"
        "import nax, nax.cli\n"
        "nax.cli.build_parser()\n"
        "from nax import data\n"
        "done = []\n"
        "for name in data.NAMES:\n"
        f"    if name in ('digits', 'animal_mnist') and data.source_available(name, {str(tmp_path)!r}):\n"
        f"        a = data.load(name, 'test', data_dir={str(tmp_path)!r})\n"
        "        next(data.batches(a, 32, seed=0, image_size=(32, 32)))\n"
        "        done.append(name)\n"
        f"print(json.dumps([done, sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})]))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    done, imported = json.loads(r.stdout.splitlines()[-1])
    assert "digits" in done
    assert imported == [], f"imported {imported}"
