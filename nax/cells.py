"""The NAS-Bench-201 cells and their layers: the specialised :class:`Cell` (one network per
architecture, conv edges that read one node grouped into one convolution) and the supernet
cells whose encoding is an input (:class:`SelectCell`, :class:`MixedCell`,
:class:`SwitchCell`). :mod:`nax.models` builds networks from them."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nax import space as space_lib
from nax.grouped_conv import ConvEdge, batch_norm, grouped_batch_norm

OPS = space_lib.NB201_OPS
_SPACE = space_lib.nb201


# ---------------------------------------------------------------------------- layers
class ReLUConvBN(nn.Module):
    """ReLU → Conv (no bias) → BatchNorm, PyTorch padding semantics."""

    features: int
    kernel: int
    stride: int = 1

    @nn.compact
    def __call__(self, x, train: bool):
        pad = self.kernel // 2
        x = nn.relu(x)
        x = nn.Conv(
            self.features,
            (self.kernel, self.kernel),
            strides=(self.stride, self.stride),
            padding=((pad, pad), (pad, pad)),
            use_bias=False,
            name="conv",
        )(x)
        # PyTorch BN momentum 0.1 == flax momentum 0.9
        return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name="bn")(x)


def _avg_pool(x):
    """3x3 average pool, stride 1, padding 1, padded zeros not counted (PyTorch's
    ``count_include_pad=False``).

    The divisor is a numpy constant of shape (1, H, W, 1): ``nn.avg_pool`` would pool a
    batch-sized tensor of ones instead, which XLA constant-folds at compile time (over 20 s
    per pool layer for a 128x28x28x8 batch on CPU).
    """
    summed = nn.pool(x, 0.0, jax.lax.add, (3, 3), (1, 1), ((1, 1), (1, 1)))
    h, w = x.shape[1], x.shape[2]
    ones = np.pad(np.ones((h, w), np.float32), 1)
    counts = sum(ones[i : i + h, j : j + w] for i in range(3) for j in range(3))
    return summed / jnp.asarray(counts, x.dtype)[None, :, :, None]


def _edge_op(op: str, features: int, name: str):
    """A callable ``f(x, train)`` for one op; conv ops own parameters under ``name``."""
    if op == "none":
        return lambda x, train: jnp.zeros_like(x)
    if op == "skip_connect":
        return lambda x, train: x
    if op == "avg_pool_3x3":
        return lambda x, train: _avg_pool(x)
    if op == "nor_conv_1x1":
        return ReLUConvBN(features, 1, name=name)
    if op == "nor_conv_3x3":
        return ReLUConvBN(features, 3, name=name)
    raise ValueError(f"unknown operation {op!r}; accepted: {', '.join(OPS)}")


class ResidualReduction(nn.Module):
    """NAS-Bench-201 ``ResNetBasicblock`` with stride 2 between stages."""

    features: int

    @nn.compact
    def __call__(self, x, train: bool):
        y = ReLUConvBN(self.features, 3, stride=2, name="conv_a")(x, train)
        y = ReLUConvBN(self.features, 3, name="conv_b")(y, train)
        r = nn.avg_pool(x, (2, 2), strides=(2, 2))
        r = nn.Conv(self.features, (1, 1), use_bias=False, name="downsample")(r)
        return r + y


def _dag(x, edge):
    """The cell's DAG: node j is the sum, in edge order, of ``edge(k, node i)`` over its edges k = (i, j)."""
    nodes = [x]
    for j in range(1, _SPACE.num_nodes):
        ys = [edge(k, nodes[i]) for k, (i, jj) in enumerate(_SPACE.edges) if jj == j]
        nodes.append(sum(ys[1:], ys[0]))
    return nodes[-1]


class Cell(nn.Module):
    """A cell specialised to one op per edge (``ops`` are op names in edge order).

    The conv edges that read the same node with the same kernel size run as one convolution
    with their kernels concatenated along the output channels and one batch norm over all their
    channels (each edge's own scale, bias and statistics), then split, as long as the group has
    at most ``_GROUP_MAX_CHANNELS`` channels (wider edges run one by one). The variables are those
    of one ``ReLUConvBN`` per edge (same values from the same key) and so are the outputs, up to
    float rounding. Why: at 8-16 channels XLA:CPU's convolution kernels cost far more per call
    than per channel, so fewer, wider convolutions make the forward pass faster (NOTES §2, item 9).
    The convolutions' backward is ``jax.grad``'s of ``_conv``, or ``_relu_conv``'s (two
    canonical convolutions) while ``CANONICAL_BACKWARD`` is true (off by default; read when the
    network is traced): same values up to float rounding (NOTES §2, K16e).
    """

    ops: tuple[str, ...]
    features: int

    @nn.compact
    def __call__(self, x, train: bool):
        edges = _SPACE.edges
        convs = {k: ConvEdge(self.features, _KERNEL[op], name=f"edge{k}_{op}") for k, op in enumerate(self.ops)
                 if op in _KERNEL}  # fmt: skip
        nodes, outs = [x], {}
        for j in range(1, _SPACE.num_nodes):
            i = j - 1  # node i is complete: run every edge that leaves it
            h = nodes[i]
            for size in sorted({_KERNEL[self.ops[k]] for k in convs if edges[k][0] == i}):
                group = [k for k in convs if edges[k][0] == i and _KERNEL[self.ops[k]] == size]
                for part in _parts(group, self.features):
                    conv = _relu_conv if CANONICAL_BACKWARD else _conv
                    y = conv(h, jnp.concatenate([convs[k].kernel(h.shape[-1]) for k in part], axis=-1))
                    y = grouped_batch_norm(y, [convs[k].bn for k in part], train, not self.is_initializing())
                    outs.update(zip(part, jnp.split(y, len(part), axis=-1)))
            for k, (ii, _) in enumerate(edges):
                if ii == i and k not in convs:
                    outs[k] = _edge_op(self.ops[k], self.features, f"edge{k}_{self.ops[k]}")(h, train)
            ys = [outs[k] for k, (_, jj) in enumerate(edges) if jj == j]
            nodes.append(sum(ys[1:], ys[0]))
        return nodes[-1]


_KERNEL = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}
#: ``Cell``'s conv edges use ``_relu_conv`` (backward as two canonical NHWC/HWIO convolutions)
#: instead of JAX's backward of ``_conv`` when true; read at trace time, so an A/B can flip it
#: between two programs (``bench_peer_gap.py --canonical-ab``). Off: in three interleaved A/B
#: runs of the whole SGD step the change was within run-to-run noise, not the 2-4 % gain
#: K16d's micro-benchmark suggested (``cpu`` new/old 0.96, 1.09, 1.01); chosen after measuring
#: by a rule written before the third run (NOTES §2, K16e)
CANONICAL_BACKWARD = False
#: widest grouped convolution: XLA:CPU hands convolutions with more than 16 channels to YNNPACK,
#: whose per-call cost is low, so grouping wider ones only adds the split and the concatenated
#: gradients (measured slower at the ``nb201`` preset; chosen after that measurement, NOTES §2 item 9)
_GROUP_MAX_CHANNELS = 16


def _parts(group: list, features: int) -> list:
    """``group`` as one convolution if its channels fit ``_GROUP_MAX_CHANNELS``, else one per edge."""
    return [group] if len(group) * features <= _GROUP_MAX_CHANNELS else [[k] for k in group]


def _conv(h, kernel):
    """ReLU then a stride-1 convolution padded to keep the size (``ReLUConvBN``'s)."""
    pad = kernel.shape[0] // 2
    return jax.lax.conv_general_dilated(
        nn.relu(h), kernel, (1, 1), ((pad, pad), (pad, pad)), dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def _mix_edges(x, weights_ExO, features: int, train: bool):
    """Every op on every edge, mixed by ``weights_ExO``; call inside a cell's compact method."""

    def edge(k, h):
        y = None
        for o, op in enumerate(OPS):
            if op == "none":  # contributes exactly zero
                continue
            out = _edge_op(op, features, f"edge{k}_{op}")(h, train)
            term = weights_ExO[k, o].astype(out.dtype) * out
            y = term if y is None else y + term
        return y

    return _dag(x, edge)


class MixedCell(nn.Module):
    """Every op on every edge; a one-hot ``weights_ExO`` row selects the active op."""

    features: int

    @nn.compact
    def __call__(self, x, weights_ExO, train: bool):
        return _mix_edges(x, weights_ExO, self.features, train)


class SwitchCell(nn.Module):
    """Every op's variables on every edge, but each edge runs only its chosen op.

    ``init`` builds the variables through the one-hot path (same names in the same order,
    so the same values from the same key as ``MixedCell``); afterwards each edge is one
    ``lax.switch`` on its traced op index over pure branches of that edge's variables. Only
    the chosen op's batch-norm statistics move (the one-hot supernet moves every conv op's);
    outputs and the specialised variables are the same. Under ``vmap`` over encodings the
    switch becomes a select over all branches (all ops run).
    """

    features: int

    @nn.compact
    def __call__(self, x, enc_E, train: bool):
        if self.is_initializing():
            return _mix_edges(x, jax.nn.one_hot(enc_E, len(OPS), dtype=x.dtype), self.features, train)
        params, stats = self.variables["params"], self.variables.get("batch_stats", {})

        def edge(k, h):
            names = tuple(f"edge{k}_{op}" for op in _CONV_OPS)
            branches = [_branch(op, self.features, f"edge{k}_{op}", train) for op in OPS]
            y, s = jax.lax.switch(enc_E[k], branches, h, {n: params[n] for n in names}, {n: stats[n] for n in names})
            if train and self.is_mutable_collection("batch_stats"):
                for n in names:
                    self.put_variable("batch_stats", n, s[n])
            return y

        return _dag(x, edge)


_CONV_OPS = ("nor_conv_1x1", "nor_conv_3x3")


class SelectCell(nn.Module):
    """Compile-once without running every op: each edge's two conv ops run as one convolution
    whose kernel and batch-norm scale and bias (and running statistics in eval mode) are the
    chosen op's, picked by the encoding's one-hot weights (the 1x1 kernel sits at the centre of
    a 3x3 one); an edge whose op is no convolution gets a zero kernel, scale and bias, so its
    conv term is exactly 0. An edge that runs alone (not grouped: wider than
    ``_GROUP_MAX_CHANNELS`` together with the other edges of its node) runs its convolution and
    batch norm under ``lax.cond(is_conv, ...)`` instead, so a non-conv edge runs none and its
    conv term is an exact zero (the convolution's backward written canonically,
    ``_relu_conv``: XLA:CPU leaves a conditional's backward convolutions in a slow generic
    form otherwise). Skip and average pool are added with their one-hot weights, the pool
    computed once per node and only if one of the node's edges pools (a ``lax.cond``); 'none'
    adds nothing. The conv edges leaving a node are grouped as in ``Cell``.

    The variables are ``MixedCell``'s (same values from the same key). With one-hot weights the
    selection is exact (``1 * a + 0 * b == a``), so outputs and gradients are the specialised
    network's up to float rounding (a 1x1 kernel padded to 3x3 may sum in another order). Only
    the chosen op's batch-norm statistics move in a train step (as in ``SwitchCell``). Why: the
    one-hot mix runs two convolutions, two batch norms, a pool and the mixing on every edge
    (0.17-0.53x the specialised step, NOTES §2); this form runs one convolution per edge.
    """

    features: int

    @nn.compact
    def __call__(self, x, enc_E, train: bool):
        edges, c = _SPACE.edges, self.features
        w = jax.nn.one_hot(enc_E, len(OPS), dtype=x.dtype)
        convs = {(k, op): ConvEdge(c, _KERNEL[op], name=f"edge{k}_{op}") for k in range(len(edges)) for op in _CONV_OPS}
        update = train and not self.is_initializing()

        def chosen(k, get):
            a, b = (w[k, OPS.index(op)] * get(convs[k, op]) for op in _CONV_OPS)
            return a + b

        def kernel(conv, cin):
            kern = conv.kernel(cin)
            pad = (3 - conv.size) // 2
            return jnp.pad(kern, ((pad, pad), (pad, pad), (0, 0), (0, 0)))

        nodes, outs = [x], {}
        for j in range(1, _SPACE.num_nodes):
            i = j - 1  # node i is complete: run every edge that leaves it
            h = nodes[i]
            leaving = [k for k, (ii, _) in enumerate(edges) if ii == i]
            # pooled only when an edge leaving node i pools: its forward and backward cost about
            # a third of a convolution here (XLA:CPU's reduce_window), and most cells pool seldom
            used = jnp.any(enc_E[jnp.asarray(leaving)] == OPS.index("avg_pool_3x3"))
            pooled = jax.lax.cond(used, _avg_pool, jnp.zeros_like, h)
            for part in _parts(leaving, c):
                cat = lambda get, part=part: jnp.concatenate([chosen(k, get) for k in part])
                cin = h.shape[-1]
                kern = jnp.concatenate([chosen(k, lambda e, cin=cin: kernel(e, cin)) for k in part], axis=-1)
                running = None if train else (cat(lambda e: e.bn.mean.value), cat(lambda e: e.bn.var.value))
                bn_args = (cat(lambda e: e.bn.scale), cat(lambda e: e.bn.bias), running)
                if len(part) == 1:  # alone: no convolution at all unless the edge's op is one
                    is_conv = jnp.isin(enc_E[part[0]], jnp.asarray([OPS.index(op) for op in _CONV_OPS]))
                    y, mean, var = jax.lax.cond(is_conv, _conv_bn, _no_conv, h, kern, *bn_args)
                else:
                    y, mean, var = batch_norm(_conv(h, kern), *bn_args)
                for n, k in enumerate(part):
                    sl = slice(n * c, (n + 1) * c)
                    for op in _CONV_OPS if update else ():
                        bn, on = convs[k, op].bn, enc_E[k] == OPS.index(op)
                        bn.mean.value = jnp.where(on, 0.9 * bn.mean.value + (1 - 0.9) * mean[sl], bn.mean.value)
                        bn.var.value = jnp.where(on, 0.9 * bn.var.value + (1 - 0.9) * var[sl], bn.var.value)
                    outs[k] = (
                        y[..., sl] + w[k, OPS.index("skip_connect")] * h + w[k, OPS.index("avg_pool_3x3")] * pooled
                    )
            ys = [outs[k] for k, (_, jj) in enumerate(edges) if jj == j]
            nodes.append(sum(ys[1:], ys[0]))
        return nodes[-1]


@jax.custom_vjp
def _relu_conv(h, kernel):
    """``_conv`` (ReLU, stride-1 'same' convolution) whose backward is two canonical
    convolutions (``NHWC`` x ``HWIO`` -> ``NHWC``): the input gradient with the flipped kernel,
    its in and out channels swapped; the kernel gradient with the input channels as the batch
    and the batch as the features. Same values as ``jax.grad`` of ``_conv`` (bitwise in the
    tests). Why: inside a ``lax.cond`` branch XLA:CPU keeps the backward convolutions that JAX
    emits (``f01b_i01o->01bf``, ``b01f_01oi->b01f``) and runs them in its generic loop emitter,
    5-150x slower than outside a conditional (NOTES §2, K16d); it runs these in Eigen or YNNPACK."""
    return _conv(h, kernel)


def _relu_conv_fwd(h, kernel):
    return _conv(h, kernel), (h, kernel)


def _relu_conv_bwd(res, g):
    h, kernel = res
    pad = ((kernel.shape[0] // 2,) * 2,) * 2
    dn = ("NHWC", "HWIO", "NHWC")
    flipped = jnp.transpose(kernel[::-1, ::-1], (0, 1, 3, 2))
    dh = jax.lax.conv_general_dilated(g, flipped, (1, 1), pad, dimension_numbers=dn) * (h > 0)
    dk = jax.lax.conv_general_dilated(
        jnp.transpose(nn.relu(h), (3, 1, 2, 0)), jnp.transpose(g, (1, 2, 0, 3)), (1, 1), pad, dimension_numbers=dn
    )
    return dh, jnp.transpose(dk, (1, 2, 0, 3))


_relu_conv.defvjp(_relu_conv_fwd, _relu_conv_bwd)


def _conv_bn(h, kernel, scale, bias, running):
    """The conv branch of ``SelectCell``'s conditional: ``(out, mean, var)`` of ``batch_norm``."""
    return batch_norm(_relu_conv(h, kernel), scale, bias, running)


def _no_conv(h, kernel, scale, bias, running):
    """The other branch: an exact zero output and zero batch statistics (not stored: the
    statistics of an op move only when it is the edge's op)."""
    zero = jnp.zeros_like(scale)
    return jnp.zeros((*h.shape[:-1], kernel.shape[-1]), h.dtype), zero, zero


def _branch(op: str, features: int, name: str, train: bool):
    """A pure ``switch`` branch ``(x, params, stats) -> (y, stats)`` over one edge's variables."""
    if op not in _CONV_OPS:
        fn = _edge_op(op, features, name)
        return lambda x, p, s: (fn(x, train), s)
    module = ReLUConvBN(features, 1 if op == "nor_conv_1x1" else 3, parent=None)

    def conv(x, p, s):
        v = {"params": p[name], "batch_stats": s[name]}
        if not train:
            return module.apply(v, x, False), s
        y, upd = module.apply(v, x, True, mutable=["batch_stats"])
        return y, {**s, name: upd["batch_stats"]}

    return conv
