"""The sizes of NAS-Bench-201 networks: parameters counted from a built module's shapes
(:func:`param_count`) and, in closed form for any cell or a batch of cells, parameters and
multiply-accumulates (:func:`analytic_size`, :func:`analytic_sizes`; equal to the built
counts, tested). :mod:`nax.models` re-exports them beside its builders."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nax import space as space_lib

OPS = space_lib.NB201_OPS
_SPACE = space_lib.nb201


def param_count(model: nn.Module, image_shape: Sequence[int] = (32, 32, 3)) -> int:
    """Number of trainable parameters, from shapes only (``jax.eval_shape``, no compute)."""
    x = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
    if model.ops is None:
        args = (x, jax.ShapeDtypeStruct((len(_SPACE.edges),), jnp.int32))
    else:
        args = (x,)
    shapes = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), *args)
    return int(sum(np.prod(l.shape) for l in jax.tree.leaves(shapes["params"])))


def _conv_cost(ops: Sequence[str], c: int) -> tuple[int, int]:
    """(params, MACs per pixel) of the conv edges of one cell with ``c`` channels."""
    params = macs = 0
    for op in ops:
        if op == "nor_conv_3x3":
            params += 9 * c * c + 2 * c
            macs += 9 * c * c
        elif op == "nor_conv_1x1":
            params += c * c + 2 * c
            macs += c * c
    return params, macs


def analytic_size(
    enc, num_classes: int, channels: int = 16, cells_per_stage: int = 5, image_shape: Sequence[int] = (32, 32, 3)
) -> tuple[int, int]:
    """(parameters, multiply-accumulates of one forward pass) in closed form.

    Equal to ``param_count(build(...))`` (tested); fast enough for all 15,625 cells.
    MACs count convolutions and the classifier, as NAS-Bench-201's FLOPs column does
    (pooling, BN and additions are ignored).
    """
    enc = _SPACE.validate(enc)
    ops = [OPS[i] for i in enc]
    h, w, cin = image_shape
    c = channels
    params = 9 * cin * c + 2 * c
    macs = 9 * cin * c * h * w
    for s in range(3):
        cs = c * 2**s
        if s > 0:
            cp = cs // 2
            h, w = (h + 1) // 2, (w + 1) // 2
            params += 9 * cp * cs + 2 * cs + 9 * cs * cs + 2 * cs + cp * cs
            macs += (9 * cp * cs + 9 * cs * cs + cp * cs) * h * w
        p, m = _conv_cost(ops, cs)
        params += cells_per_stage * p
        macs += cells_per_stage * m * h * w
    cl = 4 * c
    params += 2 * cl + cl * num_classes + num_classes
    macs += cl * num_classes
    return params, macs


def analytic_sizes(
    encs, num_classes: int, channels: int = 16, cells_per_stage: int = 5, image_shape: Sequence[int] = (32, 32, 3)
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised ``analytic_size`` over a batch ``(n, 6)``: (params, MACs), each ``(n,)``."""
    encs = np.atleast_2d(_SPACE.validate(encs))
    base_p, base_m = analytic_size(np.zeros(6, np.int32), num_classes, channels, cells_per_stage, image_shape)
    n3 = (encs == OPS.index("nor_conv_3x3")).sum(1)
    n1 = (encs == OPS.index("nor_conv_1x1")).sum(1)
    h, w = image_shape[0], image_shape[1]
    p3 = p1 = m3 = m1 = 0
    for s in range(3):
        cs = channels * 2**s
        if s > 0:
            h, w = (h + 1) // 2, (w + 1) // 2
        p3 += cells_per_stage * (9 * cs * cs + 2 * cs)
        p1 += cells_per_stage * (cs * cs + 2 * cs)
        m3 += cells_per_stage * 9 * cs * cs * h * w
        m1 += cells_per_stage * cs * cs * h * w
    return base_p + n3 * p3 + n1 * p1, base_m + n3 * m3 + n1 * m1


__all__ = ["analytic_size", "analytic_sizes", "param_count"]
