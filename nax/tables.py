"""Curve tables and architecture tables: load, validate, save.

Two CSV formats (``DESIGN.md``, "Formats"):

* **Curve table** — one row per training run, per-epoch values in columns
  ``<prefix><epoch>`` (default ``acc_``), other columns metadata. In memory a
  :class:`CurveTable`: a dense ``float64`` array ``[runs, epochs]`` with ``NaN`` where
  a run has no value, a boolean mask, the epoch number of every column and per-run
  metadata.
* **Architecture table** — long format ``arch,dataset,accuracy`` plus optional columns
  (``seed``, ``train_time_s``, ``params_mb``, ...). In memory an :class:`ArchTable` with
  the parsed encodings.

Rules the loaders enforce (and why):

* Missing values (empty, ``nan``, ``NA``, ``null``) may only end a row: a stopped run.
  A row with a missing value *followed* by an observed one, or a row with no value at
  all, cannot be a curve; it is skipped and counted in one :class:`TableWarning`
  (``on_bad_rows="error"`` raises instead). Everything else that is wrong — no value
  columns, ragged rows, text or infinities in value columns, the same epoch twice,
  accuracies outside [0, 1] without ``minimize`` — is a :class:`ValueError` naming the
  file, the line and column, and what is accepted.
* Architecture tables: an unknown operation or malformed ``arch`` string, text in
  ``accuracy``, ragged rows, and repeated (arch, dataset) rows without a ``seed`` column
  (or a repeated (arch, dataset, seed)) are errors; rows with a missing accuracy (failed
  runs) are skipped with a :class:`TableWarning`.
* Units. Curve values are kept as they are in the file; without ``minimize`` they must
  be fractions in [0, 1]. Architecture tables keep the file's unit too (NAS-Bench-201
  reports percent) and record it in ``ArchTable.unit`` (``"fraction"`` or
  ``"percent"``, detected when ``unit="auto"``: percent iff some value exceeds 1);
  ``ArchTable.accuracy_fraction`` is always in [0, 1].
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import re
import warnings
from pathlib import Path
from typing import Iterable, Literal, Sequence

import numpy as np
import pandas as pd

from nax import space as space_lib

__all__ = [
    "TableWarning",
    "CurveTable",
    "ArchTable",
    "load_curves",
    "save_curves",
    "concat",
    "load_archs",
    "save_archs",
]

#: spellings of a missing value in a value column (compared lower-case, stripped)
MISSING = ("", "nan", "na", "n/a", "null", "none")
_LINES_SHOWN = 5


class TableWarning(UserWarning):
    """Rows of a table were skipped; the message counts them and names their lines."""


# ====================================================================== curve tables
@dataclasses.dataclass(frozen=True, eq=False)
class CurveTable:
    """Learning curves of ``runs`` training runs over ``epochs`` epoch columns.

    Attributes:
      values: float64 ``[runs, epochs]``; accuracy (fraction) or, with ``minimize``, a
        loss; ``NaN`` where missing. Missing values only end a row.
      mask: bool ``[runs, epochs]``, True where observed (``== ~isnan(values)``).
      epochs: int64 ``[epochs]``, strictly ascending epoch numbers of the columns.
      datasets: str ``[runs]``, the dataset each run was trained on.
      meta: other per-run columns, name -> array ``[runs]`` (int64, float64, bool or str).
      minimize: True when lower values are better (losses); False for accuracies.
      source: where the table came from (a path, or several joined by ``;``).
    """

    values: np.ndarray
    mask: np.ndarray
    epochs: np.ndarray
    datasets: np.ndarray
    meta: dict = dataclasses.field(default_factory=dict)
    minimize: bool = False
    source: str = ""

    def __post_init__(self):
        values = np.asarray(self.values, np.float64)
        if values.ndim != 2:
            raise ValueError(f"CurveTable values must be [runs, epochs], got shape {values.shape}")
        n, e = values.shape
        mask = np.asarray(self.mask, bool)
        if mask.shape != values.shape or np.any(mask == np.isnan(values)):
            raise ValueError("CurveTable mask must have the shape of values and equal ~isnan(values)")
        epochs = np.asarray(self.epochs)
        if epochs.shape != (e,) or (e and epochs.dtype.kind not in "iu"):
            raise ValueError(f"CurveTable epochs must be {e} integers, got {epochs!r}")
        epochs = epochs.astype(np.int64)
        if np.any(np.diff(epochs) <= 0) or (e and epochs[0] < 0):
            raise ValueError(f"CurveTable epochs must be non-negative and strictly ascending, got {epochs.tolist()}")
        datasets = np.asarray(self.datasets, dtype=str)
        if datasets.shape != (n,):
            raise ValueError(f"CurveTable datasets must have shape ({n},), got {datasets.shape}")
        meta = {str(k): np.asarray(v) for k, v in self.meta.items()}
        for k, v in meta.items():
            if v.shape != (n,):
                raise ValueError(f"CurveTable meta column {k!r} must have shape ({n},), got {v.shape}")
        if np.any(np.isinf(values)):
            raise ValueError("CurveTable values must be finite or NaN (missing)")
        bad = _bad_rows(mask)
        if bad["empty"].any() or bad["gap"].any():
            raise ValueError(
                "every run needs at least one value and missing values only at the end of a row; "
                f"runs {np.flatnonzero(bad['empty'] | bad['gap'])[:_LINES_SHOWN].tolist()} break this"
            )
        if not self.minimize:
            _check_fraction(values, where=self.source or "CurveTable")
        for name, v in (("values", values), ("mask", mask), ("epochs", epochs), ("datasets", datasets)):
            object.__setattr__(self, name, v)
        object.__setattr__(self, "meta", meta)
        object.__setattr__(self, "minimize", bool(self.minimize))
        object.__setattr__(self, "source", str(self.source))

    @classmethod
    def from_arrays(
        cls,
        values,
        datasets,
        *,
        epochs=None,
        meta: dict | None = None,
        minimize: bool = False,
        source: str = "",
    ) -> "CurveTable":
        """Build a table from a ``[runs, epochs]`` array with NaN for missing values.

        ``datasets`` is one name for all runs or one per run; ``epochs`` defaults to
        ``1..epochs``.
        """
        values = np.asarray(values, np.float64)
        if values.ndim != 2:
            raise ValueError(f"values must be [runs, epochs], got shape {values.shape}")
        if epochs is None:
            epochs = np.arange(1, values.shape[1] + 1)
        datasets = np.asarray(datasets, dtype=str)
        if datasets.ndim == 0:
            datasets = np.full(values.shape[0], datasets[()])
        return cls(values, ~np.isnan(values), epochs, datasets, dict(meta or {}), minimize, source)

    # ------------------------------------------------------------------ views
    @property
    def n_runs(self) -> int:
        return self.values.shape[0]

    @property
    def n_epochs(self) -> int:
        return self.values.shape[1]

    @property
    def lengths(self) -> np.ndarray:
        """Observed epoch columns per run, int64 ``[runs]`` (>= 1)."""
        return self.mask.sum(axis=1)

    @property
    def last_epochs(self) -> np.ndarray:
        """Epoch number of each run's last observed value, int64 ``[runs]``."""
        return self.epochs[self.lengths - 1]

    @property
    def final(self) -> np.ndarray:
        """Last observed value of each run, float64 ``[runs]``."""
        return self.values[np.arange(self.n_runs), self.lengths - 1]

    @property
    def dataset_names(self) -> np.ndarray:
        """Sorted unique dataset names, str ``[datasets]``."""
        return np.unique(self.datasets)

    def subset(self, sel) -> "CurveTable":
        """Runs selected by a bool mask ``[runs]`` or integer indices; epochs unchanged."""
        sel = np.asarray(sel)
        if sel.dtype == bool and sel.shape != (self.n_runs,):
            raise ValueError(f"boolean selection must have shape ({self.n_runs},), got {sel.shape}")
        return dataclasses.replace(
            self,
            values=self.values[sel],
            mask=self.mask[sel],
            datasets=self.datasets[sel],
            meta={k: v[sel] for k, v in self.meta.items()},
        )

    def trimmed(self) -> "CurveTable":
        """The same runs without the epoch columns that no run observed (padding)."""
        keep = self.mask.any(axis=0)
        return dataclasses.replace(self, values=self.values[:, keep], mask=self.mask[:, keep], epochs=self.epochs[keep])

    def by_dataset(self) -> dict[str, "CurveTable"]:
        """One trimmed table per dataset, in sorted order of names."""
        return {str(d): self.subset(self.datasets == d).trimmed() for d in self.dataset_names}

    def equals(self, other: "CurveTable") -> bool:
        """Exact equality of every array (NaN equal to NaN), flag and meta dtype kind."""
        if not isinstance(other, CurveTable):
            return False
        return (
            self.minimize == other.minimize
            and np.array_equal(self.values, other.values, equal_nan=True)
            and np.array_equal(self.mask, other.mask)
            and np.array_equal(self.epochs, other.epochs)
            and np.array_equal(self.datasets, other.datasets)
            and list(self.meta) == list(other.meta)
            and all(_array_equal(self.meta[k], other.meta[k]) for k in self.meta)
        )

    @classmethod
    def concat(cls, tables: Sequence["CurveTable"]) -> "CurveTable":
        """Stack the runs of several tables over the union of their epochs (NaN padding).

        Every table's epochs must be the first epochs of the union (``1..20`` and
        ``1..140`` concatenate; ``0..49`` and ``1..20`` do not), so that padding only ever
        ends a row. Meta columns missing from a table are filled with NaN (numeric
        columns) or ``""`` (text columns). All tables must agree on ``minimize``.
        """
        tables = list(tables)
        if not tables:
            raise ValueError("concat needs at least one CurveTable")
        if len({t.minimize for t in tables}) != 1:
            raise ValueError(
                "cannot concat tables with different minimize flags: "
                + ", ".join(f"{t.source or '?'} minimize={t.minimize}" for t in tables)
            )
        epochs = np.unique(np.concatenate([t.epochs for t in tables]))
        for t in tables:
            if not np.array_equal(t.epochs, epochs[: t.n_epochs]):
                raise ValueError(
                    f"cannot concat {t.source or 'a table'} with epochs {_span(t.epochs)}: the tables together have "
                    f"epochs {_span(epochs)}, and its runs would miss values before observed ones; load every table "
                    f"with the same include_epoch0 (or subset the epochs) so that each starts at {epochs[0]} "
                    f"without holes"
                )
        n = sum(t.n_runs for t in tables)
        values = np.full((n, epochs.size), np.nan)
        row = 0
        for t in tables:
            values[row : row + t.n_runs, np.searchsorted(epochs, t.epochs)] = t.values
            row += t.n_runs
        keys = list(dict.fromkeys(k for t in tables for k in t.meta))
        meta = {k: _concat_column([t.meta.get(k) for t in tables], [t.n_runs for t in tables]) for k in keys}
        sources = list(dict.fromkeys(t.source for t in tables if t.source))
        return cls(
            values,
            ~np.isnan(values),
            epochs,
            np.concatenate([t.datasets for t in tables]),
            meta,
            tables[0].minimize,
            ";".join(sources),
        )


def concat(tables: Sequence[CurveTable]) -> CurveTable:
    """Module-level alias of :meth:`CurveTable.concat`."""
    return CurveTable.concat(tables)


def load_curves(
    path: str | os.PathLike,
    *,
    prefix: str = "acc_",
    dataset_column: str | None = "training_dataset",
    minimize: bool = False,
    include_epoch0: bool = False,
    on_bad_rows: Literal["skip", "error"] = "skip",
) -> CurveTable:
    """Read a curve table CSV.

    Args:
      path: the CSV file.
      prefix: value columns are named ``<prefix><epoch>`` (epoch a non-negative integer);
        other columns starting with the prefix (``acc_best``) are metadata.
      dataset_column: the column naming each run's dataset; a file without it (or
        ``None``) is one dataset named after the file (its stem).
      minimize: values are losses (any finite number) rather than accuracies in [0, 1].
      include_epoch0: keep the ``<prefix>0`` column (the untrained network), ignored by
        default.
      on_bad_rows: ``"skip"`` rows with no value or with a gap (counted in one
        :class:`TableWarning`), or ``"error"`` on the first one.

    Returns:
      A :class:`CurveTable` with epochs in ascending order whatever the column order.

    Raises:
      FileNotFoundError: no such file.
      ValueError: malformed table; the message names the file, line and column.
    """
    if on_bad_rows not in ("skip", "error"):
        raise ValueError(f"on_bad_rows must be 'skip' or 'error', got {on_bad_rows!r}")
    path = Path(path)
    where = str(path)
    header, rows, lines = _read_csv_rows(path)
    names = [h.strip() for h in header]
    _check_unique_names(names, where)

    epoch_of: dict[int, int] = {}  # epoch -> column index
    for j, name in enumerate(names):
        epoch = _epoch_of(name, prefix)
        if epoch is None:
            continue
        if epoch in epoch_of:
            raise ValueError(
                f"{where}: columns {names[epoch_of[epoch]]!r} and {name!r} both hold epoch {epoch}; "
                f"each epoch may appear once"
            )
        epoch_of[epoch] = j
    if not include_epoch0:
        epoch_of.pop(0, None)
    if not epoch_of:
        raise ValueError(
            f"{where}: no value columns named '{prefix}<epoch>' (epochs 1, 2, ...) among "
            f"{names}; set the prefix (--prefix) to the one the file uses"
        )
    if not rows:
        raise ValueError(f"{where}: no data rows below the header")
    epochs = np.array(sorted(epoch_of), np.int64)
    value_cols = [epoch_of[e] for e in epochs]

    raw = np.array([[r[j] for j in value_cols] for r in rows], dtype=str).reshape(len(rows), len(value_cols))
    missing = np.isin(np.char.lower(np.char.strip(raw)), MISSING)
    values = _parse_floats(
        np.where(missing, "nan", raw),
        lambda i, k: (
            f"{where}: line {lines[i]}, column {names[value_cols[k]]!r}: {str(raw[i, k])!r} is not a number; "
            f"value columns take numbers, or an empty cell / NaN for a missing value"
        ),
    )
    if np.isinf(values).any():
        i, k = np.argwhere(np.isinf(values))[0]
        raise ValueError(
            f"{where}: line {lines[i]}, column {names[value_cols[k]]!r}: {str(raw[i, k])!r} is not finite; "
            f"value columns take finite numbers, or an empty cell / NaN for a missing value"
        )

    bad = _bad_rows(~missing)
    drop = bad["empty"] | bad["gap"]
    if drop.all():
        raise ValueError(
            f"{where}: none of the {len(rows)} rows is a curve: {int(bad['empty'].sum())} have no value, "
            f"{int(bad['gap'].sum())} a missing value before an observed one (missing values may only end a row)"
        )
    if drop.any():
        msg = (
            f"{where}: skipped {int(drop.sum())} of {len(rows)} rows: {int(bad['empty'].sum())} with no value, "
            f"{int(bad['gap'].sum())} with a missing value before an observed one "
            f"(missing values may only end a row); lines {_some(np.asarray(lines)[drop])}"
        )
        if on_bad_rows == "error":
            raise ValueError(msg.replace("skipped", "found bad", 1))
        warnings.warn(msg, TableWarning, stacklevel=2)
    keep = ~drop
    values = values[keep]
    kept_lines = np.asarray(lines)[keep]

    if not minimize:
        outside = ~np.isnan(values) & ((values < 0) | (values > 1))
        if outside.any():
            i, k = np.argwhere(outside)[0]
            hint = (
                " They look like percentages: divide them by 100."
                if np.nanmax(values) <= 100 and np.nanmin(values) >= 0
                else ""
            )
            raise ValueError(
                f"{where}: {int(outside.sum())} values outside [0, 1], first at line {kept_lines[i]}, "
                f"column {prefix}{epochs[k]}: {float(values[i, k])!r}. Accuracies must be fractions in [0, 1]; "
                f"for losses or perplexities pass --minimize (minimize=True).{hint}"
            )

    rows_kept = [r for r, k in zip(rows, keep, strict=True) if k]
    if dataset_column is not None and dataset_column in names:
        j = names.index(dataset_column)
        datasets = np.array([r[j].strip() for r in rows_kept], dtype=str)
        if (datasets == "").any():
            raise ValueError(
                f"{where}: line {kept_lines[np.flatnonzero(datasets == '')[0]]}: empty "
                f"{dataset_column!r}; every run needs a dataset name"
            )
    else:
        datasets = np.full(len(rows_kept), path.stem)

    skip = set(value_cols) | {j for j, n in enumerate(names) if _epoch_of(n, prefix) is not None}
    if dataset_column is not None and dataset_column in names:
        skip.add(names.index(dataset_column))
    meta = {names[j]: _infer_column([r[j] for r in rows_kept]) for j in range(len(names)) if j not in skip}
    return CurveTable(values, ~np.isnan(values), epochs, datasets, meta, minimize, where)


def save_curves(
    ct: CurveTable,
    path: str | os.PathLike,
    *,
    prefix: str = "acc_",
    dataset_column: str = "training_dataset",
) -> None:
    """Write ``ct`` as a curve table CSV: dataset column, meta columns, value columns.

    Floats are written in their shortest exact form, so ``load_curves`` (with the same
    ``prefix``, ``dataset_column`` and ``minimize``) gives back an equal table.
    """
    if dataset_column in ct.meta or any(_epoch_of(k, prefix) is not None for k in ct.meta):
        raise ValueError(
            f"meta column names clash with the dataset column {dataset_column!r} or prefix {prefix!r}: {list(ct.meta)}"
        )
    header = [dataset_column, *ct.meta, *(f"{prefix}{e}" for e in ct.epochs)]
    meta_text = [_format_column(v) for v in ct.meta.values()]
    value_text = np.where(ct.mask, np.vectorize(_format_float, otypes=[object])(ct.values), "")
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        for i in range(ct.n_runs):
            w.writerow([ct.datasets[i], *(m[i] for m in meta_text), *value_text[i]])


# ====================================================================== architecture tables
@dataclasses.dataclass(frozen=True, eq=False)
class ArchTable:
    """Measured accuracies of architectures, long format: one row per (arch, dataset, seed).

    Attributes:
      archs: ``n`` architecture strings in the space's string form.
      encodings: int32 ``[n, num_edges]``, the parsed ``archs``.
      datasets: str ``[n]``.
      accuracy: float64 ``[n]`` in ``unit`` (as in the file).
      meta: other columns, name -> array ``[n]`` (e.g. ``seed``, ``train_time_s``,
        ``params_mb``; ``n_seeds`` after ``aggregate="mean"``).
      unit: ``"fraction"`` ([0, 1]) or ``"percent"`` ([0, 100]).
      space: the search space of the encodings.
      source: the path it was read from.
    """

    archs: list
    encodings: np.ndarray
    datasets: np.ndarray
    accuracy: np.ndarray
    meta: dict = dataclasses.field(default_factory=dict)
    unit: str = "fraction"
    space: space_lib.CellSpace = space_lib.nb201
    source: str = ""

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
        meta = {str(k): np.asarray(v) for k, v in self.meta.items()}
        for k, v in meta.items():
            if v.shape != (n,):
                raise ValueError(f"ArchTable meta column {k!r} must have shape ({n},), got {v.shape}")
        if self.unit not in _UNIT_MAX:
            raise ValueError(f"ArchTable unit must be one of {sorted(_UNIT_MAX)}, got {self.unit!r}")
        if not np.all(np.isfinite(accuracy)) or np.any((accuracy < 0) | (accuracy > _UNIT_MAX[self.unit])):
            raise ValueError(f"ArchTable accuracy must be finite and in [0, {_UNIT_MAX[self.unit]}] ({self.unit})")
        for name, v in (("archs", archs), ("encodings", encodings), ("datasets", datasets), ("accuracy", accuracy)):
            object.__setattr__(self, name, v)
        object.__setattr__(self, "meta", meta)
        object.__setattr__(self, "source", str(self.source))

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
    ) -> "ArchTable":
        """Build a table from encodings ``[n, num_edges]``; the strings are derived."""
        encodings = space.validate(encodings)
        archs = [space.to_string(e) for e in encodings]
        datasets = np.asarray(datasets, dtype=str)
        if datasets.ndim == 0:
            datasets = np.full(len(archs), datasets[()])
        return cls(archs, encodings, datasets, accuracy, dict(meta or {}), unit, space, source)

    @property
    def n(self) -> int:
        return len(self.archs)

    @property
    def dataset_names(self) -> np.ndarray:
        """Sorted unique dataset names."""
        return np.unique(self.datasets)

    @property
    def accuracy_fraction(self) -> np.ndarray:
        """Accuracy as a fraction in [0, 1], float64 ``[n]``, whatever the file's unit."""
        return self.accuracy / 100.0 if self.unit == "percent" else self.accuracy

    def subset(self, sel) -> "ArchTable":
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

    def equals(self, other: "ArchTable") -> bool:
        """Exact equality of every column, the unit and the space."""
        if not isinstance(other, ArchTable):
            return False
        return (
            self.unit == other.unit
            and self.space == other.space
            and self.archs == other.archs
            and np.array_equal(self.encodings, other.encodings)
            and np.array_equal(self.datasets, other.datasets)
            and np.array_equal(self.accuracy, other.accuracy)
            and list(self.meta) == list(other.meta)
            and all(_array_equal(self.meta[k], other.meta[k]) for k in self.meta)
        )


_UNIT_MAX = {"fraction": 1.0, "percent": 100.0}
# pandas < 3 parses floats with a fast parser that can be off by one ulp; 3.x is exact by default
# and deprecates the option
_EXACT_FLOATS = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}
_ARCH_REQUIRED = ("arch", "dataset", "accuracy")


def load_archs(
    path: str | os.PathLike,
    *,
    space: space_lib.CellSpace | str = space_lib.nb201,
    aggregate: Literal["mean"] | None = None,
    unit: Literal["auto", "fraction", "percent"] = "auto",
) -> ArchTable:
    """Read an architecture table CSV (``arch,dataset,accuracy`` + optional columns).

    Args:
      path: the CSV file.
      space: the search space (or its name) whose string form ``arch`` uses.
      aggregate: None keeps one row per line; ``"mean"`` averages the rows of each
        (arch, dataset) — accuracy and numeric columns; ``seed`` is dropped and
        ``n_seeds`` counts the rows averaged.
      unit: ``"fraction"``, ``"percent"``, or ``"auto"``: percent iff some accuracy
        exceeds 1 (NAS-Bench-201 reports percent).

    Rows with a missing accuracy (failed runs) are skipped with a :class:`TableWarning`.
    Repeated (arch, dataset) rows need a ``seed`` column that tells them apart.

    Raises:
      FileNotFoundError: no such file.
      ValueError: malformed table; the message names the file, line and column.
    """
    path = Path(path)
    where = str(path)
    if isinstance(space, str):
        space = space_lib.get(space)
    if not path.is_file():
        raise FileNotFoundError(f"architecture table {where} not found")
    if aggregate not in (None, "mean"):
        raise ValueError(f"aggregate must be None or 'mean', got {aggregate!r}")
    if unit not in ("auto", *_UNIT_MAX):
        raise ValueError(f"unit must be 'auto', 'fraction' or 'percent', got {unit!r}")
    data = path.read_bytes()
    # pandas pads short rows and may turn a longer row's first field into an index: count fields first
    row_lines = _data_row_lines(data, where)
    if row_lines is None:
        raise ValueError(f"{where}: empty file; expected a header {','.join(_ARCH_REQUIRED)}[,seed,...]")
    df = pd.read_csv(
        io.BytesIO(data),
        dtype={"arch": object, "dataset": object},
        encoding="utf-8-sig",
        index_col=False,
        low_memory=False,
        **_EXACT_FLOATS,
    )
    df.columns = [str(c).strip() for c in df.columns]
    _check_unique_names(list(df.columns), where)
    absent = [c for c in _ARCH_REQUIRED if c not in df.columns]
    if absent:
        raise ValueError(
            f"{where}: missing column(s) {absent}; an architecture table needs {list(_ARCH_REQUIRED)}, "
            f"found {list(df.columns)}"
        )
    if len(df) == 0:
        raise ValueError(f"{where}: no data rows below the header")
    if len(row_lines) != len(df):  # a layout our line count reads differently: approximate lines
        row_lines = np.arange(len(df)) + 2
    line = lambda i: int(row_lines[int(i)])  # noqa: E731

    # factorize first so that stripping and parsing touch each distinct string once
    text = {}
    for col in ("arch", "dataset"):
        codes, uniq = pd.factorize(df[col], sort=False)
        uniq = np.array([u.strip() for u in uniq], dtype=object)
        empty = (codes < 0) | (uniq[codes] == "") if len(uniq) else codes < 0
        if empty.any():
            raise ValueError(f"{where}: line {line(np.flatnonzero(empty)[0])}: empty {col!r}")
        text[col] = (codes, uniq)

    acc = _numeric_column(df["accuracy"], where, "accuracy", line)
    nan = np.isnan(acc)
    if np.isinf(acc).any():
        raise ValueError(
            f"{where}: line {line(np.flatnonzero(np.isinf(acc))[0])}, column 'accuracy': not finite; "
            f"accuracy takes finite numbers"
        )
    if nan.all():
        raise ValueError(f"{where}: no row has an accuracy")
    if nan.any():
        warnings.warn(
            f"{where}: skipped {int(nan.sum())} of {len(df)} rows with a missing accuracy; "
            f"lines {_some(row_lines[nan])}",
            TableWarning,
            stacklevel=2,
        )
        df = df[~nan].reset_index(drop=True)
        text = {col: (codes[~nan], uniq) for col, (codes, uniq) in text.items()}
        row_lines = row_lines[~nan]
        acc = acc[~nan]
    if unit == "auto":
        unit = "percent" if acc.max() > 1.0 else "fraction"
    top = _UNIT_MAX[unit]
    outside = (acc < 0) | (acc > top)
    if outside.any():
        i = np.flatnonzero(outside)[0]
        raise ValueError(
            f"{where}: {int(outside.sum())} accuracies outside [0, {top:g}] ({unit}), "
            f"first at line {line(i)}: {float(acc[i])!r}; "
            f"accuracies are fractions in [0, 1] or percentages in [0, 100]"
        )

    arch_codes, arch_uniq = text["arch"]
    ds_codes, ds_uniq = text["dataset"]
    uniq_enc = _parse_archs(space, arch_uniq, arch_codes, where, line)
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

    meta_cols = [c for c in df.columns if c not in _ARCH_REQUIRED]
    meta = {c: _pandas_column(df[c]) for c in meta_cols}
    encodings = uniq_enc[arch_codes]
    archs = arch_uniq[arch_codes].tolist()
    if aggregate == "mean":
        archs, encodings, datasets, acc, meta = _aggregate_mean(archs, encodings, enc_key, datasets, acc, meta)
    return ArchTable(archs, encodings, datasets, acc, meta, unit, space, where)


def save_archs(at: ArchTable, path: str | os.PathLike) -> None:
    """Write ``at`` as ``arch,dataset,accuracy,<meta...>`` with exact (shortest) floats."""
    clash = [k for k in at.meta if k in _ARCH_REQUIRED]
    if clash:
        raise ValueError(f"meta columns {clash} clash with the required columns {list(_ARCH_REQUIRED)}")
    df = pd.DataFrame({"arch": at.archs, "dataset": at.datasets, "accuracy": at.accuracy, **at.meta})
    df.to_csv(path, index=False, lineterminator="\n")


# ====================================================================== helpers
def _read_csv_rows(path: Path) -> tuple[list[str], list[list[str]], list[int]]:
    """Header, data rows and the line number of each row; blank lines are skipped."""
    if not path.is_file():
        raise FileNotFoundError(f"curve table {path} not found")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or not any(h.strip() for h in header):
            raise ValueError(f"{path}: empty file; expected a header line with metadata and '<prefix><epoch>' columns")
        rows, lines = [], []
        end = reader.line_num
        for row in reader:
            start, end = end + 1, reader.line_num  # a quoted field may span lines: report the first
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != len(header):
                raise ValueError(
                    f"{path}: line {start} has {len(row)} fields, the header has {len(header)}; "
                    f"ragged rows are not accepted (write empty cells for missing values)"
                )
            rows.append(row)
            lines.append(start)
    return header, rows, lines


def _data_row_lines(data: bytes, where: str) -> np.ndarray | None:
    """1-based line numbers of the data rows (blank lines skipped), None for a file without a header.

    Raises ValueError when a row's field count differs from the header's.
    """
    if not data.strip():
        return None
    if b'"' in data:  # quoted fields may hold commas and newlines: let the csv module count
        reader = csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""))
        counts, lines = [], []
        end = 0
        for row in reader:
            start, end = end + 1, reader.line_num  # a quoted field may span lines: report the first
            if row:
                counts.append(len(row))
                lines.append(start)
        counts, lines = np.array(counts), np.array(lines)
    else:
        buf = np.frombuffer(data, np.uint8)
        ends = np.flatnonzero(buf == ord("\n"))
        if len(buf) and buf[-1] != ord("\n"):
            ends = np.append(ends, len(buf))
        starts = np.concatenate([[0], ends[:-1] + 1])
        stripped_ends = ends - ((ends > starts) & (buf[np.maximum(ends - 1, 0)] == ord("\r")))
        commas = np.searchsorted(np.flatnonzero(buf == ord(",")), np.stack([starts, ends]))
        nonblank = stripped_ends > starts
        counts = (commas[1] - commas[0] + 1)[nonblank]
        lines = (np.arange(len(starts)) + 1)[nonblank]
    if len(counts) == 0:
        return None
    n_fields = counts[0]
    bad = np.flatnonzero(counts[1:] != n_fields)
    if bad.size:
        i = bad[0] + 1
        raise ValueError(
            f"{where}: ragged rows: line {lines[i]} has {counts[i]} fields, the header has {n_fields}; "
            f"every row needs one field per header column ({bad.size} such rows)"
        )
    return lines[1:]


def _epoch_of(name: str, prefix: str) -> int | None:
    rest = name[len(prefix) :] if name.startswith(prefix) else None
    if rest and rest.isascii() and rest.isdigit():
        return int(rest)
    return None


def _check_unique_names(names: list[str], where: str) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ValueError(f"{where}: column {n!r} appears twice in the header; column names must be unique")
        seen.add(n)


def _bad_rows(mask: np.ndarray) -> dict[str, np.ndarray]:
    """Rows with no observed value, and rows with a missing value before an observed one."""
    n_obs = mask.sum(axis=1)
    # a valid row is observed exactly on its first n_obs columns
    prefix = np.arange(mask.shape[1]) < n_obs[:, None]
    empty = n_obs == 0
    return {"empty": empty, "gap": ~empty & (mask != prefix).any(axis=1)}


def _parse_floats(text: np.ndarray, describe) -> np.ndarray:
    """``text.astype(float64)`` (exact, like ``float()``), or a ValueError from ``describe(i, k)``."""
    try:
        return text.astype(np.float64)
    except ValueError:
        for (i, k), s in np.ndenumerate(text):
            try:
                float(s)
            except ValueError:
                raise ValueError(describe(i, k)) from None
        raise


def _check_fraction(values: np.ndarray, where: str) -> None:
    outside = ~np.isnan(values) & ((values < 0) | (values > 1))
    if outside.any():
        raise ValueError(
            f"{where}: {int(outside.sum())} values outside [0, 1]; accuracies must be fractions, "
            f"for losses set minimize=True (--minimize)"
        )


def _infer_column(cells: list[str]) -> np.ndarray:
    """A metadata column as int64, float64 (NaN for empty cells), bool, or str."""
    text = np.array([c.strip() for c in cells], dtype=str)
    empty = text == ""
    if not empty.all():
        if not empty.any():
            try:
                return text.astype(np.int64)
            except (ValueError, OverflowError):
                pass
            if np.isin(text, ("True", "False")).all():
                return text == "True"
        try:
            return np.where(empty, "nan", text).astype(np.float64)
        except ValueError:
            return np.array(cells, dtype=str)
    return np.full(len(cells), np.nan)


def _format_float(x: float) -> str:
    return repr(float(x))


def _format_column(v: np.ndarray) -> list[str]:
    if v.dtype.kind == "f":
        return ["" if np.isnan(x) else _format_float(x) for x in v]
    if v.dtype.kind in "iu":
        return [str(int(x)) for x in v]
    if v.dtype.kind == "b":
        return ["True" if x else "False" for x in v]
    return [str(x) for x in v]


def _array_equal(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype.kind != b.dtype.kind:
        return False
    return np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


def _concat_column(parts: list[np.ndarray | None], sizes: list[int]) -> np.ndarray:
    present = [p for p in parts if p is not None]
    numeric = all(p.dtype.kind in "iufb" for p in present)
    if len(present) == len(parts):
        return np.concatenate(present) if numeric else np.concatenate([p.astype(str) for p in present])
    filled = [
        (p if numeric else p.astype(str)) if p is not None else (np.full(n, np.nan) if numeric else np.full(n, ""))
        for p, n in zip(parts, sizes, strict=True)
    ]
    return np.concatenate([f.astype(np.float64) for f in filled]) if numeric else np.concatenate(filled)


def _span(epochs: np.ndarray) -> str:
    e = epochs.tolist()
    contiguous = e == list(range(e[0], e[-1] + 1)) if e else True
    return f"{e[0]}..{e[-1]}" if contiguous and len(e) > 2 else str(e)


def _some(lines: Iterable) -> str:
    lines = [int(x) for x in lines]
    shown = ", ".join(map(str, lines[:_LINES_SHOWN]))
    return shown + (f", ... ({len(lines)} in all)" if len(lines) > _LINES_SHOWN else "")


def _numeric_column(col: pd.Series, where: str, name: str, line) -> np.ndarray:
    """A numeric pandas column as float64 (NaN for missing), or a ValueError naming the first text cell."""
    if col.dtype.kind in "iufb":
        return col.to_numpy(np.float64)
    num = pd.to_numeric(col, errors="coerce").to_numpy(np.float64)
    text = col.astype(str).str.strip().str.lower()
    bad = np.isnan(num) & col.notna().to_numpy() & ~text.isin(MISSING).to_numpy()
    if bad.any():
        i = np.flatnonzero(bad)[0]
        raise ValueError(
            f"{where}: line {line(i)}, column {name!r}: {str(col.iloc[i])!r} is not a number; "
            f"{name} takes numbers, or an empty cell for a failed run"
        )
    return num


def _pandas_column(col: pd.Series) -> np.ndarray:
    if col.dtype.kind in "iufb":
        return col.to_numpy()
    return col.fillna("").astype(str).to_numpy(dtype=str)


def _arch_pattern(space: space_lib.CellSpace) -> re.Pattern | None:
    """A regex with one group per edge matching exactly ``space.to_string``'s form, or None."""
    if not isinstance(space, space_lib.CellSpace):
        return None
    nodes = [r"\|" + r"\|".join(rf"([A-Za-z0-9_]+)~{i}" for i in range(j)) + r"\|" for j in range(1, space.num_nodes)]
    pattern = re.compile(r"\+".join(nodes))
    probe = space.to_string(np.arange(space.num_edges, dtype=np.int32) % space.num_ops)
    m = pattern.fullmatch(probe)
    # guard against the string form changing under us: fall back to from_string
    if m is None or [space.op_index(g) for g in m.groups()] != (np.arange(space.num_edges) % space.num_ops).tolist():
        return None
    return pattern


def _parse_archs(space, uniq: np.ndarray, codes: np.ndarray, where: str, line) -> np.ndarray:
    """Encodings ``[len(uniq), num_edges]`` of unique architecture strings (vectorised)."""
    first_row = np.full(len(uniq), -1)
    first_row[codes[::-1]] = np.arange(len(codes))[::-1]

    def fail(u: int, err: Exception):
        return ValueError(f"{where}: line {line(first_row[u])}, column 'arch': {err}")

    pattern = _arch_pattern(space)
    if pattern is None:
        out = np.empty((len(uniq), space.num_edges), np.int32)
        for u, s in enumerate(uniq):
            try:
                out[u] = space.from_string(s)
            except ValueError as e:
                raise fail(u, e) from None
        return out
    matches = [pattern.fullmatch(u) for u in uniq]
    for u, m in enumerate(matches):
        if m is None:
            try:
                space.from_string(uniq[u])
            except ValueError as e:
                raise fail(u, e) from None
            raise fail(u, ValueError(f"malformed {space.name} string {uniq[u]!r}"))
    op_codes, names = pd.factorize(np.array([g for m in matches for g in m.groups()], dtype=object))
    op_codes = op_codes.reshape(len(uniq), space.num_edges)
    index = np.empty(len(names), np.int32)
    for k, op in enumerate(names):
        try:
            index[k] = space.op_index(str(op))
        except ValueError as e:
            u = int(np.flatnonzero((op_codes == k).any(axis=1))[0])
            raise fail(u, e) from None
    return index[op_codes]


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
