"""The cross-family protocol of ``nax curves benchmark`` / ``early-stop`` and its bad input:
folds never put a target (or a family with the same runs) among its sources, directions
must agree unless declared, a target the models cannot be scored on is skipped with the
reason; and the baselines (MMF, the grouped-CV SVR with metadata features)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nax import tables
from nax.cli import main
from nax.curves import baselines
from nax.curves.bench import families as fam
from nax.curves.bench.common import Priors
from nax.curves.bench.extrapolation import SVRs, run_folds
from nax.curves.inference import InferenceConfig


def _curves(seed, n=6, epochs=10, loss=False):
    rng = np.random.default_rng(seed)
    final = rng.uniform(0.5, 0.9, n)
    c = final[:, None] * (1 - 0.6 * np.exp(-0.5 * np.arange(1, epochs + 1)))
    c = np.clip(c + rng.normal(0, 0.01, c.shape), 0.01, 1)
    return -np.log(c) if loss else c


def _write(path, names, seed, epochs=10, loss=False, epoch_numbers=None):
    vals = np.concatenate([_curves(seed + i, epochs=epochs, loss=loss) for i in range(len(names))])
    ds = np.repeat(np.array(names), 6)
    tables.save_curves(tables.CurveTable.from_arrays(vals, ds, epochs=epoch_numbers, minimize=loss), path)
    return str(path)


@pytest.fixture
def pool(tmp_path):
    acc = _write(tmp_path / "acc.csv", ["a1", "a2"], 0)
    other = _write(tmp_path / "other.csv", ["b1", "b2"], 5, epochs=8)
    loss = _write(tmp_path / "acc_loss.csv", ["a1", "a2"], 0, loss=True)
    return tmp_path, acc, other, loss


def test_family_spec_parses_prefix_column_and_direction(pool):
    _, acc, other, _ = pool
    f = fam.parse_family(f"meta_loss={acc},{other}:prefix=train_loss_,column=task,minimize")
    assert f == fam.Family("meta_loss", (acc, other), "train_loss_", "task", True)
    assert fam.parse_family(f"x={acc}:column=").dataset_column is None
    with pytest.raises(ValueError, match="unknown option 'maximise'"):
        fam.parse_family(f"x={acc}:maximise")
    with pytest.raises(FileNotFoundError, match="no such curve table: nope.csv"):
        fam.parse_family("x=nope.csv")
    with pytest.raises(ValueError, match="NAME=PATH"):
        fam.parse_family(acc)


def test_cross_family_folds_leave_the_target_and_its_same_runs_family_out(pool):
    _, acc, other, loss = pool
    acc_f = fam.Family("acc", (acc,))
    loss_f = fam.Family("loss", (loss,), minimize=True)
    other_f = fam.Family("other", (other,))
    # the loss family reads other columns of... a file of its own here; same_runs is by file
    same = fam.Family("acc_again", (acc,), prefix="acc_")
    families = [acc_f, other_f, same]
    data, members = fam.load_families(families)
    assert members["acc_again"] == ["acc_again:a1", "acc_again:a2"]  # names taken by acc get the family
    folds = {f.family: f for f in fam.cross_family_folds(families, members)}
    assert folds["acc"].excluded == ("acc_again",) and folds["acc_again"].excluded == ("acc",)
    for f in folds.values():
        for target, sources in f.sources.items():
            assert target not in sources
            assert not set(sources) & set(members[f.family])
            assert not any(s in members[e] for e in f.excluded for s in sources)
    assert folds["acc"].sources["a1"] == ("b1", "b2")
    loo = {f.family: f for f in fam.loo_folds(families, members)}
    assert loo["other"].sources == {"b1": ("b2",), "b2": ("b1",)}
    # directions: a loss family among an accuracy target's sources needs the declaration
    families = [acc_f, loss_f]
    data, members = fam.load_families(families)
    with pytest.raises(ValueError, match=r"sources .*acc_loss\.csv are loss .* target family acc \(.*acc\.csv\)"):
        fam.cross_family_folds(families, members)
    folds = fam.cross_family_folds(families, members, mixed_directions=True)
    assert [f.sources for f in folds][0]["a1"] == ("loss:a1", "loss:a2")
    lifted = fam.on_model_scale(data["loss:a1"])
    np.testing.assert_allclose(lifted.values, np.exp(-data["loss:a1"].values))
    assert not lifted.minimize


def test_one_family_or_one_dataset_is_a_one_line_error(pool, capsys):
    _, acc, other, _ = pool
    args = ["curves", "benchmark", "--family", f"acc={acc}", "--protocol", "cross-family"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "transfer needs at least one other source dataset" in err
    one = _write(pool[0] / "one.csv", ["z"], 3)
    assert main(["curves", "benchmark", "--family", f"one={one}", "--family", f"o={other}", "--protocol", "loo"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "family one has only z" in err
    # NUTS rows are the pools' benchmark only: asking for them with families is an error
    args = ["curves", "benchmark", "--family", f"acc={acc}", "--family", f"o={other}", "--nuts-curves", "2"]
    assert main(args) == 2
    assert "--nuts-curves runs with --train/--test only" in capsys.readouterr().err
    # --train/--test: one test dataset and no other source
    assert main(["curves", "benchmark", "--train", one, "--test", one]) == 2
    assert "transfer needs at least one source dataset other than the target" in capsys.readouterr().err


def test_directions_must_be_declared(pool, capsys):
    tmp, acc, _, loss = pool
    # a loss with values in [0, 1] read as an accuracy: its curves fall; the error names the file
    small = _write(tmp / "small_loss.csv", ["s"], 1, loss=True)
    vals = tables.load_curves(small, minimize=True)
    tables.save_curves(tables.CurveTable.from_arrays(vals.values / 10, vals.datasets), tmp / "small.csv")
    assert main(["curves", "benchmark", "--train", acc, str(tmp / "small.csv"), "--test", acc]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "small.csv: read as an accuracy, but its values fall" in err
    args = ["curves", "benchmark", "--family", f"acc={acc}", "--family", f"loss={loss}:minimize"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "acc_loss.csv are loss" in err and "--mixed-directions" in err


def test_targets_the_models_cannot_score_are_skipped_with_the_reason(tmp_path):
    late = _write(tmp_path / "late.csv", ["late"], 0, epoch_numbers=np.arange(10, 101, 10))
    short = _write(tmp_path / "short.csv", ["short"], 1, epochs=1)
    src = _write(tmp_path / "src.csv", ["s1", "s2"], 2)
    families = [fam.Family("late", (late,)), fam.Family("short", (short,)), fam.Family("src", (src,))]
    data, members = fam.load_families(families)
    folds = fam.cross_family_folds(families, members)[:2]
    quiet = lambda m: None
    priors = Priors(data, seed=0, max_curves=6, calibrate=False, log=quiet)
    results, skipped = run_folds(folds, data, priors, SVRs(data, max_curves=6, seed=0), cutoffs=[0.05],
                                 max_curves=None, nuts_curves=0, inference=InferenceConfig(num_steps=5),
                                 finished=(), seed=0, log=quiet)  # fmt: skip
    assert results == [] and priors.cache == {}  # nothing to score: nothing fitted, nothing crashed
    reasons = {s["dataset"]: s["reason"] for s in skipped}
    assert "first logged epoch 10" in reasons["late"] and "at least one" in reasons["late"]
    assert reasons["short"].startswith("1 epoch column: nothing to extrapolate")


def test_mmf_recovers_an_mmf_curve_and_needs_four_points():
    epochs = np.arange(1, 31)
    truth = 0.9 - (0.9 - 0.2) / (1 + (0.3 * epochs) ** 1.5)
    mask = np.broadcast_to(epochs <= 12, (1, 30))
    pred = baselines.mmf_least_squares(np.where(mask, truth, np.nan), mask, epochs, 30)
    np.testing.assert_allclose(pred, truth[-1:], atol=2e-3)
    three = np.broadcast_to(epochs <= 3, (1, 30))
    assert baselines.mmf_least_squares(truth[None], three, epochs, 30)[0] == truth[2]


def test_svr_chooses_nu_and_c_by_source_groups_and_uses_shared_metadata():
    rng = np.random.default_rng(0)
    epochs = np.arange(1, 21)
    lr = 10 ** rng.uniform(-4, -1, 240)
    final = 0.5 + 0.1 * np.log10(lr) / -4 + rng.normal(0, 0.01, 240)  # the final value depends on lr
    # ... and not on the observed prefix (the first two epochs are alike for every run)
    curve = np.where(epochs <= 2, 0.2 + 0.05 * epochs + rng.normal(0, 0.01, (240, 20)), final[:, None])
    mask = np.broadcast_to(epochs <= 2, curve.shape)
    metas = [{"lr": lr[:120], "depth": np.ones(120)}, {"learning_rate": lr[120:]}]
    cols = baselines.shared_meta_columns(metas)
    assert cols == ("lr",)  # depth is not in the second table; learning_rate is lr
    extra = np.concatenate([baselines.meta_features(m, cols) for m in metas])
    np.testing.assert_allclose(extra[:, 0], np.log10(lr))
    groups = np.repeat(np.arange(4), 60)
    svr = baselines.SVRPredictor().fit(curve[:180], mask[:180], final[:180], extra=extra[:180], groups=groups[:180])
    assert (svr.choice["nu"], svr.choice["C"]) in baselines.SVR_GRID and svr.choice["cv_mae"] is not None
    with_meta = np.abs(svr.predict(curve[180:], mask[180:], extra=extra[180:]) - final[180:]).mean()
    without = baselines.SVRPredictor().fit(curve[:180], mask[:180], final[:180], groups=groups[:180])
    assert with_meta < np.abs(without.predict(curve[180:], mask[180:]) - final[180:]).mean()
    assert baselines.curve_features(curve[:2], mask[:2]).shape == (2, 27)  # values, 1st and 2nd differences


@pytest.mark.slow
def test_family_benchmark_command_writes_both_protocols(pool, capsys):
    tmp, acc, other, loss = pool
    out = tmp / "fam.json"
    args = ["curves", "benchmark", "--family", f"acc={acc}", "--family", f"other={other}",
            "--family", f"loss={loss}:minimize", "--mixed-directions", "--cutoffs", "0.3", "--steps", "30",
            "--prior-steps", "30", "--max-train-curves", "6", "--no-calibration", "--finished", "3",
            "--json", str(out)]  # fmt: skip
    assert main(args) == 0
    record = json.loads(out.read_text())
    rows = record["results"]
    assert {(r["protocol"], r["family"]) for r in rows} == {
        (p, f) for p in ("cross-family", "loo") for f in ("acc", "other", "loss")
    }
    methods = {r["method"] for r in rows}
    assert {"last_value", "pow3", "mmf", "svr", "no_transfer", "transfer"} <= methods
    # --finished applies to families too: the full prior and the strength chosen on them
    assert {"transfer_finished3", "transfer_auto_finished3"} <= methods
    folds = {(f["protocol"], f["family"]): f for f in record["meta"]["folds"]}
    assert folds["cross-family", "loss"]["sources"] == ["a1", "a2", "b1", "b2"]
    assert folds["cross-family", "acc"]["sources"] == ["b1", "b2", "loss:a1", "loss:a2"]
    loss_rows = [r for r in rows if r["family"] == "loss" and r["method"] == "no_transfer"]
    assert loss_rows and all(r["mae"] >= 0 and r["lpd"] is not None for r in loss_rows)
    assert "(cross-family, target family loss)" in capsys.readouterr().out


def test_prior_cache_tells_apart_sources_that_share_names_but_not_curves(tmp_path):
    # the meta-dataset's accuracy and loss columns of the same runs have the same dataset
    # names: a prior fitted on one must never be loaded for the other
    epochs = np.arange(1, 5)
    one = np.array(["a"])
    acc = tables.CurveTable(np.array([[0.2, 0.4, 0.5, 0.55]]), np.ones((1, 4), bool), epochs, one, minimize=False)
    loss = tables.CurveTable(np.array([[2.0, 1.2, 0.9, 0.8]]), np.ones((1, 4), bool), epochs, one, minimize=True)
    settings = dict(seed=0, max_curves=30, calibrate=False, cache_dir=tmp_path, log=lambda *_: None)
    path_acc = Priors({"a": acc, "b": acc}, **settings)._path(("a", "b"))
    path_loss = Priors({"a": loss, "b": loss}, **settings)._path(("a", "b"))
    assert path_acc != path_loss
    assert Priors({"a": acc, "b": acc}, **settings)._path(("a", "b")) == path_acc  # same curves: same file
