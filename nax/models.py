"""Flax (linen) builders for the NAS-Bench-201 macro skeleton.

Two forms of the same network:

* ``build(enc, ...)`` — a network specialised to one encoding; only the chosen op sits on
  each edge, so its parameter count is the architecture's (it matches NAS-Bench-201's
  ``params_mb`` exactly for C=16, N=5).
* ``build_supernet(...)`` — *architecture as data*: the encoding is an input of
  ``__call__`` and every edge holds every op's variables; the encoding selects one op: by
  picking the chosen conv op's kernel and batch norm for one convolution per edge
  (``mix="select"``, the default), by a one-hot mix of all ops (``"onehot"``) or by a
  ``lax.switch`` that runs only the chosen one (``"switch"``). One compiled train step therefore
  serves all encodings of the space, and ``vmap`` over encodings trains several architectures
  in one program.

Both forms name their edge modules ``cell{s}_{c}/edge{k}_{op}`` so parameters can be
moved from the supernet into a specialised network and back (``specialise_params``).

Skeleton (Dong & Yang 2020): conv3x3 stem + BN; three stages of N cells with C, 2C, 4C
channels joined by residual reduction blocks; BN-ReLU; global average pool; linear
classifier. Inputs are NHWC float images.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nax import space as space_lib
from nax.cells import (  # noqa: F401 (the cells, and the helpers tests reach through models)
    _GROUP_MAX_CHANNELS,
    Cell,
    MixedCell,
    ReLUConvBN,
    ResidualReduction,
    SelectCell,
    SwitchCell,
    _avg_pool,
    _dag,
    _edge_op,
)
from nax.model_sizes import analytic_size, analytic_sizes, param_count  # noqa: F401 (the builders' API)

OPS = space_lib.NB201_OPS
MIXES = ("onehot", "switch", "select")
_SPACE = space_lib.nb201


class Network(nn.Module):
    """The NAS-Bench-201 macro skeleton around a cell factory.

    ``ops`` set → specialised network, ``__call__(x, train)``.
    ``ops`` None → supernet, ``__call__(x, encoding, train)`` with ``encoding`` an int
    array of shape ``(6,)``.
    """

    num_classes: int
    channels: int = 16
    cells_per_stage: int = 5
    ops: tuple[str, ...] | None = None
    dtype: Any = jnp.float32
    #: supernet only: "select" runs one conv per edge with the chosen op's kernel; "onehot" runs
    #: every op and mixes them; "switch" runs each edge's chosen op in a conditional
    mix: str = "select"

    @nn.compact
    def __call__(self, x, encoding=None, train: bool = False):
        if self.ops is None:
            if encoding is None:
                raise ValueError("a supernet needs the encoding as input: model.apply(v, x, encoding, train=...)")
            encoding = jnp.asarray(encoding)
            weights = jax.nn.one_hot(encoding, len(OPS), dtype=self.dtype)
        x = x.astype(self.dtype)
        x = nn.Conv(self.channels, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, name="stem_conv")(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name="stem_bn")(x)
        for s in range(3):
            c = self.channels * 2**s
            if s > 0:
                x = ResidualReduction(c, name=f"reduce{s}")(x, train)
            for i in range(self.cells_per_stage):
                name = f"cell{s}_{i}"
                if self.ops is None:
                    if self.mix == "switch":
                        x = SwitchCell(c, name=name)(x, encoding, train)
                    elif self.mix == "select":
                        x = SelectCell(c, name=name)(x, encoding, train)
                    else:
                        x = MixedCell(c, name=name)(x, weights, train)
                else:
                    x = Cell(self.ops, c, name=name)(x, train)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name="last_bn")(x)
        x = nn.relu(x)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, name="classifier")(x)


# ---------------------------------------------------------------------------- builders
@dataclasses.dataclass(frozen=True)
class Preset:
    """Network size: ``channels`` C and ``cells_per_stage`` N of the skeleton."""

    channels: int
    cells_per_stage: int


#: NAS-Bench-201's own size, and small sizes for CPU work and tests.
PRESETS: dict[str, Preset] = {
    "nb201": Preset(16, 5),
    "cpu": Preset(8, 1),
    "tiny": Preset(4, 1),
}


def build(enc, num_classes: int, channels: int = 16, cells_per_stage: int = 5, dtype=jnp.float32) -> Network:
    """A network specialised to ``enc`` (NAS-Bench-201 encoding, shape ``(6,)``)."""
    enc = _SPACE.validate(enc)
    if enc.ndim != 1:
        raise ValueError(f"build takes one encoding of shape (6,), got {enc.shape}")
    _check_sizes(num_classes, channels, cells_per_stage)
    return Network(num_classes, channels, cells_per_stage, tuple(OPS[i] for i in enc), dtype)


def build_supernet(
    num_classes: int, channels: int = 16, cells_per_stage: int = 5, dtype=jnp.float32, mix: str = "select"
) -> Network:
    """One network for every encoding: ``apply(variables, x, encoding, train=...)``.

    All forms have the same variables (same values from the same key) and compute the
    specialised network up to float rounding. ``mix="select"`` (default, ``SelectCell``) runs
    one convolution per edge with the chosen conv op's kernel and batch norm; ``"onehot"`` runs
    every op on every edge and mixes them with one-hot weights (``nax.population`` uses it);
    ``"switch"`` runs each edge's chosen op in a ``lax.switch``. Measured on the CPU (NOTES §2):
    select 0.60-0.95x the specialised step (NOTES §2, K16d), one-hot about 0.5x, switch 0.09-0.61x
    (its conditionals' backward convolutions run in XLA:CPU's generic emitter; `cells._relu_conv`).
    """
    _check_sizes(num_classes, channels, cells_per_stage)
    if mix not in MIXES:
        raise ValueError(f"unknown mix {mix!r}; accepted: {', '.join(MIXES)}")
    return Network(num_classes, channels, cells_per_stage, None, dtype, mix)


def _check_sizes(num_classes, channels, cells_per_stage):
    for name, v in (("num_classes", num_classes), ("channels", channels), ("cells_per_stage", cells_per_stage)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")


def specialise_params(supernet_variables, enc):
    """Variables of ``build(enc)`` taken from supernet variables (unused ops dropped)."""
    enc = _SPACE.validate(enc)
    keep = {f"edge{k}_{OPS[i]}" for k, i in enumerate(enc)}

    def prune(tree):
        out = {}
        for name, sub in tree.items():
            if name.startswith("edge") and name not in keep:
                continue
            out[name] = prune(sub) if isinstance(sub, dict) else sub
        return out

    return {col: prune(dict(_to_dict(v))) for col, v in supernet_variables.items()}


def _to_dict(tree):
    return {k: (_to_dict(v) if hasattr(v, "items") else v) for k, v in tree.items()}
