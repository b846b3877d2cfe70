"""The padded shapes the curve programs are compiled for: rows, epoch columns and batch
sizes rounded up to a few buckets, so that calls of different sizes share one compiled
program (:func:`nax.curves.predict.predict_many`, :mod:`nax.curves.strength`)."""

from __future__ import annotations

import numpy as np


def row_bucket(n: int) -> int:
    """Smallest of 8, 16, 32, ... or the next multiple of 256 that holds ``n`` rows."""
    if n > 256:
        return -(-n // 256) * 256
    return max(8, 1 << (n - 1).bit_length())


def batch_bucket(n: int) -> int:
    """Batch sizes that share a program: 1, 2, 4, 8, then multiples of 8."""
    return 1 << (n - 1).bit_length() if n <= 8 else -(-n // 8) * 8


def seen_width(mask) -> int:
    """Columns up to the last one observed in any row: the later ones carry no likelihood."""
    seen = np.nonzero(np.asarray(mask, bool).reshape(-1, np.shape(mask)[-1]).any(axis=0))[0]
    return int(seen[-1]) + 1 if len(seen) else 1


def fit_width(queries) -> int:
    """The padded epoch width :func:`predict_many` fits ``queries`` on (their context
    included): a caller that makes several calls on cut copies of the same queries passes
    it as ``width`` so that every call has one shape."""
    seen = 1
    for q in queries:
        mask = np.isfinite(np.asarray(q.values, np.float64)) if q.mask is None else q.mask
        seen = max(seen, seen_width(mask))
        if q.context is not None and np.size(q.context):
            seen = max(seen, seen_width(np.isfinite(np.asarray(q.context, np.float64))))
        if q.finished is not None and np.ndim(q.finished) == 2:
            # a strength choice on finished runs fits them to their horizon (nax.curves.strength)
            seen = max(seen, np.shape(q.finished)[1])
    return row_bucket(seen)


def pad(arrays, rows: int, width: int):
    y, m, t = (a[:, :width] for a in arrays)
    r, w = rows - y.shape[0], width - y.shape[1]
    return np.pad(y, ((0, r), (0, w))), np.pad(m, ((0, r), (0, w))), np.pad(t, ((0, r), (0, w)), constant_values=1.0)


__all__ = ["batch_bucket", "fit_width", "pad", "row_bucket", "seen_width"]
