"""``python -m nax.cli``: the ``nax`` program."""

from nax.cli import run

run()
