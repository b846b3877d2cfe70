"""Curve and architecture tables: exact loading of the real files, round trips, bad input."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

from nax import space, tables

SHARED = Path(os.environ.get("NAX_SHARED_DATA") or Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
BAKER = SHARED / "curves" / "baker2018"
NB201 = SHARED / "nb201" / "nb201_200epoch.csv"
needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"shared data folder {SHARED} absent (set NAX_SHARED_DATA to its path)"
)

# (file, runs, first epoch in the file, last epoch, dataset names, metadata columns) from data/README.md
BAKER_FILES = [
    ("metaqnn_cifar10.csv", 1000, 1, 20, ["cifar10"], ["net", "num_params", "depth", "lr"]),
    ("metaqnn_svhn.csv", 1300, 1, 20, ["svhn"], ["net", "num_params", "depth", "lr"]),
    ("deep_resnets_cifar10.csv", 486, 0, 49, ["deep_resnets_cifar10"], ["num_params", "lr"]),
    (
        "deep_resnets_tinyimagenet.csv",
        684,
        0,
        140,
        ["tinyimagenet"],
        ["base_model", "num_blocks", "num_filters", "filter_size", "lr", "ss"],
    ),
]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ====================================================================== real data
@pytest.mark.shared_data
@needs_shared
@pytest.mark.parametrize("name,runs,first,last,datasets,meta", BAKER_FILES)
def test_baker_curves_load_exactly(name, runs, first, last, datasets, meta):
    path = BAKER / name
    ct = tables.load_curves(path)
    start = max(first, 1)  # acc_0 is ignored by default
    assert ct.values.shape == (runs, last - start + 1)
    np.testing.assert_array_equal(ct.epochs, np.arange(start, last + 1))
    assert ct.dataset_names.tolist() == datasets
    assert list(ct.meta) == meta
    assert ct.source == str(path) and not ct.minimize
    # every cell equals float() of the text the csv module reads
    rows = csv_rows(path)
    expected = np.array([[float(r[f"acc_{e}"]) for e in ct.epochs] for r in rows])
    np.testing.assert_array_equal(ct.values, expected)
    assert ct.mask.all() and (ct.lengths == ct.n_epochs).all()
    np.testing.assert_array_equal(ct.final, expected[:, -1])
    for col in meta:
        got = ct.meta[col]
        if got.dtype.kind in "iu":
            assert got.tolist() == [int(r[col]) for r in rows]
        elif got.dtype.kind == "f":
            assert got.tolist() == [float(r[col]) for r in rows]
        else:
            assert got.tolist() == [r[col] for r in rows]


@pytest.mark.shared_data
@needs_shared
@pytest.mark.parametrize("name,runs,first,last,datasets,meta", BAKER_FILES)
def test_baker_curves_epoch0_and_round_trip(name, runs, first, last, datasets, meta, tmp_path):
    path = BAKER / name
    ct0 = tables.load_curves(path, include_epoch0=True)
    assert ct0.epochs[0] == first and ct0.epochs[-1] == last
    if first == 0:
        assert ct0.values[:, 0].tolist() == [float(r["acc_0"]) for r in csv_rows(path)]
    ct = tables.load_curves(path)
    out = tmp_path / name
    tables.save_curves(ct, out)
    back = tables.load_curves(out)
    assert back.equals(ct)
    tables.save_curves(back, tmp_path / "again.csv")
    assert (tmp_path / "again.csv").read_bytes() == out.read_bytes()


@pytest.mark.shared_data
@needs_shared
def test_baker_concat_pads_and_splits():
    parts = [tables.load_curves(BAKER / f[0]) for f in BAKER_FILES]
    ct = tables.concat(parts)
    assert ct.n_runs == sum(p.n_runs for p in parts) == 3470
    np.testing.assert_array_equal(ct.epochs, np.arange(1, 141))
    by = ct.by_dataset()
    assert list(by) == ["cifar10", "deep_resnets_cifar10", "svhn", "tinyimagenet"]
    for part in parts:
        (name,) = part.dataset_names
        assert by[name].n_epochs == part.n_epochs
        np.testing.assert_array_equal(by[name].values, part.values)
    # runs of the 20-epoch files are padded with NaN beyond epoch 20
    svhn = ct.subset(ct.datasets == "svhn")
    assert svhn.n_epochs == 140 and (svhn.lengths == 20).all() and np.isnan(svhn.values[:, 20:]).all()
    assert ct.meta["num_params"].dtype == np.float64  # int column with NaN fill
    assert (ct.meta["base_model"][ct.datasets == "cifar10"] == "").all()
    with pytest.raises(ValueError, match="same include_epoch0"):
        tables.concat([tables.load_curves(BAKER / "deep_resnets_cifar10.csv", include_epoch0=True), parts[2]])


@pytest.fixture(scope="module")
def nb201_rows():
    if not NB201.is_file():
        pytest.skip(f"{NB201} absent (set NAX_SHARED_DATA to the shared data folder)")
    return csv_rows(NB201)


@pytest.fixture(scope="module")
def nb201_table(nb201_rows):
    return tables.load_archs(NB201, space="nb201")


@pytest.mark.shared_data
def test_nb201_loads_exactly(nb201_table, nb201_rows):
    at, rows = nb201_table, nb201_rows
    assert at.n == len(rows) == 15_625 * 2 * 3 + 8_169 * 3
    assert at.unit == "percent" and at.space is space.nb201
    assert at.dataset_names.tolist() == ["cifar10", "cifar100", "imagenet16-120"]
    assert list(at.meta) == ["seed", "train_time_s", "params_mb"]
    assert at.archs == [r["arch"] for r in rows]
    assert at.datasets.tolist() == [r["dataset"] for r in rows]
    assert at.accuracy.tolist() == [float(r["accuracy"]) for r in rows]
    assert at.meta["seed"].tolist() == [int(r["seed"]) for r in rows]
    assert at.meta["params_mb"].tolist() == [float(r["params_mb"]) for r in rows]
    np.testing.assert_array_equal(at.accuracy_fraction, at.accuracy / 100)
    for i in np.random.default_rng(0).choice(at.n, 200, replace=False):
        np.testing.assert_array_equal(at.encodings[i], space.nb201.from_string(rows[i]["arch"]))
    # every cell of the space is there exactly once per dataset and seed 0
    seed0 = at.subset((at.meta["seed"] == 0) & (at.datasets == "cifar10"))
    np.testing.assert_array_equal(np.sort(space.nb201.index(seed0.encodings)), np.arange(space.nb201.size))


@pytest.mark.shared_data
def test_nb201_pivot_and_mean(nb201_table, nb201_rows, tmp_path):
    enc, names, acc = nb201_table.pivot()
    np.testing.assert_array_equal(enc, space.nb201.enumerate())
    assert names.tolist() == ["cifar10", "cifar100", "imagenet16-120"] and acc.shape == (15_625, 3)
    assert not np.isnan(acc).any()
    mean = tables.load_archs(NB201, aggregate="mean")
    assert mean.n == 15_625 * 3 and "seed" not in mean.meta
    assert np.bincount(mean.meta["n_seeds"]).tolist() == [0, 0, 15_625 * 3 - 8_169 * 3, 8_169 * 3]
    # the mean of one (arch, dataset) by hand, from the csv module
    rows = nb201_rows
    arch, ds = rows[0]["arch"], rows[0]["dataset"]
    want = np.mean([float(r["accuracy"]) for r in rows if r["arch"] == arch and r["dataset"] == ds])
    (i,) = np.flatnonzero((np.array(mean.archs) == arch) & (mean.datasets == ds))
    assert mean.accuracy[i] == pytest.approx(want, rel=1e-15)
    col = names.tolist().index(ds)
    assert acc[space.nb201.index(space.nb201.from_string(arch)), col] == pytest.approx(want, rel=1e-15)
    tables.save_archs(mean, tmp_path / "mean.csv")
    assert tables.load_archs(tmp_path / "mean.csv").equals(mean)


# ====================================================================== round trips (synthetic)
def test_curve_round_trip_with_stopped_runs_and_meta(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.uniform(0, 1, size=(6, 5))
    values[1, 3:] = np.nan  # stopped after 3 epochs
    values[4, 1:] = np.nan
    ct = tables.CurveTable.from_arrays(
        values,
        ["a", "b", "a", "c", "b", "a"],
        epochs=[1, 2, 4, 8, 16],
        meta={
            "arch": np.array(["x", "y,z", 'q"uote', "", "w", "v"]),
            "seed": np.arange(6),
            "lr": np.array([0.1, np.nan, 1 / 3, 1e-7, 2.0, 0.5]),
            "ok": np.array([True, False, True, True, False, True]),
        },
    )
    assert ct.lengths.tolist() == [5, 3, 5, 5, 1, 5]
    assert ct.last_epochs.tolist() == [16, 4, 16, 16, 1, 16]
    assert ct.final.tolist() == [values[0, 4], values[1, 2], values[2, 4], values[3, 4], values[4, 0], values[5, 4]]
    tables.save_curves(ct, tmp_path / "t.csv")
    back = tables.load_curves(tmp_path / "t.csv")
    assert back.equals(ct)
    assert back.meta["seed"].dtype == np.int64 and back.meta["ok"].dtype == bool
    # a chosen prefix and dataset column round-trip too
    tables.save_curves(ct, tmp_path / "u.csv", prefix="val_", dataset_column="task")
    assert tables.load_curves(tmp_path / "u.csv", prefix="val_", dataset_column="task").equals(ct)


def test_loss_curves_with_minimize(tmp_path):
    path = write(tmp_path / "loss.csv", "loss_1,loss_2,loss_3\n2.5,1.25,\n3.0,0.5,0.25\n")
    ct = tables.load_curves(path, prefix="loss_", minimize=True)
    assert ct.minimize and ct.dataset_names.tolist() == ["loss"]
    np.testing.assert_array_equal(ct.values, [[2.5, 1.25, np.nan], [3.0, 0.5, 0.25]])
    tables.save_curves(ct, tmp_path / "back.csv", prefix="loss_")
    assert tables.load_curves(tmp_path / "back.csv", prefix="loss_", minimize=True).equals(ct)


def test_epoch_columns_are_sorted_and_missing_spellings(tmp_path):
    path = write(
        tmp_path / "t.csv",
        "acc_10,name,acc_2,acc_1,acc_best\n0.9,a,0.5,0.1,0.9\n,b,NaN,0.2,0.2\n,c,,0.3,x\n",
    )
    ct = tables.load_curves(path)
    assert ct.epochs.tolist() == [1, 2, 10]
    np.testing.assert_array_equal(ct.values, [[0.1, 0.5, 0.9], [0.2, np.nan, np.nan], [0.3, np.nan, np.nan]])
    assert list(ct.meta) == ["name", "acc_best"] and ct.meta["acc_best"].tolist() == ["0.9", "0.2", "x"]
    assert ct.datasets.tolist() == ["t", "t", "t"]


def test_crlf_bom_whitespace_and_dataset_column_none(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_bytes("\ufefftraining_dataset, acc_1 ,acc_2\r\nsvhn, 0.25 ,0.5\r\n\r\ncifar, 0.125,\r\n".encode())
    ct = tables.load_curves(path)
    assert ct.datasets.tolist() == ["svhn", "cifar"] and ct.meta == {}
    np.testing.assert_array_equal(ct.values, [[0.25, 0.5], [0.125, np.nan]])
    alone = tables.load_curves(path, dataset_column=None)
    assert alone.datasets.tolist() == ["runs", "runs"] and alone.meta["training_dataset"].tolist() == ["svhn", "cifar"]


def test_concat_synthetic_pads_epochs_and_meta():
    a = tables.CurveTable.from_arrays(
        [[0.1, 0.2], [0.3, np.nan]], "a", meta={"seed": np.array([0, 1]), "arch": np.array(["x", "y"])}, source="a.csv"
    )
    b = tables.CurveTable.from_arrays([[0.5, 0.6, 0.7]], "b", meta={"seed": np.array([7])})
    ct = tables.concat([a, b])
    assert ct.epochs.tolist() == [1, 2, 3] and ct.source == "a.csv"
    np.testing.assert_array_equal(ct.values, [[0.1, 0.2, np.nan], [0.3, np.nan, np.nan], [0.5, 0.6, 0.7]])
    assert ct.meta["seed"].tolist() == [0, 1, 7] and ct.meta["arch"].tolist() == ["x", "y", ""]
    assert ct.lengths.tolist() == [2, 1, 3] and ct.final.tolist() == [0.2, 0.3, 0.7]
    assert [t.n_epochs for t in ct.by_dataset().values()] == [2, 3]
    np.testing.assert_array_equal(ct.subset([2, 0]).values, ct.values[[2, 0]])
    # a table starting later (or with a hole) would put missing values before observed ones
    late = tables.CurveTable.from_arrays([[0.5, 0.6]], "c", epochs=[2, 3], source="late.csv")
    with pytest.raises(ValueError, match=r"cannot concat late.csv with epochs \[2, 3\].*epochs 1..3"):
        tables.concat([a, late])
    with pytest.raises(ValueError, match="at least one"):
        tables.concat([])


def test_arch_round_trip_fraction(tmp_path):
    enc = np.random.default_rng(0).integers(0, space.nb201.num_ops, size=(5, space.nb201.num_edges))
    at = tables.ArchTable.from_encodings(
        enc,
        "digits",
        [0.5, 0.25, 1.0, 0.0, 1 / 3],
        meta={"seed": np.arange(5), "note": np.array(["a", "b,c", 'd"', "e", "f"])},
    )
    assert at.unit == "fraction" and at.archs[0] == space.nb201.to_string(enc[0])
    tables.save_archs(at, tmp_path / "a.csv")
    back = tables.load_archs(tmp_path / "a.csv")
    assert back.equals(dataclass_replace(at, source=str(tmp_path / "a.csv")))


def dataclass_replace(obj, **kw):
    import dataclasses

    return dataclasses.replace(obj, **kw)


# ====================================================================== bad curve tables
def test_missing_file():
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        tables.load_curves("/nonexistent/nope.csv")
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        tables.load_archs("/nonexistent/nope.csv")


@pytest.mark.parametrize(
    "text,match",
    [
        ("", "empty file"),
        ("\n\n", "empty file"),
        ("net,lr\nx,0.1\n", r"no value columns named 'acc_<epoch>'.*--prefix"),
        ("acc_0,lr\n0.1,0.1\n", "no value columns"),  # acc_0 alone is ignored
        ("acc_1,acc_2\n", "no data rows"),
        ("acc_1,acc_2\n0.1,0.2\n0.1,0.2,0.3\n", r"line 3 has 3 fields, the header has 2"),
        ("acc_1,acc_2,net\n0.1,0.2,a\n0.1,0.2\n", r"line 3 has 2 fields, the header has 3"),
        ("acc_1,acc_2\n0.1,0.2\n0.1,abc\n", r"line 3, column 'acc_2': 'abc' is not a number"),
        ("acc_1,acc_2\n0.1,inf\n", r"line 2, column 'acc_2'.*not finite"),
        ("acc_1,acc_3,acc_3\n0.1,0.2,0.3\n", "appears twice"),
        ("acc_1,acc_3,acc_03\n0.1,0.2,0.3\n", r"'acc_3' and 'acc_03' both hold epoch 3"),
        ("acc_1,acc_2\n0.1,0.2\n0.5,12.5\n", r"1 values outside \[0, 1\].*line 3.*--minimize.*percentages"),
        ("acc_1,acc_2\n0.1,-0.2\n", r"outside \[0, 1\].*--minimize"),
        ("acc_1,acc_2\n,\nnan,\n", "none of the 2 rows is a curve: 2 have no value"),
        ("acc_1,acc_2\n,0.5\n", "none of the 1 rows is a curve: 0 have no value, 1 a missing value before"),
        ("training_dataset,acc_1\n,0.5\n", r"line 2: empty 'training_dataset'"),
    ],
)
def test_bad_curve_tables(tmp_path, text, match):
    path = write(tmp_path / "bad.csv", text)
    with pytest.raises(ValueError, match=match) as err:
        tables.load_curves(path)
    assert str(path) in str(err.value)


def test_bad_rows_are_counted_and_skipped(tmp_path):
    path = write(
        tmp_path / "rows.csv",
        "id,acc_1,acc_2,acc_3\n"
        "0,0.1,0.2,0.3\n"
        "1,,,\n"  # no value at all
        "2,0.1,,0.3\n"  # a gap
        "3,0.1,0.2,\n"  # stopped: fine
        "4,NaN,nan,NA\n"  # no value at all
        "5,,0.2,0.3\n",  # starts missing
    )
    with pytest.warns(
        tables.TableWarning, match=r"skipped 4 of 6 rows: 2 with no value, 2 with a missing value.*lines 3, 4, 6, 7"
    ):
        ct = tables.load_curves(path)
    assert ct.meta["id"].tolist() == [0, 3] and ct.lengths.tolist() == [3, 2]
    with pytest.raises(ValueError, match=r"found bad 4 of 6 rows"):
        tables.load_curves(path, on_bad_rows="error")


def test_curve_table_constructor_validates():
    with pytest.raises(ValueError, match="missing values only at the end"):
        tables.CurveTable.from_arrays([[0.1, np.nan, 0.3]], "d")
    with pytest.raises(ValueError, match="at least one value"):
        tables.CurveTable.from_arrays([[np.nan, np.nan]], "d")
    with pytest.raises(ValueError, match="outside"):
        tables.CurveTable.from_arrays([[0.1, 50.0]], "d")
    with pytest.raises(ValueError, match="ascending"):
        tables.CurveTable.from_arrays([[0.1, 0.2]], "d", epochs=[2, 1])
    with pytest.raises(ValueError, match="mask"):
        tables.CurveTable(np.array([[0.1]]), np.array([[False]]), np.array([1]), np.array(["d"]))
    a = tables.CurveTable.from_arrays([[0.1]], "d")
    b = tables.CurveTable.from_arrays([[1.5]], "d", minimize=True)
    with pytest.raises(ValueError, match="different minimize"):
        tables.concat([a, b])


# ====================================================================== bad architecture tables
ARCH = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"


@pytest.mark.parametrize(
    "text,match",
    [
        ("", "empty file"),
        ("arch,dataset\nx,y\n", r"missing column\(s\) \['accuracy'\]"),
        ("arch,dataset,accuracy\n", "no data rows"),
        (
            f"arch,dataset,accuracy\n{ARCH.replace('avg_pool_3x3', 'conv_5x5')},c10,0.5\n",
            r"line 2, column 'arch': unknown operation 'conv_5x5'.*"
            r"accepted: none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3",
        ),
        ("arch,dataset,accuracy\n|none~0|+|none~0|,c10,0.5\n", r"line 2, column 'arch': malformed nb201 string"),
        (
            f"arch,dataset,accuracy\n{ARCH},c10,0.5\n{ARCH},c100,0.5\n{ARCH},c10,0.6\n",
            r"2 rows repeat an \(arch, dataset\), e.g. lines 2 and 4.*add a 'seed' column",
        ),
        (
            f"arch,dataset,seed,accuracy\n{ARCH},c10,0,0.5\n{ARCH},c10,1,0.5\n{ARCH},c10,0,0.6\n",
            r"repeat an \(arch, dataset, seed\), e.g. lines 2 and 4",
        ),
        (f"arch,dataset,accuracy\n{ARCH},c10,good\n", r"line 2, column 'accuracy': 'good' is not a number"),
        (f"arch,dataset,accuracy\n{ARCH},c10,\n", "no row has an accuracy"),
        (f"arch,dataset,accuracy\n{ARCH},c10,0.5,7\n", r"ragged rows.*line 2"),
        (f"arch,dataset,accuracy\n{ARCH},,0.5\n", r"line 2: empty 'dataset'"),
        (f"arch,dataset,accuracy\n\n{ARCH},c10,0.5\n\n{ARCH},c10,bad\n", r"line 5, column 'accuracy'"),
        (
            f'arch,dataset,accuracy,note\n{ARCH},c10,0.5,"a,b"\n{ARCH},c10,0.5\n',
            r"ragged rows: line 3 has 3 fields, the header has 4",
        ),
        (f"arch,dataset,accuracy\n{ARCH},c10\n", r"ragged rows: line 2 has 2 fields, the header has 3"),
    ],
)
def test_bad_arch_tables(tmp_path, text, match):
    path = write(tmp_path / "bad.csv", text)
    with pytest.raises(ValueError, match=match) as err:
        tables.load_archs(path)
    assert str(path) in str(err.value)


def test_arch_table_crlf_bom_and_whitespace(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes(f"\ufeffarch, dataset ,accuracy\r\n {ARCH} ,c10 ,0.5\r\n\r\n{ARCH},c100,0.25\r\n".encode())
    at = tables.load_archs(path)
    assert at.archs == [ARCH, ARCH] and at.datasets.tolist() == ["c10", "c100"] and at.accuracy.tolist() == [0.5, 0.25]


def test_arch_mean_pivot_and_other_space(tmp_path):
    tiny = space.CellSpace(name="tiny", ops=("none", "conv"), num_nodes=3)  # edges 0->1, 0->2, 1->2
    a, b = "|conv~0|+|none~0|conv~1|", "|none~0|+|conv~0|conv~1|"
    path = write(
        tmp_path / "tiny.csv",
        "arch,dataset,seed,accuracy,params_mb,tag\n"
        f"{a},d1,0,0.5,1.0,p\n{a},d1,1,0.75,1.0,q\n{b},d1,0,0.25,2.0,r\n{a},d2,0,0.125,1.0,s\n",
    )
    at = tables.load_archs(path, space=tiny)
    np.testing.assert_array_equal(at.encodings, [[1, 0, 1], [1, 0, 1], [0, 1, 1], [1, 0, 1]])
    enc, names, acc = at.pivot()
    np.testing.assert_array_equal(enc, [[0, 1, 1], [1, 0, 1]])
    assert names.tolist() == ["d1", "d2"]
    np.testing.assert_array_equal(acc, [[0.25, np.nan], [0.625, 0.125]])
    mean = tables.load_archs(path, space=tiny, aggregate="mean")
    assert mean.archs == [a, b, a] and mean.datasets.tolist() == ["d1", "d1", "d2"]
    assert mean.accuracy.tolist() == [0.625, 0.25, 0.125]
    assert list(mean.meta) == ["params_mb", "tag", "n_seeds"]
    assert mean.meta["n_seeds"].tolist() == [2, 1, 1] and mean.meta["tag"].tolist() == ["p", "r", "s"]
    with pytest.raises(ValueError, match=r"line 2, column 'arch': unknown operation 'avg'.*accepted: none, conv"):
        tables.load_archs(
            write(tmp_path / "bad.csv", "arch,dataset,accuracy\n|avg~0|+|none~0|conv~1|,d,0.5\n"), space=tiny
        )


def test_line_numbers_count_quoted_newlines(tmp_path):
    curves = write(tmp_path / "c.csv", 'note,acc_1\n"two\nlines",0.5\n\n"x",oops\n')
    with pytest.raises(ValueError, match=r"line 5, column 'acc_1': 'oops'"):
        tables.load_curves(curves)
    archs = write(tmp_path / "a.csv", f'arch,dataset,accuracy,note\n{ARCH},c10,0.5,"two\nlines"\n{ARCH},c100,oops,x\n')
    with pytest.raises(ValueError, match=r"line 4, column 'accuracy': 'oops'"):
        tables.load_archs(archs)


def test_arch_nan_accuracy_skipped_and_units(tmp_path):
    other = space.nb201.to_string(np.full(6, 3))
    path = write(tmp_path / "a.csv", f"arch,dataset,accuracy\n{ARCH},c10,0.5\n{other},c10,nan\n{other},c100,\n")
    with pytest.warns(tables.TableWarning, match=r"skipped 2 of 3 rows with a missing accuracy; lines 3, 4"):
        at = tables.load_archs(path)
    assert at.n == 1 and at.unit == "fraction"
    np.testing.assert_array_equal(at.encodings, [[3, 0, 1, 4, 2, 0]])
    with pytest.warns(tables.TableWarning):
        pct = tables.load_archs(path, unit="percent")
    assert pct.accuracy_fraction.tolist() == [0.005]
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        tables.load_archs(write(tmp_path / "p.csv", f"arch,dataset,accuracy\n{ARCH},c10,55\n"), unit="fraction")


# ====================================================================== real-valued scores
def test_negative_losses_round_trip_and_rank_reversed(tmp_path):
    cells = space.nb201.enumerate()[[0, 5, 77, 300, 1200]]
    loss = np.array([-0.25, -3.5, 1.75, -12.0, 0.0])  # a log-likelihood-like loss: any sign
    at = tables.ArchTable.from_encodings(cells, "d", loss, unit="score", lower_is_better=True)
    np.testing.assert_array_equal(at.oriented, -loss)
    # the best (lowest loss) ranks first
    assert np.argsort(-at.oriented).tolist() == np.argsort(loss).tolist() == [3, 1, 0, 4, 2]
    path = tmp_path / "loss.csv"
    tables.save_archs(at, path)
    assert path.read_text().splitlines()[0] == "arch,dataset,score"
    back = tables.load_archs(path, lower_is_better=True)
    assert back.equals(at) and back.unit == "score" and back.lower_is_better
    # without the direction the same file is a higher-is-better score: another table
    assert not tables.load_archs(path).equals(at)
    with pytest.raises(ValueError, match="holds scores"):
        at.accuracy_fraction  # noqa: B018


def test_any_finite_score_is_accepted_units_still_checked(tmp_path):
    for text, unit in (
        (f"{ARCH},c10,101\n", "score"),
        (f"{ARCH},c10,-0.1\n", "score"),
        (f"{ARCH},c10,55\n", "percent"),
    ):
        at = tables.load_archs(write(tmp_path / "s.csv", "arch,dataset,accuracy\n" + text))
        assert at.unit == unit and not at.lower_is_better
    path = write(tmp_path / "e.csv", f"arch,dataset,accuracy\n{ARCH},c10,5\n")
    assert tables.load_archs(path, lower_is_better=True).unit == "score"  # an error rate: lower is better
    with pytest.raises(ValueError, match=r"outside \[0, 100\] \(percent\).*unit='score'"):
        tables.load_archs(write(tmp_path / "p.csv", f"arch,dataset,accuracy\n{ARCH},c10,101\n"), unit="percent")
    with pytest.raises(ValueError, match=r"outside \[0, 1\] \(fraction\)"):
        tables.load_archs(write(tmp_path / "f.csv", f"arch,dataset,accuracy\n{ARCH},c10,-0.1\n"), unit="fraction")
    with pytest.raises(ValueError, match="lower-is-better table holds scores"):
        tables.load_archs(path, unit="percent", lower_is_better=True)
    with pytest.raises(ValueError, match="both 'accuracy' and 'score'"):
        tables.load_archs(write(tmp_path / "b.csv", f"arch,dataset,accuracy,score\n{ARCH},c10,1,2\n"))
    with pytest.raises(ValueError, match=r"line 2, column 'score': 'x' is not a number"):
        tables.load_archs(write(tmp_path / "x.csv", f"arch,dataset,score\n{ARCH},c10,x\n"))
    with pytest.raises(ValueError, match="must be finite"):
        tables.ArchTable.from_encodings(np.zeros((1, 6), np.int32), "d", [np.inf], unit="score")
