"""TFDS builders for the bundled datasets: written as ``array_record``, read with ``tfds.data_source``.

Nothing here needs TensorFlow: images are stored as ``uint8`` ``Tensor`` features (the
``Image`` feature needs TensorFlow to encode numpy arrays), the ``DatasetInfo`` is built
directly (the registry path fails for builders outside a TFDS package), and the builders
skip TFDS's registry so that names like ``fashion_mnist`` never meet the catalog's:
on disk a dataset is ``<data_dir>/nax_<name>/<version>/``.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import pathlib
import shutil
from collections.abc import Iterator

import numpy as np

from nax.data import sources, splits

DATASET_VERSION = "1.0.0"
#: fixed seed of the train/validation/test cut, part of the dataset's definition
SPLIT_SEED = 2019
SPLITS = ("train", "validation", "test")


def _tfds():
    import tensorflow_datasets as tfds

    return tfds


def tfds_name(name: str) -> str:
    """The TFDS dataset name of a bundled dataset (``digits`` -> ``nax_digits``)."""
    return f"nax_{name}"


def version_dir(name: str, root: pathlib.Path) -> pathlib.Path:
    """Directory of the prepared dataset (it holds ``dataset_info.json``)."""
    return root / tfds_name(name) / DATASET_VERSION


def split_arrays(name: str, raw: dict[str, sources.RawArrays], sizes: dict[str, int]) -> dict[str, tuple]:
    """Cut the raw source into the fixed splits: ``{split: (images, labels, source_index)}``.

    ``source_index`` is the position of each example in its source file (the official
    training file for ``train``/``validation`` where a test file exists).
    """
    if "test" in raw:
        x, y = raw["train"]
        val, train = splits.stratified_split(y, [sizes["validation"], sizes["train"]], SPLIT_SEED)
        xt, yt = raw["test"]
        parts = {"train": (x, y, train), "validation": (x, y, val), "test": (xt, yt, np.arange(len(yt)))}
    else:
        x, y = raw["all"]
        test, val, train = splits.stratified_split(y, [sizes["test"], sizes["validation"], sizes["train"]], SPLIT_SEED)
        parts = {"train": (x, y, train), "validation": (x, y, val), "test": (x, y, test)}
    out = {}
    for split, (xs, ys, idx) in parts.items():
        if len(idx) != sizes[split]:
            raise ValueError(f"{name}: source gives {len(idx)} {split} examples, expected {sizes[split]}")
        out[split] = (xs[idx], ys[idx], idx)
    return out


def _builder_class(name: str, image_shape: tuple[int, int, int], num_classes: int, description: str):
    tfds = _tfds()

    class Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version(DATASET_VERSION)
        RELEASE_NOTES = {DATASET_VERSION: "Fixed stratified train/validation/test splits."}

        def __init__(self, *, parts: dict | None = None, **kwargs):
            self._parts = parts
            super().__init__(**kwargs)

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                description=description,
                features=tfds.features.FeaturesDict(
                    {
                        "image": tfds.features.Tensor(
                            shape=image_shape, dtype=np.uint8, encoding=tfds.features.Encoding.BYTES
                        ),
                        "label": tfds.features.ClassLabel(num_classes=num_classes),
                        "source_index": tfds.features.Scalar(dtype=np.int64),
                    }
                ),
                supervised_keys=("image", "label"),
                # keep the stored order: split order is part of the dataset's definition
                disable_shuffling=True,
                metadata=tfds.core.MetadataDict(),
            )

        def _split_generators(self, dl_manager):
            x = self._parts["train"][0].astype(np.float64)
            # per-channel train statistics, for normalising every split alike
            self.info.metadata["pixel_mean"] = x.mean(axis=(0, 1, 2)).tolist()
            self.info.metadata["pixel_std"] = x.std(axis=(0, 1, 2)).tolist()
            return {s: self._generate_examples(*self._parts[s]) for s in SPLITS}

        def _generate_examples(self, images, labels, index) -> Iterator:
            for i in range(len(labels)):
                yield i, {"image": images[i], "label": int(labels[i]), "source_index": int(index[i])}

    Builder.name = tfds_name(name)
    Builder.__name__ = Builder.__qualname__ = f"Nax{''.join(p.title() for p in name.split('_'))}"
    return Builder


@contextlib.contextmanager
def _lock(root: pathlib.Path, name: str):
    # two processes preparing one dataset (pytest-xdist, parallel jobs) must not race
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{tfds_name(name)}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def _quiet_tfds():
    from tensorflow_datasets.core.utils import tqdm_utils

    was = getattr(tqdm_utils, "_active", True)
    tqdm_utils.disable_progress_bar()
    try:
        # TFDS prints "Downloading and preparing..." to stdout; nax reports for itself
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        if was:
            tqdm_utils.enable_progress_bar()


def build(
    name: str,
    root: pathlib.Path,
    *,
    image_shape: tuple[int, int, int],
    num_classes: int,
    sizes: dict[str, int],
    description: str,
    force: bool = False,
) -> pathlib.Path:
    """Write ``nax_<name>`` under ``root`` unless already there; returns its version dir."""
    tfds = _tfds()
    vdir = version_dir(name, root)
    with _lock(root, name):
        if not force and (vdir / "dataset_info.json").is_file():
            return vdir
        if not force and vdir.exists():
            raise corrupt(name, vdir, "it exists but holds no dataset_info.json (an interrupted build?)")
        # read the source before deleting anything: a missing source must not cost a good copy
        parts = split_arrays(name, sources.read_source(name, root), sizes)
        if vdir.exists():
            shutil.rmtree(vdir)
        cls = _builder_class(name, image_shape, num_classes, description)
        builder = cls(parts=parts, data_dir=str(root), file_format="array_record")
        with _quiet_tfds():
            builder.download_and_prepare(
                download_dir=str(root / "downloads"),
                download_config=tfds.download.DownloadConfig(try_download_gcs=False),
            )
    return vdir


def corrupt(name: str, vdir: pathlib.Path, what: str) -> ValueError:
    """The error for a prepared dataset that cannot be read."""
    return ValueError(
        f"prepared dataset {name!r} at {vdir} is corrupt: {what}; rebuild it with "
        f"`nax data prepare {name} --force` (or delete {vdir})"
    )


def check(name: str, vdir: pathlib.Path, *, image_shape: tuple[int, int, int], sizes: dict[str, int]) -> dict:
    """Validate a prepared dataset's metadata and files; returns its metadata dict."""
    tfds = _tfds()
    info_file = vdir / "dataset_info.json"
    if not vdir.is_dir() or not any(vdir.iterdir()):
        raise corrupt(name, vdir, "the directory is empty")
    if not info_file.is_file():
        raise corrupt(name, vdir, "dataset_info.json is missing")
    try:
        json.loads(info_file.read_text())
        info = tfds.builder_from_directory(str(vdir)).info
    except Exception as e:  # any parse failure of TFDS's own files means the same to a user
        raise corrupt(name, vdir, f"dataset_info.json cannot be read ({type(e).__name__}: {e})") from None
    for split in SPLITS:
        if split not in info.splits:
            raise corrupt(name, vdir, f"split {split!r} is missing")
        n = info.splits[split].num_examples
        if n != sizes[split]:
            raise corrupt(name, vdir, f"split {split!r} has {n} examples, expected {sizes[split]}")
        for f in info.splits[split].filepaths:
            if not pathlib.Path(str(f)).is_file():
                raise corrupt(name, vdir, f"file {pathlib.Path(str(f)).name} is missing")
    shape = tuple(info.features["image"].shape)
    if shape != tuple(image_shape):
        raise corrupt(name, vdir, f"images have shape {shape}, expected {tuple(image_shape)}")
    meta = dict(info.metadata or {})
    if "pixel_mean" not in meta or "pixel_std" not in meta:
        raise corrupt(name, vdir, "metadata.json lacks pixel_mean/pixel_std")
    return meta


def read_split(name: str, root: pathlib.Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read a whole prepared split through ``tfds.data_source``: (images, labels, source_index)."""
    tfds = _tfds()
    try:
        src = tfds.data_source(tfds_name(name), split=split, data_dir=str(root), download=False)
        records = src.__getitems__(list(range(len(src))))
    except Exception as e:  # array_record raises RuntimeError on damaged files
        raise corrupt(
            name, version_dir(name, root), f"reading split {split!r} failed ({type(e).__name__}: {e})"
        ) from None
    images = np.stack([r["image"] for r in records]) if records else np.zeros((0,), np.uint8)
    labels = np.fromiter((r["label"] for r in records), np.int32, len(records))
    index = np.fromiter((r["source_index"] for r in records), np.int64, len(records))
    return images, labels, index
