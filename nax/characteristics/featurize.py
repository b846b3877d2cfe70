"""Named characteristics of cell encodings.

``features(encodings)`` maps a batch ``(n, num_edges)`` to a float matrix ``(n, f)`` and the
list of ``f`` human-readable names. Each group of characteristics is one small function
``(space, encodings) -> (values (n, k), names)`` listed in ``CHARACTERISTICS``; adding a
characteristic is adding one such function to that tuple.

The matrix is raw (indicators, counts, log sizes). Models standardise it with the
statistics of the whole space (``space_stats``) so that priors are comparable across
characteristics and independent of which architectures happen to be in a sample.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable

import numpy as np

from nax import models
from nax import space as space_lib

CellSpace = space_lib.CellSpace


def _edge_name(space: CellSpace, e: int) -> str:
    i, j = space.edges[e]
    return f"{i}->{j}"


def edge_ops(space: CellSpace, enc: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """One-hot operation on each edge: ``edge 0->1 = nor_conv_3x3``."""
    cols, names = [], []
    for e in range(space.num_edges):
        for o, op in enumerate(space.ops):
            cols.append(enc[:, e] == o)
            names.append(f"edge {_edge_name(space, e)} = {op}")
    return np.stack(cols, 1), names


def op_counts(space: CellSpace, enc: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """How many edges carry each operation: ``count nor_conv_3x3``."""
    cols = [(enc == o).sum(1) for o in range(space.num_ops)]
    return np.stack(cols, 1), [f"count {op}" for op in space.ops]


def edge_pairs(space: CellSpace, enc: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Operations on two edges jointly: ``edge 0->1 = skip_connect & edge 1->3 = none``.

    Interactions matter in a cell: a convolution is worth little on an edge whose end node
    does not reach the output.
    """
    cols, names = [], []
    for a, b in itertools.combinations(range(space.num_edges), 2):
        for oa, ob in itertools.product(range(space.num_ops), repeat=2):
            cols.append((enc[:, a] == oa) & (enc[:, b] == ob))
            names.append(
                f"edge {_edge_name(space, a)} = {space.ops[oa]} & edge {_edge_name(space, b)} = {space.ops[ob]}"
            )
    return np.stack(cols, 1), names


@functools.cache
def _paths(space: CellSpace) -> tuple[tuple[int, ...], ...]:
    """Input->output paths of the cell as tuples of edge indices."""
    out_node = space.num_nodes - 1

    def walk(node):
        if node == out_node:
            return [()]
        res = []
        for e, (i, j) in enumerate(space.edges):
            if i == node:
                res += [(e,) + rest for rest in walk(j)]
        return res

    return tuple(walk(0))


def paths(space: CellSpace, enc: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Path encoding: how many input->output paths carry each sequence of non-zero ops.

    ``path skip_connect > nor_conv_3x3`` counts paths of length two whose first edge is a
    skip connection and second a 3x3 convolution (paths through a zero op carry nothing).
    """
    zero = space.op_index(space.zero_op)
    live_ops = [o for o in range(space.num_ops) if o != zero]
    ps = _paths(space)
    lengths = sorted({len(p) for p in ps})
    cols, names = [], []
    for length in lengths:
        same = [p for p in ps if len(p) == length]
        for seq in itertools.product(live_ops, repeat=length):
            c = np.zeros(len(enc), np.int32)
            for p in same:
                c += np.all(enc[:, list(p)] == np.asarray(seq), axis=1)
            cols.append(c)
            names.append("path " + " > ".join(space.ops[o] for o in seq))
    return np.stack(cols, 1), names


def structure(space: CellSpace, enc: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Whether the cell is disconnected, and the longest chain of convolutions on a live path."""
    disconnected = ~space.is_connected(enc)
    conv = np.array(["conv" in op for op in space.ops])
    zero = space.op_index(space.zero_op)
    longest = np.zeros(len(enc), np.int32)
    for p in _paths(space):
        ops_p = enc[:, list(p)]
        live = np.all(ops_p != zero, axis=1)
        longest = np.maximum(longest, np.where(live, conv[ops_p].sum(1), 0))
    return np.stack([disconnected, longest], 1), ["disconnected", "longest conv chain"]


def live_mask(space: CellSpace, enc: np.ndarray) -> np.ndarray:
    """``(n, num_edges)`` True where an edge lies on some input->output path of non-zero ops."""
    live = np.zeros(enc.shape, bool)
    zero = space.op_index(space.zero_op)
    for p in _paths(space):
        on = np.all(enc[:, list(p)] != zero, axis=1)
        live[:, list(p)] |= on[:, None]
    return live


def live_ops(space: CellSpace, enc: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Operations on live edges only: ``live edge 0->1 = nor_conv_3x3``, ``live count skip_connect``.

    An edge off every live path does not change the cell's output, so its operation should
    not count; these characteristics say so directly rather than through interactions.
    """
    live = live_mask(space, enc)
    zero = space.op_index(space.zero_op)
    cols, names = [], []
    for e in range(space.num_edges):
        for o, op in enumerate(space.ops):
            if o != zero:
                cols.append(live[:, e] & (enc[:, e] == o))
                names.append(f"live edge {_edge_name(space, e)} = {op}")
    for o, op in enumerate(space.ops):
        if o != zero:
            cols.append((live & (enc == o)).sum(1))
            names.append(f"live count {op}")
    return np.stack(cols, 1), names


def live_edge_pairs(space: CellSpace, enc: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Operations on two live edges jointly: ``live edge 0->1 = nor_conv_3x3 & live edge 1->2 = skip_connect``.

    The pairwise interactions of the cell that remains after its dead edges are pruned: two
    cells that compute the same function share these values, whatever sits on dead edges.
    """
    live = live_mask(space, enc)
    zero = space.op_index(space.zero_op)
    nonzero = [o for o in range(space.num_ops) if o != zero]
    cols, names = [], []
    for a, b in itertools.combinations(range(space.num_edges), 2):
        both = live[:, a] & live[:, b]
        for oa, ob in itertools.product(nonzero, repeat=2):
            cols.append(both & (enc[:, a] == oa) & (enc[:, b] == ob))
            names.append(
                f"live edge {_edge_name(space, a)} = {space.ops[oa]} & live edge {_edge_name(space, b)} = {space.ops[ob]}"
            )
    return np.stack(cols, 1), names


def live_structure(space: CellSpace, enc: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """How the live input->output paths are built.

    ``live paths`` (how many paths carry no zero op), ``longest live path`` (edges),
    ``shortest conv chain`` (fewest convolutions on a live path: 0 when a path of skips and
    pools bypasses every convolution), ``live paths with a conv`` and ``convs on live paths``
    (convolutions summed over the live paths, a convolution shared by two paths counted twice).
    All 0 for a disconnected cell.
    """
    zero = space.op_index(space.zero_op)
    conv = np.array(["conv" in op for op in space.ops])
    n = len(enc)
    n_live, longest, with_conv, conv_sum = (np.zeros(n, np.int32) for _ in range(4))
    shortest = np.full(n, np.iinfo(np.int32).max)
    for p in _paths(space):
        ops_p = enc[:, list(p)]
        live = np.all(ops_p != zero, axis=1)
        c = conv[ops_p].sum(1)
        n_live += live
        longest = np.maximum(longest, np.where(live, len(p), 0))
        shortest = np.where(live, np.minimum(shortest, c), shortest)
        with_conv += live & (c > 0)
        conv_sum += np.where(live, c, 0)
    shortest = np.where(n_live > 0, shortest, 0)
    names = ["live paths", "longest live path", "shortest conv chain", "live paths with a conv", "convs on live paths"]
    return np.stack([n_live, longest, shortest, with_conv, conv_sum], 1), names


def sizes(space: CellSpace, enc: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """log10 parameter count and log10 multiply-accumulates of the 10-class CIFAR network."""
    if space.name != "nb201":
        return np.zeros((len(enc), 0)), []
    params, macs = models.analytic_sizes(enc, num_classes=10)
    return np.stack([np.log10(params), np.log10(macs)], 1), ["log10 params", "log10 MACs"]


Characteristic = Callable[[CellSpace, np.ndarray], tuple[np.ndarray, list[str]]]

#: the characteristic groups, in column order (new ones go last: the columns of a model
#: fitted before they existed stay a prefix, and such a model selects its own by name)
CHARACTERISTICS: tuple[Characteristic, ...] = (
    edge_ops,
    op_counts,
    edge_pairs,
    paths,
    structure,
    live_ops,
    sizes,
    live_edge_pairs,
    live_structure,
)


def features(encodings, space: CellSpace = space_lib.nb201) -> tuple[np.ndarray, list[str]]:
    """Characteristics of a batch of encodings.

    Args:
      encodings: int array ``(n, num_edges)`` (or one encoding ``(num_edges,)``).
      space: the search space the encodings belong to.
    Returns:
      ``X`` float64 ``(n, f)`` raw characteristic values and their ``f`` names.
    """
    enc = np.atleast_2d(space.validate(encodings))
    blocks, names = [], []
    for fn in CHARACTERISTICS:
        v, n = fn(space, enc)
        blocks.append(np.asarray(v, np.float64).reshape(len(enc), -1))
        names += n
    return np.concatenate(blocks, 1), names


@functools.lru_cache(maxsize=4)
def all_features(space: CellSpace = space_lib.nb201) -> tuple[np.ndarray, tuple[str, ...]]:
    """Characteristics of every encoding of ``space`` in ``space.enumerate()`` order (cached)."""
    X, names = features(space.enumerate(), space)
    X.setflags(write=False)
    return X, tuple(names)


@functools.lru_cache(maxsize=4)
def space_stats(space: CellSpace = space_lib.nb201) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation ``(f,)`` of each characteristic over the whole space.

    Constant characteristics get standard deviation 1 so that standardising leaves them 0.
    """
    X, _ = all_features(space)
    mu, sd = X.mean(0), X.std(0)
    sd = np.where(sd > 1e-12, sd, 1.0)
    return mu, sd


def centered(encodings, space: CellSpace = space_lib.nb201) -> np.ndarray:
    """Characteristics minus their mean over the whole space, float64 ``(n, f)``.

    Raw units are kept on purpose: an indicator's effect is then "how much this op (pair,
    path) adds", and rare combinations are not inflated as they would be by scaling to unit
    variance. Cells of small spaces are looked up in the cached table.
    """
    enc = np.atleast_2d(space.validate(encodings))
    mu, _ = space_stats(space)
    if space.size <= 100_000:
        X, _ = all_features(space)
        return X[space.index(enc)] - mu
    return features(enc, space)[0] - mu


def group_of(name: str) -> str:
    """The prior group of a characteristic: its kind, whose population scale all its members share.

    Kinds, not finer units (one group per edge or pair of edges): a few dozen scales are
    poorly determined by a few hundred source rows, and the strong/weak question the model
    answers is which *kinds* of characteristic carry the signal. Single structural
    characteristics (``disconnected``, ``shortest conv chain``, ...) are kinds of their own.
    """
    if name.startswith("live edge ") and " & " in name:
        return "live edge pairs"
    if name.startswith("edge ") and " & " in name:
        return "edge pairs"
    if name.startswith("edge "):
        return "edge ops"
    if name.startswith("live edge "):
        return "live edge ops"
    return fine_group_of(name)


def fine_group_of(name: str) -> str:
    """The groups of format-1 models: one per edge, per pair of edges, per live edge."""
    if name.startswith("edge ") and " & " in name:
        a, b = name.split(" & ")
        return f"edges {a.split()[1]} & {b.split()[1]}"
    if name.startswith("edge "):
        return f"edge {name.split()[1]}"
    if name.startswith("count "):
        return "op counts"
    if name.startswith("live edge "):
        return f"live {name.split()[2]}"
    if name.startswith("live count "):
        return "live op counts"
    if name.startswith("path "):
        return f"paths of length {name.count('>') + 1}"
    if name.startswith("log10 "):
        return "network size"
    return name


def groups(names, *, fine: bool = False) -> tuple[np.ndarray, list[str]]:
    """Group index ``(f,)`` of each characteristic and the group names, in first-seen order.

    ``fine=True``: the grouping of format-1 models (``fine_group_of``).
    """
    label_of = fine_group_of if fine else group_of
    labels = [label_of(n) for n in names]
    uniq = list(dict.fromkeys(labels))
    return np.array([uniq.index(l) for l in labels]), uniq
