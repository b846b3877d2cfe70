"""The ``nax`` program: every ``--help`` imports no library code; warnings print as one line, once.

Speed itself is measured in benchmarks/bench_cli.py; here we check the cause of speed (what
is imported), which does not depend on how loaded the machine is.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from nax import cli

#: what `nax X --help` must not import: each costs from 0.1 s (numpy) to seconds (jax, TFDS)
HEAVY = (
    "jax",
    "numpy",
    "scipy",
    "pandas",
    "matplotlib",
    "flax",
    "optax",
    "numpyro",
    "tensorflow_datasets",
    "tensorflow",
    "keras",
    "sklearn",
    "arviz",
)


def _command_paths(parser: argparse.ArgumentParser, prefix=()) -> list[tuple[str, ...]]:
    """Every command path of the parser: ("data",), ("data", "list"), ..."""
    paths = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths.append((*prefix, name))
                paths += _command_paths(sub, (*prefix, name))
    return paths


def _run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_every_help_imports_nothing_heavy():
    paths = _command_paths(cli.build_parser())
    # every group and its actions are there (the walk itself is checked)
    assert {("data", "list"), ("train",), ("search",), ("curves", "benchmark"), ("select", "fit")} <= set(paths)
    code = (
        "import contextlib, io, json, sys\n"
        "from nax import cli\n"
        f"for path in {paths!r}:\n"
        "    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):\n"
        "        cli.main([*path, '--help'])\n"
        "    assert out.getvalue().startswith('usage: nax ' + ' '.join(path)), (path, out.getvalue()[:80])\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    r = _run_python(code)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [], f"`nax ... --help` imported {r.stdout.strip()}"


def test_version_and_top_level_help_import_nothing_heavy():
    r = _run_python(
        "import contextlib, io, json, sys\nfrom nax import cli\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    cli.main(['--help'])\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == []


def test_restated_choices_match_the_library():
    """The CLI restates a few choice lists so that --help imports no library module."""
    from nax import train
    from nax.cli import search as search_cli
    from nax.cli import train as train_cli
    from nax.search import config as config_lib

    assert search_cli.STRATEGIES == config_lib.STRATEGIES
    assert search_cli.EVALUATORS == config_lib.EVALUATORS
    assert train_cli.PRESET_NAMES == tuple(train.PRESETS)


# ------------------------------------------------------------------ warnings
def _nan_table(path):
    from nax import space

    cells = space.nb201.enumerate()[:30]
    rows = [f"{space.nb201.to_string(e)},a,{0.1 + 0.01 * i}" for i, e in enumerate(cells)]
    rows[3] = rows[3].rsplit(",", 1)[0] + ",nan"
    path.write_text("arch,dataset,accuracy\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.slow  # a real `nax select fit` in a fresh process (imports jax): ~5-15 s
def test_program_prints_a_warning_as_one_line(tmp_path):
    table = _nan_table(tmp_path / "t.csv")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "nax.cli",
            "select",
            "fit",
            "--table",
            str(table),
            "--source",
            "a",
            "--out",
            str(tmp_path / "m.npz"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    lines = [l for l in r.stderr.splitlines() if "skipped" in l]
    assert len(lines) == 1 and lines[0].startswith(f"warning: {table}: skipped 1 of 30 rows"), r.stderr
    assert "Warning:" not in r.stderr and ".py:" not in r.stderr, r.stderr


def test_each_nax_warning_once_others_untouched():
    """The same nax message from two code lines prints once; a foreign warning keeps Python's format."""
    r = _run_python(
        "import pathlib, warnings\n"
        "import nax\n"
        "from nax.cli import one_line_warnings\n"
        "one_line_warnings()\n"
        "src = str(pathlib.Path(nax.__file__))\n"
        "for lineno in (10, 20, 30):\n"
        "    warnings.warn_explicit('journal.jsonl: last line is incomplete', UserWarning, src, lineno)\n"
        "warnings.warn_explicit('another one', UserWarning, src, 40)\n"
        "warnings.warn_explicit('from elsewhere', UserWarning, '/elsewhere/mod.py', 5)\n"
    )
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert lines[:2] == ["warning: journal.jsonl: last line is incomplete", "warning: another one"], lines
    assert lines[2] == "/elsewhere/mod.py:5: UserWarning: from elsewhere", lines


def test_main_leaves_warnings_to_the_caller(tmp_path):
    """Called as a function, nax does not replace the warnings machinery (tests catch warnings)."""
    import warnings

    before = warnings.showwarning
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert warnings.showwarning is before
