"""Bundled datasets: real sources, real TFDS builders, temporary data dirs."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess

import numpy as np
import pytest

from nax import cli, data
from nax.data import builder, sources

SMALL = ("digits", "mnist5k", "animal_mnist")  # sources installed with nax, or fetched by pip without dependencies


def _default_sources_root() -> pathlib.Path:
    return sources.data_dir(None)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> pathlib.Path:
    """A data dir with the small datasets prepared (and opencv_digits when its source exists)."""
    r = tmp_path_factory.mktemp("nax_data")
    for name in ("opencv_digits", "animal_mnist"):  # sources fetched into the default data dir
        found = sources.source_files(name, _default_sources_root())
        if found and not sources.source_files(name, r):
            (r / "sources" / name).mkdir(parents=True)
            for f in found:
                shutil.copy(f, r / "sources" / name / f.name)
    for name in SMALL:
        if data.source_available(name, r):  # animal_mnist: after `nax data prepare animal_mnist --fetch`
            data.prepare(name, r)
    return r


def _needs_source(name: str, root: pathlib.Path) -> None:
    if not data.source_available(name, root):
        pytest.skip(f"source of {name} absent; install with: {data.info(name).install}")


def _check_roundtrip(name: str, root: pathlib.Path) -> None:
    ds = data.info(name)
    raw = sources.read_source(name, root)
    seen: dict[str, list[np.ndarray]] = {}
    for split in data.SPLITS:
        a = data.load(name, split, data_dir=root)
        assert len(a) == ds.split_sizes[split]
        assert a.images_NHWC.shape == (len(a), *ds.image_shape) and a.images_NHWC.dtype == np.uint8
        assert a.labels.dtype == np.int32 and a.labels.min() >= 0 and a.labels.max() < ds.num_classes
        # what is read back is exactly the source example it came from
        x, y = raw["test"] if split == "test" and "test" in raw else raw.get("train", raw.get("all"))
        np.testing.assert_array_equal(a.images_NHWC, x[a.source_index])
        np.testing.assert_array_equal(a.labels, y[a.source_index])
        seen.setdefault("test" if split == "test" and "test" in raw else "pool", []).append(a.source_index)
        # stratified: each class within one example of its proportional share
        counts = np.bincount(a.labels, minlength=ds.num_classes)
        expected = np.bincount(y, minlength=ds.num_classes) * len(a) / len(y)
        if split != "test" or "test" not in raw:
            assert np.all(np.abs(counts - expected) <= 1), (split, counts, expected)
    pool = np.concatenate(seen["pool"])
    assert len(np.unique(pool)) == len(pool), "splits overlap"
    if "all" in raw:
        assert len(pool) == len(raw["all"][1])
    train = data.load(name, "train", data_dir=root)
    x = train.images_NHWC.astype(np.float64)
    np.testing.assert_allclose(train.mean, x.mean(axis=(0, 1, 2)), rtol=1e-9)
    np.testing.assert_allclose(train.std, x.std(axis=(0, 1, 2)), rtol=1e-9)


# ------------------------------------------------------------------ contents
def test_info_describes_every_dataset():
    assert data.NAMES == ("digits", "mnist5k", "animal_mnist", "fashion_mnist", "opencv_digits")
    for name in data.NAMES:
        ds = data.info(name)
        assert ds.name == name and ds.num_classes == 10 and ds.image_shape[-1] == 1
        assert set(ds.split_sizes) == set(data.SPLITS) and ds.install
    assert sum(data.info("digits").split_sizes.values()) == 1797
    assert sum(data.info("fashion_mnist").split_sizes.values()) == 70000


@pytest.mark.parametrize("name", SMALL + ("opencv_digits",))
def test_prepared_dataset_round_trips_to_its_source(name, root):
    _needs_source(name, root)
    _check_roundtrip(name, root)


def test_opencv_digits_grid_labels(root):
    _needs_source("opencv_digits", root)
    raw = sources.read_source("opencv_digits", root)["all"]
    assert raw[0].shape == (5000, 20, 20, 1)
    np.testing.assert_array_equal(np.bincount(raw[1]), [500] * 10)


def test_fashion_mnist_source_and_splits():
    r = _default_sources_root()
    _needs_source("fashion_mnist", r)
    raw = sources.read_source("fashion_mnist", r)
    assert raw["train"][0].shape == (60000, 28, 28, 1) and raw["test"][0].shape == (10000, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(raw["train"][1]), [6000] * 10)
    parts = builder.split_arrays("fashion_mnist", raw, data.info("fashion_mnist").split_sizes)
    np.testing.assert_array_equal(np.bincount(parts["validation"][1]), [500] * 10)
    assert not set(parts["validation"][2]) & set(parts["train"][2])
    np.testing.assert_array_equal(parts["test"][0], raw["test"][0])


@pytest.mark.slow
def test_fashion_mnist_prepared_round_trip(tmp_path):
    _needs_source("fashion_mnist", tmp_path)
    _check_roundtrip("fashion_mnist", tmp_path)


def test_prepare_is_idempotent_and_splits_are_fixed(root, tmp_path):
    vdir = data.prepare("digits", root)
    stamp = (vdir / "dataset_info.json").stat().st_mtime_ns
    assert data.prepare("digits", root) == vdir
    assert (vdir / "dataset_info.json").stat().st_mtime_ns == stamp
    # a second, independent build makes the same splits
    other = data.load("digits", "validation", data_dir=tmp_path)
    np.testing.assert_array_equal(other.source_index, data.load("digits", "validation", data_dir=root).source_index)


def test_data_dir_from_environment(root, monkeypatch):
    monkeypatch.setenv("NAX_DATA_DIR", str(root))
    assert data.is_prepared("mnist5k")
    assert len(data.load("mnist5k", "test")) == 1000


# ------------------------------------------------------------------ limit and batches
def test_stratified_split_sizes_and_proportions():
    labels = np.repeat([2, 0, 1], [60, 30, 10])
    parts = data.stratified_split(labels, [50, 30, 20], seed=7)
    # classes 0, 1, 2 hold 30, 10, 60 examples: each part gets exactly its share
    assert [np.bincount(labels[p], minlength=3).tolist() for p in parts] == [[15, 5, 30], [9, 3, 18], [6, 2, 12]]
    assert len(np.unique(np.concatenate(parts))) == 100
    again = data.stratified_split(labels, [50, 30, 20], seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    with pytest.raises(ValueError, match="do not fit"):
        data.stratified_split(labels, [90, 20], seed=0)


def test_limit_is_a_stratified_seeded_subset(root):
    _needs_source("animal_mnist", root)
    full = data.load("animal_mnist", "train", data_dir=root)
    a = data.load("animal_mnist", "train", data_dir=root, limit=500, seed=3)
    b = data.load("animal_mnist", "train", data_dir=root, limit=500, seed=3)
    c = data.load("animal_mnist", "train", data_dir=root, limit=500, seed=4)
    assert len(a) == 500
    np.testing.assert_array_equal(np.bincount(a.labels, minlength=10), [50] * 10)
    np.testing.assert_array_equal(a.source_index, b.source_index)
    assert not np.array_equal(a.source_index, c.source_index)
    assert set(a.source_index) <= set(full.source_index)
    assert data.load("animal_mnist", "train", data_dir=root, limit=10**6) is full
    with pytest.raises(ValueError, match="limit"):
        data.load("animal_mnist", "train", data_dir=root, limit=0)


def test_batches_order_is_a_pure_function_of_seed_and_epoch(root):
    a = data.load("mnist5k", "validation", data_dir=root)

    def labels(**kw):
        return np.concatenate([y for _, y in data.batches(a, 64, **kw)])

    np.testing.assert_array_equal(labels(seed=1, epoch=2), labels(seed=1, epoch=2))
    assert not np.array_equal(labels(seed=1, epoch=2), labels(seed=1, epoch=3))
    assert not np.array_equal(labels(seed=1, epoch=2), labels(seed=2, epoch=2))
    assert len(labels(seed=0)) == 500 // 64 * 64
    # one epoch without dropping is a permutation of the split
    everything = labels(seed=0, drop_remainder=False)
    np.testing.assert_array_equal(np.sort(everything), np.sort(a.labels))
    np.testing.assert_array_equal(labels(seed=5, shuffle=False, drop_remainder=False), a.labels)


def test_batches_are_normalised_and_typed(root):
    a = data.load("mnist5k", "train", data_dir=root)
    xs, ys = zip(*data.batches(a, 500, seed=0))
    x = np.concatenate(xs)
    assert x.dtype == np.float32 and ys[0].dtype == np.int32 and x.shape == (3500, 28, 28, 1)
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-4


def test_padding_centres_images_on_background(root):
    a = data.load("mnist5k", "test", data_dir=root)
    (plain, _), (padded, _) = next(data.batches(a, 8, seed=0)), next(data.batches(a, 8, seed=0, image_size=(32, 32)))
    assert padded.shape == (8, 32, 32, 1)
    np.testing.assert_array_equal(padded[:, 2:30, 2:30], plain)
    background = -a.mean[0] / a.std[0]
    np.testing.assert_allclose(padded[:, :2], background, rtol=1e-6)
    np.testing.assert_allclose(padded[:, :, 30:], background, rtol=1e-6)


def test_resizing_keeps_constant_images_constant():
    level = 77.0
    const = np.full((4, 20, 20, 1), int(level), np.uint8)
    a = data.Arrays(const, np.zeros(4, np.int32), 10, np.arange(4), mean=(10.0,), std=(5.0,))
    for size in ((32, 32), (14, 14), (28, 16)):
        x, _ = next(data.batches(a, 4, seed=0, image_size=size, fit="resize"))
        assert x.shape == (4, *size, 1)
        np.testing.assert_allclose(x, (level - 10.0) / 5.0, rtol=1e-5)
    with pytest.raises(ValueError, match="cannot pad"):
        next(data.batches(a, 4, seed=0, image_size=(16, 16), fit="pad"))


# ------------------------------------------------------------------ bad input
def test_unknown_dataset_lists_accepted_names(root):
    for call in (lambda: data.info("cifar"), lambda: data.load("cifar", "train", data_dir=root)):
        with pytest.raises(ValueError, match="unknown dataset 'cifar'; accepted: digits, mnist5k"):
            call()


def test_bad_split_name(root):
    with pytest.raises(ValueError, match="unknown split 'valid'.*accepted: train, validation, test"):
        data.load("digits", "valid", data_dir=root)


def test_missing_source_names_the_install_command(tmp_path):
    if pathlib.Path(sources._OPENCV_DOC, "digits.png").is_file():
        pytest.skip("opencv-doc is installed system-wide, so the source cannot be missing")
    assert not data.source_available("opencv_digits", tmp_path)
    with pytest.raises(FileNotFoundError, match="nax data prepare opencv_digits --fetch"):
        data.load("opencv_digits", "train", data_dir=tmp_path)


def _damaged_copy(root: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
    shutil.copytree(root / "nax_digits", tmp_path / "nax_digits")
    return tmp_path / "nax_digits" / builder.DATASET_VERSION


@pytest.mark.parametrize(
    "damage, what",
    [
        (lambda v: [p.unlink() for p in v.iterdir()], "holds no dataset_info.json"),
        (lambda v: (v / "dataset_info.json").write_text("{not json"), "dataset_info.json cannot be read"),
        (lambda v: next(v.glob("*-train.array_record*")).unlink(), "is missing"),
        (lambda v: next(v.glob("*-test.array_record*")).write_bytes(b"\0" * 100), "reading split 'test' failed"),
        (lambda v: (v / "metadata.json").unlink(), "pixel_mean"),
    ],
    ids=["empty", "bad-info", "missing-file", "truncated-file", "no-metadata"],
)
def test_corrupt_data_dir_says_how_to_rebuild(root, tmp_path, damage, what):
    vdir = _damaged_copy(root, tmp_path)
    damage(vdir)
    with pytest.raises(ValueError, match=what) as e:
        data.load("digits", "test", data_dir=tmp_path)
    assert "nax data prepare digits --force" in str(e.value)
    data.prepare("digits", tmp_path, force=True)
    assert len(data.load("digits", "test", data_dir=tmp_path)) == 360


def test_data_dir_that_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(ValueError, match="not a directory"):
        data.load("digits", "train", data_dir=f)


# ------------------------------------------------------------------ fetching Debian sources
def test_fetch_extracts_the_file_from_a_deb(tmp_path):
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb not available (not a Debian-like system)")
    from PIL import Image

    # a synthetic opencv-doc package whose grid cell k holds the value k % 251
    pkg = tmp_path / "pkg"
    png = pkg / "usr/share/doc/opencv-doc/examples/data/digits.png"
    png.parent.mkdir(parents=True)
    cells = (np.arange(5000) % 251).astype(np.uint8).reshape(50, 100)
    Image.fromarray(np.kron(cells, np.ones((20, 20), np.uint8))).save(png)
    (pkg / "DEBIAN").mkdir()
    (pkg / "DEBIAN/control").write_text(
        "Package: opencv-doc\nVersion: 0.0-test\nArchitecture: all\nMaintainer: t <t@t>\nDescription: test\n"
    )
    subprocess.run(["dpkg-deb", "--build", str(pkg), str(tmp_path / "opencv-doc.deb")], check=True, capture_output=True)
    out = data.fetch_source("opencv_digits", tmp_path / "dd", file=tmp_path / "opencv-doc.deb")
    assert (out / "digits.png").is_file()
    x, y = sources.read_source("opencv_digits", tmp_path / "dd")["all"]
    np.testing.assert_array_equal(x[:, 7, 11, 0], np.arange(5000) % 251)
    np.testing.assert_array_equal(y, np.arange(5000) // 500)
    with pytest.raises(ValueError, match="not fetched by nax"):
        data.fetch_source("mnist5k", tmp_path / "dd")


# ------------------------------------------------------------------ fetching the animal_mnist wheel's data
def _wheel(path: pathlib.Path, members: dict[str, bytes]) -> pathlib.Path:
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("animal_mnist/__init__.py", "import tensorflow  # never imported by nax\n")
        for name, blob in members.items():
            z.writestr(name, blob)
    return path


def test_fetch_reads_the_real_animal_mnist_files_from_a_wheel(tmp_path):
    """The published data files, zipped as the wheel ships them, are extracted and read."""
    found = sources.source_files("animal_mnist", _default_sources_root())
    if found is None:
        pytest.skip("animal_mnist source absent; fetch it with: nax data prepare animal_mnist --fetch")
    members = sources.SOURCES["animal_mnist"].wheel.members
    whl = _wheel(tmp_path / "animal_mnist-0.4-py3-none-any.whl", {m: f.read_bytes() for m, f in zip(members, found)})
    out = data.fetch_source("animal_mnist", tmp_path / "dd", file=whl)
    assert sorted(p.name for p in out.iterdir()) == ["animal_data_version_3.gz", "animal_label_version_3.gz"]
    assert sources.source_files("animal_mnist", tmp_path / "dd")[0].parent == out  # the fetched copy is used
    x, y = sources.read_source("animal_mnist", tmp_path / "dd")["all"]
    assert x.shape == (10000, 28, 28, 1) and x.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(y), [1000] * 10)


def test_fetch_refuses_a_wheel_that_is_not_the_published_one(tmp_path):
    import gzip
    import pickle

    members = sources.SOURCES["animal_mnist"].wheel.members
    fake = {m: gzip.compress(pickle.dumps(np.zeros((10, 28, 28), np.uint8))) for m in members}
    with pytest.raises(ValueError, match="does not match the SHA-256 of animal-mnist==0.4"):
        data.fetch_source("animal_mnist", tmp_path / "dd", file=_wheel(tmp_path / "fake.whl", fake))
    with pytest.raises(FileNotFoundError, match="lacks animal_mnist/data/Animal_MNIST/animal_label_version_3.gz"):
        data.fetch_source("animal_mnist", tmp_path / "dd", file=_wheel(tmp_path / "half.whl", {members[0]: b""}))
    (tmp_path / "not.whl").write_text("plain text")
    with pytest.raises(FileNotFoundError, match="is not a wheel"):
        data.fetch_source("animal_mnist", tmp_path / "dd", file=tmp_path / "not.whl")
    assert not (tmp_path / "dd" / "sources" / "animal_mnist").exists() or not any(
        (tmp_path / "dd" / "sources" / "animal_mnist").iterdir()
    ), "a refused wheel left files behind"


def test_animal_mnist_reader_unpickles_arrays_only(tmp_path):
    import collections
    import gzip
    import pickle

    good, bad = tmp_path / "x.gz", tmp_path / "y.gz"
    good.write_bytes(gzip.compress(pickle.dumps(np.arange(6, dtype=np.int64))))
    bad.write_bytes(gzip.compress(pickle.dumps(collections.OrderedDict(a=1))))
    np.testing.assert_array_equal(sources._load_array(good), np.arange(6))
    with pytest.raises(pickle.UnpicklingError, match="only numpy arrays"):
        sources._load_array(bad)


# ------------------------------------------------------------------ command line
@pytest.fixture
def nax(monkeypatch):
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("nax.cli.data",))
    return cli.main


def test_cli_list_and_prepare(root, nax, capsys, tmp_path):
    assert nax(["data", "list", "--data-dir", str(root)]) == 0
    out = capsys.readouterr().out
    for name in data.NAMES:
        assert name in out
    assert "digits         present  yes       10       8x8x1    1,257   180    360" in out
    assert nax(["data", "prepare", "digits", "--data-dir", str(tmp_path)]) == 0
    assert "digits: prepared at" in capsys.readouterr().out
    assert nax(["data", "prepare", "digits", "--data-dir", str(tmp_path)]) == 0
    assert "already prepared" in capsys.readouterr().out
    info = json.loads((builder.version_dir("digits", tmp_path) / "dataset_info.json").read_text())
    assert info["name"] == "nax_digits"


def test_cli_errors_are_one_line(nax, capsys, tmp_path):
    assert nax(["data", "prepare", "cifar10", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown dataset 'cifar10'; accepted:" in err
    assert nax(["data", "prepare", "--data-dir", str(tmp_path)]) == 2
    assert "name a dataset or pass --all" in capsys.readouterr().err
