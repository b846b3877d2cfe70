"""Search spaces: architectures as small integer arrays.

A space is an immutable object that owns the encoding of its architectures: string
round-trip, validation, sampling, mutation and enumeration. Callers only use this
interface (``space.get(name)`` or a module-level instance such as ``space.nb201``), so a
second space (a chain-structured one, say) is one more ``CellSpace``-like class plus a
registry entry.

Encodings are ``numpy`` ``int32`` arrays of shape ``(num_edges,)``; batches are
``(n, num_edges)``. Randomness comes from an explicit ``jax.random`` key.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Sequence
from typing import Protocol

import jax
import numpy as np


class Space(Protocol):
    """What every search space provides."""

    name: str
    ops: tuple[str, ...]
    num_edges: int

    def from_string(self, s: str) -> np.ndarray: ...
    def from_strings(self, strings: Sequence[str]) -> np.ndarray: ...
    def to_string(self, enc: np.ndarray) -> str: ...
    def validate(self, enc) -> np.ndarray: ...
    def sample(self, key: jax.Array, n: int | None = None) -> np.ndarray: ...
    def mutate(self, key: jax.Array, enc: np.ndarray) -> np.ndarray: ...
    def enumerate(self) -> np.ndarray: ...
    def is_connected(self, enc: np.ndarray) -> np.ndarray: ...
    @property
    def size(self) -> int: ...


class ArchStringError(ValueError):
    """A bad string in ``from_strings``: ``index`` (its position), ``string`` and ``reason``."""

    def __init__(self, index: int, string, reason: str):
        super().__init__(f"architecture {index} ({string!r}): {reason}")
        self.index, self.string, self.reason = index, string, reason


@dataclasses.dataclass(frozen=True)
class CellSpace:
    """A DAG cell with ``num_nodes`` nodes; every edge ``i -> j`` (i < j) carries one op.

    Edges are ordered by target node, then source node (NAS-Bench-201 order for four
    nodes: 0→1, 0→2, 1→2, 0→3, 1→3, 2→3). Node 0 is the cell input and the last node its
    output.
    """

    name: str
    ops: tuple[str, ...]
    num_nodes: int
    zero_op: str = "none"
    edges: tuple[tuple[int, int], ...] = ()

    def __post_init__(self):
        edges = tuple((i, j) for j in range(1, self.num_nodes) for i in range(j))
        object.__setattr__(self, "edges", edges)

    # ------------------------------------------------------------------ basics
    @property
    def num_edges(self) -> int:
        return len(self.edges)

    @property
    def num_ops(self) -> int:
        return len(self.ops)

    @property
    def size(self) -> int:
        """Number of distinct encodings (``num_ops ** num_edges``)."""
        return self.num_ops**self.num_edges

    def op_index(self, op: str) -> int:
        try:
            return self.ops.index(op)
        except ValueError:
            raise ValueError(
                f"unknown operation {op!r} for space {self.name!r}; accepted: {', '.join(self.ops)}"
            ) from None

    def validate(self, enc) -> np.ndarray:
        """Return ``enc`` as an int32 array of shape ``(..., num_edges)`` or raise ValueError."""
        arr = np.asarray(enc)
        if arr.dtype.kind not in "iu":
            if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
                arr = arr.astype(np.int64)
            else:
                raise ValueError(f"{self.name} encoding must hold integers, got dtype {arr.dtype}")
        if arr.ndim == 0 or arr.shape[-1] != self.num_edges:
            raise ValueError(
                f"{self.name} encoding must have length {self.num_edges} (one op index per edge "
                f"{self.edges}), got shape {arr.shape}"
            )
        if arr.size and (arr.min() < 0 or arr.max() >= self.num_ops):
            bad = arr[(arr < 0) | (arr >= self.num_ops)]
            raise ValueError(
                f"{self.name} encoding values must lie in 0..{self.num_ops - 1} "
                f"({', '.join(f'{i}={o}' for i, o in enumerate(self.ops))}), got {bad.tolist()}"
            )
        return arr.astype(np.int32)

    # ------------------------------------------------------------------ strings
    def to_string(self, enc) -> str:
        """NAS-Bench-201 string, e.g. ``|nor_conv_3x3~0|+|none~0|skip_connect~1|+|...|``."""
        enc = self.validate(enc)
        if enc.ndim != 1:
            raise ValueError(f"to_string takes one encoding, got shape {enc.shape}")
        nodes = []
        k = 0
        for j in range(1, self.num_nodes):
            parts = []
            for i in range(j):
                parts.append(f"{self.ops[enc[k]]}~{i}")
                k += 1
            nodes.append("|" + "|".join(parts) + "|")
        return "+".join(nodes)

    def _string_pattern(self) -> re.Pattern:
        """One regex group per edge, matching exactly ``to_string``'s form (one string a line)."""
        nodes = (
            r"\|" + r"\|".join(rf"([A-Za-z0-9_]+)~{i}" for i in range(j)) + r"\|" for j in range(1, self.num_nodes)
        )
        return re.compile("^" + r"\+".join(nodes) + "$", re.MULTILINE)

    def from_strings(self, strings: Sequence[str]) -> np.ndarray:
        """Parse many NAS-Bench-201 strings at once into encodings ``(n, num_edges)``.

        Equal to ``from_string`` row by row (surrounding whitespace ignored): one regex scan
        over all strings joined by newlines and one dict lookup per edge, instead of a
        Python parse per string (an architecture table holds 15,625 distinct cells).

        Raises:
          ArchStringError: a ValueError naming the first bad string, its position and why.
        """
        strings = list(strings)
        E = self.num_edges
        if not strings:
            return np.zeros((0, E), np.int32)
        for i, s in enumerate(strings):
            if not isinstance(s, str):
                raise ArchStringError(i, s, f"{self.name} architecture string must be str, got {type(s).__name__}")
        joined = "\n".join(s.strip() for s in strings)
        # a string holding a newline would split into two lines: it is malformed anyway
        found = self._string_pattern().findall(joined) if joined.count("\n") == len(strings) - 1 else []
        if len(found) != len(strings):  # some string is not in the canonical form: parse each, name the bad one
            return self._from_strings_one_by_one(strings)
        if E == 1:  # findall gives bare strings, not tuples, for one group
            found = [(g,) for g in found]
        lookup = {op: i for i, op in enumerate(self.ops)}
        enc = np.fromiter((lookup.get(g, -1) for groups in found for g in groups), np.int32, len(strings) * E)
        enc = enc.reshape(len(strings), E)
        if (enc < 0).any():
            i, k = map(int, np.argwhere(enc < 0)[0])
            try:
                self.op_index(found[i][k])
            except ValueError as e:
                raise ArchStringError(i, strings[i], f"{e} (in {strings[i]!r})") from None
        return enc

    def _from_strings_one_by_one(self, strings: Sequence[str]) -> np.ndarray:
        out = np.empty((len(strings), self.num_edges), np.int32)
        for i, s in enumerate(strings):
            try:
                out[i] = self.from_string(s)
            except ValueError as e:
                raise ArchStringError(i, s, str(e)) from None
        return out

    def from_string(self, s: str) -> np.ndarray:
        """Parse a NAS-Bench-201 string into an encoding of shape ``(num_edges,)``."""
        if not isinstance(s, str):
            raise ValueError(f"{self.name} architecture string must be str, got {type(s).__name__}")
        example = self.to_string(np.zeros(self.num_edges, np.int32))
        nodes = s.strip().split("+")
        if len(nodes) != self.num_nodes - 1:
            raise ValueError(
                f"malformed {self.name} string {s!r}: expected {self.num_nodes - 1} nodes "
                f"joined by '+', like {example!r}"
            )
        enc = []
        for j, node in enumerate(nodes, start=1):
            if not (node.startswith("|") and node.endswith("|")):
                raise ValueError(f"malformed {self.name} string {s!r}: node {node!r} must be wrapped in '|'")
            parts = node[1:-1].split("|")
            if len(parts) != j:
                raise ValueError(f"malformed {self.name} string {s!r}: node {j} needs {j} inputs, got {len(parts)}")
            for i, part in enumerate(parts):
                m = re.fullmatch(r"([A-Za-z0-9_]+)~(\d+)", part)
                if not m:
                    raise ValueError(f"malformed {self.name} string {s!r}: edge {part!r} is not 'op~input'")
                if int(m.group(2)) != i:
                    raise ValueError(
                        f"malformed {self.name} string {s!r}: edge {part!r} of node {j} must read from node {i}"
                    )
                enc.append(self.op_index(m.group(1)))
        return np.asarray(enc, np.int32)

    # ------------------------------------------------------------------ structure
    def is_connected(self, enc) -> np.ndarray:
        """True where some path of non-zero ops leads from the input node to the output.

        Works on one encoding (returns a bool scalar array) or a batch ``(n, num_edges)``.
        """
        enc = self.validate(enc)
        live = enc != self.op_index(self.zero_op)  # (..., E)
        reach = [np.ones(enc.shape[:-1], bool)]
        for j in range(1, self.num_nodes):
            r = np.zeros(enc.shape[:-1], bool)
            for k, (i, jj) in enumerate(self.edges):
                if jj == j:
                    r |= reach[i] & live[..., k]
            reach.append(r)
        return reach[-1]

    # ------------------------------------------------------------------ sampling
    def enumerate(self) -> np.ndarray:
        """All encodings, shape ``(size, num_edges)``, in lexicographic order of op indices."""
        grid = np.array(list(itertools.product(range(self.num_ops), repeat=self.num_edges)), np.int32)
        return grid

    def index(self, enc) -> np.ndarray:
        """Position of an encoding in ``enumerate()`` (base-``num_ops`` number)."""
        enc = self.validate(enc).astype(np.int64)
        weights = self.num_ops ** np.arange(self.num_edges - 1, -1, -1)
        return enc @ weights

    def sample(self, key: jax.Array, n: int | None = None) -> np.ndarray:
        """Uniform samples: shape ``(num_edges,)`` if ``n`` is None, else ``(n, num_edges)``."""
        shape = (self.num_edges,) if n is None else (n, self.num_edges)
        return np.asarray(jax.random.randint(key, shape, 0, self.num_ops), np.int32)

    def mutate(self, key: jax.Array, enc) -> np.ndarray:
        """Change the op of one uniformly chosen edge to a different op (one-edge mutation)."""
        enc = self.validate(enc)
        if enc.ndim != 1:
            raise ValueError(f"mutate takes one encoding, got shape {enc.shape}")
        k_edge, k_op = jax.random.split(key)
        edge = int(jax.random.randint(k_edge, (), 0, self.num_edges))
        shift = int(jax.random.randint(k_op, (), 1, self.num_ops))
        out = enc.copy()
        out[edge] = (out[edge] + shift) % self.num_ops
        return out

    def neighbours(self, enc) -> np.ndarray:
        """All encodings one edge away, shape ``(num_edges * (num_ops - 1), num_edges)``."""
        enc = self.validate(enc)
        out = []
        for e in range(self.num_edges):
            for s in range(1, self.num_ops):
                n = enc.copy()
                n[e] = (n[e] + s) % self.num_ops
                out.append(n)
        return np.stack(out)


NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")

nb201 = CellSpace(name="nb201", ops=NB201_OPS, num_nodes=4)

_REGISTRY: dict[str, CellSpace] = {"nb201": nb201}


def get(name: str) -> CellSpace:
    """Look a space up by name (``'nb201'``)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown search space {name!r}; available: {', '.join(sorted(_REGISTRY))}") from None


def names() -> Sequence[str]:
    return tuple(sorted(_REGISTRY))
