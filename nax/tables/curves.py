"""Curve tables: one row per training run, per-epoch values in columns ``<prefix><epoch>``.

In memory a :class:`CurveTable`: a dense ``float64`` array ``[runs, epochs]`` with ``NaN``
where a run has no value, a boolean mask, the epoch number of every column and per-run
metadata (the other columns).

Missing values (empty, ``nan``, ``NA``, ``null``) may only end a row: a stopped run. A row
with a missing value *followed* by an observed one, or a row with no value at all, cannot
be a curve; it is skipped and counted in one :class:`TableWarning` (``on_bad_rows="error"``
raises instead). Everything else that is wrong (no value columns, ragged rows, text or
infinities in value columns, the same epoch twice, accuracies outside [0, 1] without
``minimize``) is a ValueError naming the file, the line and column, and what is accepted.
Values are kept as they are in the file; without ``minimize`` they must be fractions in [0, 1].
"""

from __future__ import annotations

import csv
import dataclasses
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from nax.tables import csvio
from nax.tables.csvio import TableWarning

__all__ = ["CurveTable", "concat", "load_curves", "save_curves"]


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
        meta = csvio.meta_arrays(self.meta, n, "CurveTable")
        if np.any(np.isinf(values)):
            raise ValueError("CurveTable values must be finite or NaN (missing)")
        bad = _bad_rows(mask)
        if bad["empty"].any() or bad["gap"].any():
            raise ValueError(
                "every run needs at least one value and missing values only at the end of a row; "
                f"runs {np.flatnonzero(bad['empty'] | bad['gap'])[: csvio.LINES_SHOWN].tolist()} break this"
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
        cls, values, datasets, *, epochs=None, meta: dict | None = None, minimize: bool = False, source: str = ""
    ) -> CurveTable:
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

    def subset(self, sel) -> CurveTable:
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

    def trimmed(self) -> CurveTable:
        """The same runs without the epoch columns that no run observed (padding)."""
        keep = self.mask.any(axis=0)
        return dataclasses.replace(self, values=self.values[:, keep], mask=self.mask[:, keep], epochs=self.epochs[keep])

    def by_dataset(self) -> dict[str, CurveTable]:
        """One trimmed table per dataset, in sorted order of names."""
        return {str(d): self.subset(self.datasets == d).trimmed() for d in self.dataset_names}

    def equals(self, other: CurveTable) -> bool:
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
            and all(csvio.array_equal(self.meta[k], other.meta[k]) for k in self.meta)
        )

    @classmethod
    def concat(cls, tables: Sequence[CurveTable]) -> CurveTable:
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
        meta = {k: csvio.concat_column([t.meta.get(k) for t in tables], [t.n_runs for t in tables]) for k in keys}
        sources = list(dict.fromkeys(t.source for t in tables if t.source))
        datasets = np.concatenate([t.datasets for t in tables])
        return cls(values, ~np.isnan(values), epochs, datasets, meta, tables[0].minimize, ";".join(sources))


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
    text_cols = [dataset_column] if dataset_column is not None else []
    names, frame, lines = csvio.read_csv(
        path, kind="curve", expected=f"with metadata and '{prefix}<epoch>' columns", text_columns=text_cols
    )
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
    if len(frame) == 0:
        raise ValueError(f"{where}: no data rows below the header")
    epochs = np.array(sorted(epoch_of), np.int64)
    value_cols = [epoch_of[e] for e in epochs]

    def column(j: int) -> np.ndarray:
        return csvio.numeric_column(
            frame.iloc[:, j],
            lambda i, cell: (
                f"{where}: line {lines[i]}, column {names[j]!r}: {cell!r} is not a number; "
                f"value columns take numbers, or an empty cell / NaN for a missing value"
            ),
        )

    values = np.stack([column(j) for j in value_cols], axis=1)
    if np.isinf(values).any():
        i, k = np.argwhere(np.isinf(values))[0]
        raise ValueError(
            f"{where}: line {lines[i]}, column {names[value_cols[k]]!r}: {str(frame.iloc[i, value_cols[k]])!r} is "
            f"not finite; value columns take finite numbers, or an empty cell / NaN for a missing value"
        )
    missing = np.isnan(values)

    bad = _bad_rows(~missing)
    drop = bad["empty"] | bad["gap"]
    if drop.all():
        raise ValueError(
            f"{where}: none of the {len(frame)} rows is a curve: {int(bad['empty'].sum())} have no value, "
            f"{int(bad['gap'].sum())} a missing value before an observed one (missing values may only end a row)"
        )
    if drop.any():
        msg = (
            f"{where}: skipped {int(drop.sum())} of {len(frame)} rows: {int(bad['empty'].sum())} with no value, "
            f"{int(bad['gap'].sum())} with a missing value before an observed one "
            f"(missing values may only end a row); lines {csvio.some(np.asarray(lines)[drop])}"
        )
        if on_bad_rows == "error":
            raise ValueError(msg.replace("skipped", "found bad", 1))
        warnings.warn(msg, TableWarning, stacklevel=2)
    keep = ~drop
    values = values[keep]
    kept_lines = np.asarray(lines)[keep]

    if not minimize:
        _check_fraction(values, where, (kept_lines, epochs, prefix))

    kept = frame[keep]
    if dataset_column is not None and dataset_column in names:
        datasets = csvio.text_column(kept[dataset_column])
        if (datasets == "").any():
            raise ValueError(
                f"{where}: line {kept_lines[np.flatnonzero(datasets == '')[0]]}: empty "
                f"{dataset_column!r}; every run needs a dataset name"
            )
    else:
        datasets = np.full(len(kept), path.stem)

    skip = set(value_cols) | {j for j, n in enumerate(names) if _epoch_of(n, prefix) is not None}
    if dataset_column is not None and dataset_column in names:
        skip.add(names.index(dataset_column))
    meta = {names[j]: csvio.meta_column(kept.iloc[:, j]) for j in range(len(names)) if j not in skip}
    return CurveTable(values, ~np.isnan(values), epochs, datasets, meta, minimize, where)


def save_curves(
    ct: CurveTable, path: str | os.PathLike, *, prefix: str = "acc_", dataset_column: str = "training_dataset"
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
    meta_text = [csvio.format_column(v) for v in ct.meta.values()]
    value_text = np.where(ct.mask, np.vectorize(csvio.format_float, otypes=[object])(ct.values), "")
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        for i in range(ct.n_runs):
            w.writerow([ct.datasets[i], *(m[i] for m in meta_text), *value_text[i]])


def _epoch_of(name: str, prefix: str) -> int | None:
    rest = name[len(prefix) :] if name.startswith(prefix) else None
    if rest and rest.isascii() and rest.isdigit():
        return int(rest)
    return None


def _bad_rows(mask: np.ndarray) -> dict[str, np.ndarray]:
    """Rows with no observed value, and rows with a missing value before an observed one."""
    n_obs = mask.sum(axis=1)
    # a valid row is observed exactly on its first n_obs columns
    prefix = np.arange(mask.shape[1]) < n_obs[:, None]
    empty = n_obs == 0
    return {"empty": empty, "gap": ~empty & (mask != prefix).any(axis=1)}


def _check_fraction(values: np.ndarray, where: str, located=None) -> None:
    """Refuse accuracies outside [0, 1]; ``located = (row lines, epochs, prefix)`` names the first."""
    outside = ~np.isnan(values) & ((values < 0) | (values > 1))
    if not outside.any():
        return
    i, k = np.argwhere(outside)[0]
    at = (
        f", first at line {located[0][i]}, column {located[2]}{located[1][k]}: {float(values[i, k])!r}"
        if located
        else ""
    )
    pct = np.nanmax(values) <= 100 and np.nanmin(values) >= 0
    raise ValueError(
        f"{where}: {int(outside.sum())} values outside [0, 1]{at}. Accuracies must be fractions in [0, 1]; "
        f"for losses or perplexities pass --minimize (minimize=True)."
        + (" They look like percentages: divide them by 100." if pct else "")
    )


def _span(epochs: np.ndarray) -> str:
    e = epochs.tolist()
    contiguous = e == list(range(e[0], e[-1] + 1)) if e else True
    return f"{e[0]}..{e[-1]}" if contiguous and len(e) > 2 else str(e)
