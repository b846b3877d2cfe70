"""In-memory splits and the seeded batch iterator."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator

import numpy as np

from nax.data import splits


@dataclasses.dataclass(frozen=True, eq=False)
class Arrays:
    """One split of a dataset in memory (read-only arrays).

    ``images_NHWC``: ``uint8`` ``(N, H, W, C)``, 0..255, black background.
    ``labels``: ``int32`` ``(N,)`` in ``[0, num_classes)``.
    ``source_index``: ``int64`` ``(N,)``, each example's position in its source file.
    ``mean``/``std``: per-channel pixel statistics (0..255 scale) of the *train* split,
    used to normalise every split alike.
    """

    images_NHWC: np.ndarray
    labels: np.ndarray
    num_classes: int
    source_index: np.ndarray
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str = ""
    split: str = ""

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, limit: int, seed: int) -> Arrays:
        """A stratified, seeded subset of ``limit`` examples (kept in stored order)."""
        if limit <= 0:
            raise ValueError(f"limit must be a positive number of examples, got {limit}")
        if limit >= len(self):
            return self
        (idx,) = splits.stratified_split(self.labels, [limit], seed)
        return dataclasses.replace(
            self,
            images_NHWC=_readonly(self.images_NHWC[idx]),
            labels=_readonly(self.labels[idx]),
            source_index=_readonly(self.source_index[idx]),
        )


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@functools.lru_cache(maxsize=32)
def _resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` weights of 1-D linear resizing with antialiasing (jax.image.resize)."""
    import jax

    eye = np.eye(n_in, dtype=np.float32)
    # resizing is linear and separable: resizing the identity along one axis gives its matrix
    return np.asarray(jax.image.resize(eye, (n_out, n_in), method="linear", antialias=True))


def _fit_mode(src_hw: tuple[int, int], image_size: tuple[int, int] | None, fit: str) -> str:
    if fit not in ("auto", "pad", "resize"):
        raise ValueError(f"fit must be 'auto', 'pad' or 'resize', got {fit!r}")
    if image_size is None or tuple(image_size) == tuple(src_hw):
        return "none"
    fits = image_size[0] >= src_hw[0] and image_size[1] >= src_hw[1]
    if fit == "pad" and not fits:
        raise ValueError(f"cannot pad {src_hw[0]}x{src_hw[1]} images to the smaller {image_size[0]}x{image_size[1]}")
    if fit == "auto":
        return "pad" if fits else "resize"
    return fit


def batches(
    arrays: Arrays,
    batch_size: int,
    *,
    seed: int,
    epoch: int = 0,
    shuffle: bool = True,
    image_size: tuple[int, int] | None = None,
    drop_remainder: bool = True,
    fit: str = "auto",
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(images float32 (B, H, W, C), labels int32 (B,))`` over one epoch of ``arrays``.

    Images are normalised with the train split's per-channel mean and std (so a split
    has mean ~0 and std ~1). The order is a pure function of ``(seed, epoch)``
    (``shuffle=False``: stored order). ``image_size=(H, W)`` brings images to a common
    size: with ``fit="auto"`` (default) an image no larger than the target is
    zero-padded, centred (padding is black background, the value 0 before
    normalisation), and any other is resized (bilinear, antialiased);
    ``fit="pad"``/``"resize"`` force one. ``drop_remainder=False`` yields a last,
    smaller batch.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    n = len(arrays)
    _, h, w, _ = arrays.images_NHWC.shape
    mode = _fit_mode((h, w), image_size, fit)
    mean = np.asarray(arrays.mean, np.float32)
    inv_std = 1.0 / np.maximum(np.asarray(arrays.std, np.float32), 1e-6)
    order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_remainder else n
    if mode == "resize":
        rows, cols = _resize_matrix(h, image_size[0]), _resize_matrix(w, image_size[1])
    if mode == "pad":
        top, left = (image_size[0] - h) // 2, (image_size[1] - w) // 2
    for start in range(0, stop, batch_size):
        idx = order[start : start + batch_size]
        x = arrays.images_NHWC[idx].astype(np.float32)
        if mode == "resize":
            # two batched matmuls; an einsum over all four axes is ~50x slower
            x = np.ascontiguousarray((rows @ x.transpose(0, 3, 1, 2) @ cols.T).transpose(0, 2, 3, 1))
        x -= mean
        x *= inv_std
        if mode == "pad":
            out = np.broadcast_to(-mean * inv_std, (len(idx), *image_size, x.shape[-1])).copy()
            out[:, top : top + h, left : left + w] = x
            x = out
        yield x, arrays.labels[idx]
