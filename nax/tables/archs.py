"""Architecture tables: measured scores of architectures, one row per (arch, dataset, seed).

Long format ``arch,dataset,accuracy`` (or ``score`` instead of ``accuracy``) plus optional
columns (``seed``, ``train_time_s``, ``params_mb``, ...). In memory an :class:`ArchTable`
with the parsed encodings.

An unknown operation or malformed ``arch`` string, text in the value column, ragged rows,
and repeated (arch, dataset) rows without a ``seed`` column (or a repeated (arch, dataset,
seed)) are errors naming the file, line and column; rows with a missing value (failed
runs) are skipped with a :class:`TableWarning`.

Values keep the file's unit, recorded in ``ArchTable.unit``: ``"fraction"`` ([0, 1]),
``"percent"`` ([0, 100], NAS-Bench-201's) or ``"score"`` (any finite real: a loss, a
negative loss, a perplexity). ``lower_is_better`` declares the direction; a lower-is-better
table is a score table. The characteristic model only uses ranks, through
``ArchTable.oriented`` (the values negated when lower is better), so any score works there;
``accuracy_fraction`` exists only for accuracies.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Literal

import numpy as np
import pandas as pd

from nax import space as space_lib
from nax.tables import csvio
from nax.tables.csvio import TableWarning

__all__ = ["ArchTable", "load_archs", "save_archs", "UNITS"]

#: the largest value of each unit (None: any finite real)
UNITS = {"fraction": 1.0, "percent": 100.0, "score": None}
_KEYS = ("arch", "dataset")
_VALUE_COLUMNS = ("accuracy", "score")


@dataclasses.dataclass(frozen=True, eq=False)
class ArchTable:
    """Measured accuracies (or scores) of architectures, long format.

    Attributes:
      archs: ``n`` architecture strings in the space's string form.
      encodings: int32 ``[n, num_edges]``, the parsed ``archs``.
      datasets: str ``[n]``.
      accuracy: float64 ``[n]``, the values in ``unit`` as in the file (a score or loss
        for ``unit="score"``).
      meta: other columns, name -> array ``[n]`` (e.g. ``seed``, ``train_time_s``,
        ``params_mb``; ``n_seeds`` after ``aggregate="mean"``).
      unit: ``"fraction"`` ([0, 1]), ``"percent"`` ([0, 100]) or ``"score"`` (any finite real).
      space: the search space of the encodings.
      source: the path it was read from.
      lower_is_better: the values are losses (ranked reversed); only with ``unit="score"``.
    """

    archs: list
    encodings: np.ndarray
    datasets: np.ndarray
    accuracy: np.ndarray
    meta: dict = dataclasses.field(default_factory=dict)
    unit: str = "fraction"
    space: space_lib.CellSpace = space_lib.nb201
    source: str = ""
    lower_is_better: bool = False

    def __post_init__(self):
        archs = list(self.archs)
        n = len(archs)
        encodings = np.asarray(self.encodings)
        encodings = self.space.validate(
            encodings.reshape(0, self.space.num_edges) if encodings.size == 0 else encodings
        )
        if encodings.shape != (n, self.space.num_edges):
            raise ValueError(f"ArchTable encodings must be ({n}, {self.space.num_edges}), got {encodings.shape}")
        datasets = np.asarray(self.datasets, dtype=str)
        accuracy = np.asarray(self.accuracy, np.float64)
        if datasets.shape != (n,) or accuracy.shape != (n,):
            raise ValueError(f"ArchTable datasets and accuracy must have shape ({n},)")
        meta = csvio.meta_arrays(self.meta, n, "ArchTable")
        if self.unit not in UNITS:
            raise ValueError(f"ArchTable unit must be one of {list(UNITS)}, got {self.unit!r}")
        if self.lower_is_better and self.unit != "score":
            raise ValueError(
                f"a lower-is-better table holds scores (losses), not accuracies: unit must be 'score', got {self.unit!r}"
            )
        if not np.all(np.isfinite(accuracy)):
            raise ValueError("ArchTable values must be finite")
        top = UNITS[self.unit]
        if top is not None and np.any((accuracy < 0) | (accuracy > top)):
            raise ValueError(f"ArchTable accuracy must be in [0, {top:g}] ({self.unit})")
        for name, v in (("archs", archs), ("encodings", encodings), ("datasets", datasets), ("accuracy", accuracy)):
            object.__setattr__(self, name, v)
        object.__setattr__(self, "meta", meta)
        object.__setattr__(self, "source", str(self.source))
        object.__setattr__(self, "lower_is_better", bool(self.lower_is_better))

    @classmethod
    def from_encodings(
        cls,
        encodings,
        datasets,
        accuracy,
        *,
        space: space_lib.CellSpace = space_lib.nb201,
        meta: dict | None = None,
        unit: str = "fraction",
        source: str = "",
        lower_is_better: bool = False,
    ) -> ArchTable:
        """Build a table from encodings ``[n, num_edges]``; the strings are derived."""
        encodings = space.validate(encodings)
        archs = [space.to_string(e) for e in encodings]
        datasets = np.asarray(datasets, dtype=str)
        if datasets.ndim == 0:
            datasets = np.full(len(archs), datasets[()])
        return cls(archs, encodings, datasets, accuracy, dict(meta or {}), unit, space, source, lower_is_better)

    @property
    def n(self) -> int:
        return len(self.archs)

    @property
    def dataset_names(self) -> np.ndarray:
        """Sorted unique dataset names."""
        return np.unique(self.datasets)

    @property
    def oriented(self) -> np.ndarray:
        """The values with higher better, float64 ``[n]``: ``-accuracy`` when ``lower_is_better``."""
        return -self.accuracy if self.lower_is_better else self.accuracy

    @property
    def accuracy_fraction(self) -> np.ndarray:
        """Accuracy as a fraction in [0, 1], float64 ``[n]``, whatever the file's unit."""
        if self.unit == "score":
            raise ValueError(
                f"{self.source or 'this table'} holds scores (unit 'score'), not accuracies; "
                f"use ArchTable.oriented (higher is better) instead"
            )
        return self.accuracy / 100.0 if self.unit == "percent" else self.accuracy

    def subset(self, sel) -> ArchTable:
        """Rows selected by a bool mask ``[n]`` or integer indices."""
        idx = np.arange(self.n)[np.asarray(sel)]
        return dataclasses.replace(
            self,
            archs=[self.archs[i] for i in idx],
            encodings=self.encodings[idx],
            datasets=self.datasets[idx],
            accuracy=self.accuracy[idx],
            meta={k: v[idx] for k, v in self.meta.items()},
        )

    def pivot(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Architectures × datasets.

        Returns:
          ``(encodings_unique [m, num_edges] int32`` in lexicographic order of op indices,
          ``dataset_names [d]`` sorted, ``acc [m, d] float64`` in ``unit``: the mean over
          the rows (seeds) of each (arch, dataset), NaN where there is none ``)``.
        """
        _, first, arch_idx = np.unique(
            _encoding_keys(self.space, self.encodings), return_index=True, return_inverse=True
        )
        uniq = self.encodings[first]
        names, ds_idx = np.unique(self.datasets, return_inverse=True)
        cell = arch_idx.ravel() * len(names) + ds_idx
        size = len(uniq) * len(names)
        total = np.bincount(cell, weights=self.accuracy, minlength=size).reshape(len(uniq), len(names))
        count = np.bincount(cell, minlength=size).reshape(len(uniq), len(names))
        with np.errstate(invalid="ignore", divide="ignore"):
            acc = np.where(count > 0, total / count, np.nan)
        return uniq.astype(np.int32), names, acc

    def equals(self, other: ArchTable) -> bool:
        """Exact equality of every column, the unit, the direction and the space."""
        if not isinstance(other, ArchTable):
            return False
        return (
            self.unit == other.unit
            and self.lower_is_better == other.lower_is_better
            and self.space == other.space
            and self.archs == other.archs
            and np.array_equal(self.encodings, other.encodings)
            and np.array_equal(self.datasets, other.datasets)
            and np.array_equal(self.accuracy, other.accuracy)
            and list(self.meta) == list(other.meta)
            and all(csvio.array_equal(self.meta[k], other.meta[k]) for k in self.meta)
        )


def load_archs(
    path: str | os.PathLike,
    *,
    space: space_lib.CellSpace | str = space_lib.nb201,
    aggregate: Literal["mean"] | None = None,
    unit: Literal["auto", "fraction", "percent", "score"] = "auto",
    lower_is_better: bool = False,
) -> ArchTable:
    """Read an architecture table CSV (``arch,dataset,accuracy`` or ``score``, + optional columns).

    Args:
      path: the CSV file.
      space: the search space (or its name) whose string form ``arch`` uses.
      aggregate: None keeps one row per line; ``"mean"`` averages the rows of each
        (arch, dataset) — the value and numeric columns; ``seed`` is dropped and
        ``n_seeds`` counts the rows averaged.
      unit: ``"fraction"``, ``"percent"``, ``"score"`` (any finite real), or ``"auto"``:
        ``"score"`` for a ``score`` column, a lower-is-better table, or values outside
        [0, 100]; otherwise percent iff some value exceeds 1 (NAS-Bench-201 reports percent).
      lower_is_better: the values are losses (lower is better; ranked reversed).

    Rows with a missing value (failed runs) are skipped with a :class:`TableWarning`.
    Repeated (arch, dataset) rows need a ``seed`` column that tells them apart.

    Raises:
      FileNotFoundError: no such file.
      ValueError: malformed table; the message names the file, line and column.
    """
    where = str(path)
    if isinstance(space, str):
        space = space_lib.get(space)
    if aggregate not in (None, "mean"):
        raise ValueError(f"aggregate must be None or 'mean', got {aggregate!r}")
    if unit not in ("auto", *UNITS):
        raise ValueError(f"unit must be 'auto', 'fraction', 'percent' or 'score', got {unit!r}")
    if lower_is_better and unit not in ("auto", "score"):
        raise ValueError(f"a lower-is-better table holds scores (unit 'score'), not {unit!r}")
    _, df, row_lines = csvio.read_csv(
        path, kind="architecture", expected="arch,dataset,accuracy[,seed,...]", text_columns=_KEYS
    )
    value_cols = [c for c in _VALUE_COLUMNS if c in df.columns]
    absent = [c for c in _KEYS if c not in df.columns] + ([] if value_cols else ["accuracy"])
    if absent:
        raise ValueError(
            f"{where}: missing column(s) {absent}; an architecture table needs arch, dataset and accuracy "
            f"(or score), found {list(df.columns)}"
        )
    if len(value_cols) > 1:
        raise ValueError(f"{where}: both 'accuracy' and 'score' columns; keep the one that holds the values")
    vcol = value_cols[0]
    if len(df) == 0:
        raise ValueError(f"{where}: no data rows below the header")
    line = lambda i: int(row_lines[int(i)])  # noqa: E731

    # factorize first so that stripping and parsing touch each distinct string once
    text = {}
    for col in _KEYS:
        codes, uniq = pd.factorize(df[col], sort=False)
        uniq = np.array([u.strip() for u in uniq], dtype=object)
        empty = (codes < 0) | (uniq[codes] == "") if len(uniq) else codes < 0
        if empty.any():
            raise ValueError(f"{where}: line {line(np.flatnonzero(empty)[0])}: empty {col!r}")
        text[col] = (codes, uniq)

    acc = csvio.numeric_column(
        df[vcol],
        lambda i, cell: (
            f"{where}: line {line(i)}, column {vcol!r}: {cell!r} is not a number; "
            f"{vcol} takes numbers, or an empty cell for a failed run"
        ),
    )
    nan = np.isnan(acc)
    if np.isinf(acc).any():
        raise ValueError(
            f"{where}: line {line(np.flatnonzero(np.isinf(acc))[0])}, column {vcol!r}: not finite; "
            f"{vcol} takes finite numbers"
        )
    if nan.all():
        raise ValueError(f"{where}: no row has {'an accuracy' if vcol == 'accuracy' else 'a score'}")
    if nan.any():
        warnings.warn(
            f"{where}: skipped {int(nan.sum())} of {len(df)} rows with a missing {vcol}; "
            f"lines {csvio.some(row_lines[nan])}",
            TableWarning,
            stacklevel=2,
        )
        df = df[~nan].reset_index(drop=True)
        text = {col: (codes[~nan], uniq) for col, (codes, uniq) in text.items()}
        row_lines = row_lines[~nan]
        acc = acc[~nan]
    unit = _unit(acc, unit, vcol, lower_is_better)
    top = UNITS[unit]
    outside = ((acc < 0) | (acc > top)) if top is not None else np.zeros(len(acc), bool)
    if outside.any():
        i = np.flatnonzero(outside)[0]
        raise ValueError(
            f"{where}: {int(outside.sum())} accuracies outside [0, {top:g}] ({unit}), "
            f"first at line {line(i)}: {float(acc[i])!r}; accuracies are fractions in [0, 1] or "
            f"percentages in [0, 100], any other score needs unit='score' (--lower-is-better for a loss)"
        )

    arch_codes, arch_uniq = text["arch"]
    ds_codes, ds_uniq = text["dataset"]
    try:
        uniq_enc = space.from_strings(arch_uniq)
    except space_lib.ArchStringError as e:
        first_row = int(np.flatnonzero(arch_codes == e.index)[0])
        raise ValueError(f"{where}: line {line(first_row)}, column 'arch': {e.reason}") from None
    enc_key = _encoding_keys(space, uniq_enc)[arch_codes]
    datasets = ds_uniq.astype(str)[ds_codes]

    key = pd.DataFrame({"arch": enc_key, "dataset": datasets})
    has_seed = "seed" in df.columns
    if has_seed:
        key["seed"] = df["seed"].to_numpy()
    dup = key.duplicated(keep=False).to_numpy()
    if dup.any():
        first = np.flatnonzero(dup)[:2]
        what = "(arch, dataset, seed)" if has_seed else "(arch, dataset)"
        raise ValueError(
            f"{where}: {int(dup.sum())} rows repeat an {what}, e.g. lines {line(first[0])} and {line(first[1])} "
            f"({arch_uniq[arch_codes[first[0]]]}, {datasets[first[0]]}); "
            + (
                "each seed of an (arch, dataset) may appear once"
                if has_seed
                else "add a 'seed' column to keep repeated runs of an architecture"
            )
        )

    meta = {c: csvio.meta_column(df[c]) for c in df.columns if c not in (*_KEYS, vcol)}
    encodings = uniq_enc[arch_codes]
    archs = arch_uniq[arch_codes].tolist()
    if aggregate == "mean":
        archs, encodings, datasets, acc, meta = _aggregate_mean(archs, encodings, enc_key, datasets, acc, meta)
    return ArchTable(archs, encodings, datasets, acc, meta, unit, space, where, lower_is_better)


def _unit(values: np.ndarray, unit: str, column: str, lower_is_better: bool) -> str:
    if unit != "auto":
        return unit
    if lower_is_better or column == "score" or values.min() < 0 or values.max() > 100:
        return "score"
    return "percent" if values.max() > 1.0 else "fraction"


def save_archs(at: ArchTable, path: str | os.PathLike) -> None:
    """Write ``at`` as ``arch,dataset,accuracy,<meta...>`` (``score`` for a score table), exact floats.

    The direction is not in the file: load a lower-is-better table with ``lower_is_better=True``.
    """
    vcol = "score" if at.unit == "score" else "accuracy"
    clash = [k for k in at.meta if k in (*_KEYS, *_VALUE_COLUMNS)]
    if clash:
        raise ValueError(f"meta columns {clash} clash with the required columns {[*_KEYS, vcol]}")
    df = pd.DataFrame({"arch": at.archs, "dataset": at.datasets, vcol: at.accuracy, **at.meta})
    df.to_csv(path, index=False, lineterminator="\n")


def _encoding_keys(space, enc: np.ndarray) -> np.ndarray:
    """One int64 per distinct encoding (``space.index`` where available)."""
    if isinstance(space, space_lib.CellSpace):
        return space.index(enc)
    return np.unique(enc, axis=0, return_inverse=True)[1].ravel().astype(np.int64)


def _aggregate_mean(archs, encodings, enc_key, datasets, acc, meta):
    frame = pd.DataFrame({"_k": enc_key, "_d": datasets, "accuracy": acc})
    numeric = [k for k, v in meta.items() if k != "seed" and v.dtype.kind in "iufb"]
    text = [k for k, v in meta.items() if k != "seed" and v.dtype.kind not in "iufb"]
    for k in numeric + text:
        frame[k] = meta[k]
    frame["_row"] = np.arange(len(frame))
    g = frame.groupby(["_k", "_d"], sort=False)
    out = g[["accuracy", *numeric]].mean()
    out["_row"] = g["_row"].first()
    for k in text:
        out[k] = g[k].first()
    out["n_seeds"] = g.size()
    rows = out["_row"].to_numpy()
    new_meta = {k: out[k].to_numpy(np.float64) for k in numeric}
    new_meta.update({k: out[k].to_numpy(dtype=str) for k in text})
    new_meta["n_seeds"] = out["n_seeds"].to_numpy(np.int64)
    return (
        [archs[r] for r in rows],
        encodings[rows],
        datasets[rows],
        out["accuracy"].to_numpy(np.float64),
        new_meta,
    )
