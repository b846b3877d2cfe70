"""Stratified, seeded splits of a labelled set into parts of exact sizes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def stratified_split(labels: np.ndarray, sizes: Sequence[int], seed: int) -> list[np.ndarray]:
    """Split ``range(len(labels))`` into parts of exactly ``sizes`` with class proportions kept.

    Each part gets, per class, its proportional share of what is left of that class
    (largest remainder, ties to the lower class id), so every part's class histogram is
    within one example of proportional. ``sum(sizes)`` must not exceed ``len(labels)``;
    leftover examples go to no part. Returns sorted ``int64`` index arrays, one per part;
    the result is a pure function of ``(labels, sizes, seed)``.
    """
    labels = np.asarray(labels)
    n = len(labels)
    sizes = [int(s) for s in sizes]
    if any(s < 0 for s in sizes) or sum(sizes) > n:
        raise ValueError(f"split sizes {sizes} do not fit {n} examples")
    classes, y = np.unique(labels, return_inverse=True)
    rng = np.random.default_rng(seed)
    pools = [rng.permutation(np.flatnonzero(y == c)) for c in range(len(classes))]
    left = np.array([len(p) for p in pools])
    taken = np.zeros(len(classes), np.int64)
    parts = []
    for size in sizes:
        total = left.sum()
        quota = left * size / total if total else np.zeros(len(classes))
        counts = np.floor(quota).astype(np.int64)
        # hand the remainder to the classes with the largest fractional parts
        order = np.lexsort((np.arange(len(classes)), -(quota - counts)))
        counts[order[: size - counts.sum()]] += 1
        parts.append(np.sort(np.concatenate([p[t : t + k] for p, t, k in zip(pools, taken, counts)]).astype(np.int64)))
        taken += counts
        left -= counts
    return parts
