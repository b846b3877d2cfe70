"""The ``nax`` command.

Every command group is one module of this package (``nax.cli.data``, ``train``,
``search``, ``curves``, ``select``) with a ``register(subparsers)`` function; ``main`` only
dispatches. A command module imports nothing heavy at module level (no jax, numpy,
matplotlib): the library is imported inside the handler, so ``nax --help`` stays fast.

Run as the program (``run``, the ``nax`` script), nax's own warnings print as one line,
``warning: <message>``, each message once; called as a function (``main``), warnings are
left to the caller (so tests can catch them).
"""

from __future__ import annotations

import argparse
import importlib
import pathlib
import sys
import warnings

#: modules that define ``register(subparsers)``; each adds one top-level command group
COMMAND_MODULES = (
    "nax.cli.data",
    "nax.cli.train",
    "nax.cli.search",
    "nax.cli.curves",
    "nax.cli.select",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nax",
        description="Neural architecture search accelerated by inductive transfer.",
    )
    from nax import __version__

    parser.add_argument("--version", action="version", version=f"nax {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as e:
        # user errors: one clear line, no traceback
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"nax {args.command}: error: {msg}", file=sys.stderr)
        return 2


_NAX_DIR = pathlib.Path(__file__).resolve().parents[1]


def _from_nax(category: type[Warning], filename: str) -> bool:
    if category.__module__.split(".")[0] == "nax":
        return True
    try:
        return pathlib.Path(filename).resolve().is_relative_to(_NAX_DIR)
    except (OSError, ValueError):
        return False


def one_line_warnings() -> None:
    """Print nax's warnings as ``warning: <message>`` (no source line), each message once."""
    seen: set[tuple[type[Warning], str]] = set()
    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if not _from_nax(category, filename):
            return default(message, category, filename, lineno, file, line)
        key = (category, str(message))
        if key not in seen:
            seen.add(key)
            print(f"warning: {message}", file=file or sys.stderr)

    warnings.showwarning = show


def run() -> None:
    """The ``nax`` program: one-line warnings, then ``main`` on the command line."""
    one_line_warnings()
    sys.exit(main())
