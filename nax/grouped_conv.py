"""Several conv edges of a specialised cell as one convolution and one batch norm, with each
edge's own variables: :class:`ConvEdge` holds ``ReLUConvBN``'s variables (``conv/kernel``,
``bn/...``, same values from the same key) without computing, and
:func:`grouped_batch_norm` normalises the concatenated channels of several edges, updating each
edge's statistics from its own channels (:class:`nax.models.Cell` uses both; NOTES §2 item 9)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class _Kernel(nn.Module):
    """The ``kernel`` parameter of a bias-free ``nn.Conv``, without the convolution: same shape,
    initialiser and dtype, so the same value from the same key and module path."""

    features: int
    size: int

    @nn.compact
    def __call__(self, in_features: int):
        shape = (self.size, self.size, in_features, self.features)
        return self.param("kernel", nn.linear.default_kernel_init, shape, jnp.float32)


class _BatchNormVariables(nn.Module):
    """``nn.BatchNorm``'s variables (``scale``, ``bias``; ``mean``, ``var`` batch statistics) with
    its initial values, for a cell that normalises several edges' channels in one pass."""

    features: int

    def setup(self):
        shape = (self.features,)
        self.mean = self.variable("batch_stats", "mean", lambda: jnp.zeros(shape, jnp.float32))
        self.var = self.variable("batch_stats", "var", lambda: jnp.ones(shape, jnp.float32))
        self.scale = self.param("scale", nn.initializers.ones, shape, jnp.float32)
        self.bias = self.param("bias", nn.initializers.zeros, shape, jnp.float32)


class ConvEdge(nn.Module):
    """One conv edge of a specialised cell, split so that a cell can run several edges that
    read the same node as one convolution and one batch norm: the variables are
    ``ReLUConvBN``'s (``conv/kernel``, ``bn/...``), the computation is the caller's."""

    features: int
    size: int

    def setup(self):
        self.conv = _Kernel(self.features, self.size)
        self.bn = _BatchNormVariables(self.features)

    def kernel(self, in_features: int):
        return self.conv(in_features)


def grouped_batch_norm(y, bns: list, train: bool, update: bool, momentum: float = 0.9, epsilon: float = 1e-5):
    """``nn.BatchNorm`` (flax's arithmetic: one-pass variance, clipped at 0) over channels that are
    the concatenation of ``bns``' features, each ``_BatchNormVariables``' statistics updated from
    its own channels."""
    cat = lambda get: jnp.concatenate([get(bn) for bn in bns])
    running = None if train else (cat(lambda bn: bn.mean.value), cat(lambda bn: bn.var.value))
    out, mean, var = batch_norm(y, cat(lambda bn: bn.scale), cat(lambda bn: bn.bias), running, epsilon)
    if train and update:
        start = 0
        for bn in bns:
            sl = slice(start, start + bn.features)
            bn.mean.value = momentum * bn.mean.value + (1 - momentum) * mean[sl]
            bn.var.value = momentum * bn.var.value + (1 - momentum) * var[sl]
            start += bn.features
    return out


def batch_norm(y, scale, bias, running=None, epsilon: float = 1e-5):
    """``(out, mean, var)``: ``nn.BatchNorm``'s arithmetic over the last axis of ``y`` with the
    statistics of the batch (``running`` None: training mode) or ``running = (mean, var)``."""
    if running is None:
        mean, mean2 = y.mean((0, 1, 2)), jax.lax.square(y).mean((0, 1, 2))
        var = jnp.maximum(0.0, mean2 - jax.lax.square(mean))
    else:
        mean, var = running
    mul = jax.lax.rsqrt(var + epsilon) * scale
    return (y - mean) * mul + bias, mean, var


__all__ = ["ConvEdge", "batch_norm", "grouped_batch_norm"]
