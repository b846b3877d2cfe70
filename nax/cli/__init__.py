"""The ``nax`` command.

Every command group is one module of this package (``nax.cli.data``, ``train``,
``search``, ``curves``, ``select``) with a ``register(subparsers)`` function; ``main`` only
dispatches. A command module imports nothing heavy at module level (no jax, numpy,
matplotlib): the library is imported inside the handler, so ``nax --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

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


if __name__ == "__main__":
    sys.exit(main())
