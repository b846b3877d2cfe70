"""The one CSV reader of the tables layer, and the cell parsing both table kinds share.

``read_csv`` returns the header (stripped, unique), the data as a pandas frame with pandas'
typed columns, and the 1-based line of every data row, so that every later error can name
a file, a line and a column. Ragged rows are refused before pandas sees the file: pandas
would pad a short row with NaN and turn the first field of a long one into an index.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

#: spellings of a missing value in a value column (compared lower-case, stripped)
MISSING = ("", "nan", "na", "n/a", "null", "none")
LINES_SHOWN = 5
# pandas < 3 parses floats with a fast parser that can be off by one ulp; 3.x is exact by default
# and deprecates the option
_EXACT_FLOATS = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}


class TableWarning(UserWarning):
    """Rows of a table were skipped; the message counts them and names their lines."""


def read_csv(
    path: str | os.PathLike, *, kind: str, expected: str, text_columns: Iterable[str] = ()
) -> tuple[list[str], pd.DataFrame, np.ndarray]:
    """Header names, data frame and line numbers of a CSV table.

    Args:
      path: the file.
      kind: "curve" or "architecture", for the messages.
      expected: what the header should hold, for the empty-file message.
      text_columns: columns kept as text whatever they look like (names, datasets).

    Returns:
      ``(names, frame, lines)``: header names stripped of whitespace, the rows (blank lines
      skipped) with pandas' column types, and ``lines[i]``, the line where row ``i`` starts.

    Raises:
      FileNotFoundError: no such file.
      ValueError: an empty file, a header naming a column twice, or a ragged row.
    """
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise FileNotFoundError(f"{kind} table {where} not found")
    data = path.read_bytes()
    lines = data_row_lines(data, where)
    if lines is None:
        raise ValueError(f"{where}: empty file; expected a header {expected}")
    names = [h.strip() for h in _header(data)]
    if not any(names):
        raise ValueError(f"{where}: empty file; expected a header {expected}")
    check_unique_names(names, where)
    text = {c: object for c in text_columns if c in names}
    frame = pd.read_csv(
        io.BytesIO(data),
        header=0,
        names=names,
        dtype=text,
        encoding="utf-8-sig",
        index_col=False,
        low_memory=False,
        **_EXACT_FLOATS,
    )
    if len(lines) != len(frame):  # a layout our line count reads differently: approximate lines
        lines = np.arange(len(frame)) + 2
    return names, frame, lines


def _header(data: bytes) -> list[str]:
    first = data.split(b"\n", 1)[0]
    if b'"' not in first:
        return first.decode("utf-8-sig").rstrip("\r").split(",")
    return next(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def data_row_lines(data: bytes, where: str) -> np.ndarray | None:
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
            f"every row needs one field per header column, empty cells for missing values ({bad.size} such rows)"
        )
    return lines[1:]


def check_unique_names(names: list[str], where: str) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ValueError(f"{where}: column {n!r} appears twice in the header; column names must be unique")
        seen.add(n)


def numeric_column(col: pd.Series, describe) -> np.ndarray:
    """A pandas column as float64, NaN for a missing value (``MISSING``).

    ``describe(i, cell)`` gives the message of the ValueError raised for the first text cell.
    """
    if col.dtype.kind in "iufb":
        return col.to_numpy(np.float64)
    num = pd.to_numeric(col, errors="coerce").to_numpy(np.float64)
    text = col.astype(str).str.strip().str.lower()
    bad = np.isnan(num) & col.notna().to_numpy() & ~text.isin(MISSING).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(describe(i, str(col.iloc[i])))
    return num


def text_column(col: pd.Series) -> np.ndarray:
    """A text column as str, stripped, ``""`` for an empty cell."""
    return col.fillna("").astype(str).str.strip().to_numpy(dtype=str)


def meta_column(col: pd.Series) -> np.ndarray:
    """A metadata column as pandas typed it: int64, float64 (NaN for empty cells), bool, or str."""
    if col.dtype.kind in "iufb":
        return col.to_numpy()
    return col.fillna("").astype(str).to_numpy(dtype=str)


def meta_arrays(meta: dict, n: int, what: str) -> dict[str, np.ndarray]:
    """Per-row columns as arrays of shape ``(n,)``, or a ValueError naming the wrong one."""
    out = {str(k): np.asarray(v) for k, v in meta.items()}
    for k, v in out.items():
        if v.shape != (n,):
            raise ValueError(f"{what} meta column {k!r} must have shape ({n},), got {v.shape}")
    return out


def concat_column(parts: list[np.ndarray | None], sizes: list[int]) -> np.ndarray:
    """Stack per-row columns; a missing part (None) becomes NaN (numeric) or ``""`` (text)."""
    present = [p for p in parts if p is not None]
    numeric = all(p.dtype.kind in "iufb" for p in present)
    if len(present) == len(parts):
        return np.concatenate(present) if numeric else np.concatenate([p.astype(str) for p in present])
    filled = [
        (p if numeric else p.astype(str)) if p is not None else (np.full(n, np.nan) if numeric else np.full(n, ""))
        for p, n in zip(parts, sizes, strict=True)
    ]
    return np.concatenate([f.astype(np.float64) for f in filled]) if numeric else np.concatenate(filled)


def format_float(x: float) -> str:
    return repr(float(x))


def format_column(v: np.ndarray) -> list[str]:
    if v.dtype.kind == "f":
        return ["" if np.isnan(x) else format_float(x) for x in v]
    if v.dtype.kind in "iu":
        return [str(int(x)) for x in v]
    if v.dtype.kind == "b":
        return ["True" if x else "False" for x in v]
    return [str(x) for x in v]


def array_equal(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype.kind != b.dtype.kind:
        return False
    return np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


def some(lines: Iterable) -> str:
    """The first few line numbers, and how many there are in all."""
    lines = [int(x) for x in lines]
    shown = ", ".join(map(str, lines[:LINES_SHOWN]))
    return shown + (f", ... ({len(lines)} in all)" if len(lines) > LINES_SHOWN else "")
