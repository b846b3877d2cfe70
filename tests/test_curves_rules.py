"""Basis families, baselines, the stopping rule, loading the real curve sets, the commands."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nax import tables
from nax.cli import main
from nax.curves import baselines, basis
from nax.curves.bench import common
from nax.curves.bench.models import has_mix, has_strength
from nax.curves.fitting import observed_from_tables
from nax.curves.inference import InferenceConfig
from nax.curves.predict import Prediction
from nax.curves.stopping import FinalDraws, Finished, StopConfig, stop_rule


@pytest.mark.parametrize("family", sorted(basis.FAMILIES))
def test_each_family_is_a_bounded_non_decreasing_progress(family):
    rng = np.random.default_rng(0)
    t = jnp.linspace(0.0, 1.0, 201)
    for lk, ld in rng.normal(0.0, 1.5, size=(20, 2)):
        p = np.asarray(basis.progress(family, t, jnp.float32(lk), jnp.float32(ld)))
        assert np.isfinite(p).all()
        assert p.min() >= 0.0 and p.max() <= 1.0
        assert np.all(np.diff(p) >= -1e-6)
        assert abs(p[-1] - 1.0) < 1e-5


def test_curve_mean_lies_between_start_and_final_value():
    z = jnp.asarray(np.random.default_rng(1).normal(size=(50, basis.num_params())), jnp.float32)
    t = jnp.linspace(0.01, 1.0, 30)[None]
    m = np.asarray(basis.curve_mean(z, t))
    y1 = np.asarray(1 / (1 + np.exp(-z[:, basis.FINAL])))
    np.testing.assert_allclose(m[:, -1], y1, rtol=1e-5)
    assert np.all(np.diff(m, axis=1) >= -1e-6) and np.all(m <= y1[:, None] + 1e-6)


def _prediction(final, noise=1e-3, n=3, ok=True):
    """A Prediction whose curves end at ``final`` with tiny noise (no fitting)."""
    z = np.zeros((100, n, basis.num_params()), np.float32)
    z[..., basis.FINAL] = np.log(final / (1 - final))
    z[..., basis.LOG_NOISE] = np.log(noise)
    z += np.random.default_rng(0).normal(0, 0.01, z.shape).astype(np.float32)
    diag = {"ok": ok, "problems": [] if ok else ["simulated failure"]}
    return Prediction(
        jnp.asarray(z),
        np.full(n, 20),
        basis.DEFAULT_FAMILIES,
        False,
        0,
        "transfer",
        "svi",
        diag,
        0.0,
    )


def test_rule_stops_what_cannot_beat_the_best():
    pred = _prediction(0.5)
    rule = stop_rule(None, 20)
    state = rule.init(jax.random.key(0))
    judge = lambda p, best: rule.judge(state, FinalDraws.from_prediction(p), best)
    assert np.all(judge(pred, 0.6).prob_better < 0.01)
    assert judge(pred, 0.6).stop.all()
    assert not judge(pred, 0.4).stop.any()
    assert not judge(pred, -np.inf).stop.any()
    np.testing.assert_allclose(judge(pred, 0.6).predicted_final, pred.mean)
    # a failed inference never stops a run
    assert not judge(_prediction(0.5, ok=False), 0.6).stop.any()
    # losses: better is lower
    lower = stop_rule(None, 20, StopConfig(minimize=True))
    assert not lower.judge(state, FinalDraws.from_prediction(pred), 0.6).stop.any()


def test_rule_over_epochs_of_a_target():
    rule = stop_rule(None, 10, StopConfig(min_epochs=3, inference=InferenceConfig(num_steps=300, num_samples=200)))
    state = rule.init(jax.random.key(0))
    d = rule.decide(state, [[0.1, 0.1, 0.1, 0.1]], None)
    assert not d.stop.any() and np.isnan(d.predicted_final).all()  # no best to beat yet
    state = rule.update(state, [Finished(np.linspace(0.5, 0.9, 10), True)], jax.random.key(1))
    assert state.context.shape == (1, 10)
    assert [e for e in range(12) if rule.schedule.due(e)] == list(range(3, 10))
    d = rule.decide(state, [[0.1, 0.1, 0.1, 0.1, 0.1], [0.7, 0.8, 0.88, 0.93, 0.95]], 0.9)
    assert d.stop.tolist() == [True, False]
    assert d.predicted_final[0] < 0.5 < d.predicted_final[1]
    stopped = rule.update(state, [Finished([0.1, 0.1, 0.1], False)], jax.random.key(2))
    assert stopped.context.shape == (2, 10) and stopped.seed != state.seed
    with pytest.raises(ValueError, match="more than the horizon"):
        rule.decide(state, np.zeros((1, 11)), 0.9)


def test_pow3_least_squares_recovers_a_pow3_curve():
    epochs = np.arange(1, 21)
    values = np.stack([0.9 - 0.5 * epochs**-0.7, 0.8 - 0.3 * epochs**-1.2])
    mask = np.repeat(epochs[None] <= 6, 2, 0)
    pred = baselines.pow3_least_squares(np.where(mask, values, np.nan), mask, epochs, 20)
    np.testing.assert_allclose(pred, values[:, -1], atol=1e-3)
    short = epochs[None] <= 2  # fewer points than parameters: the last value
    np.testing.assert_array_equal(
        baselines.pow3_least_squares(values, np.repeat(short, 2, 0), epochs, 20),
        values[:, 1],
    )
    np.testing.assert_array_equal(baselines.last_value(values, mask), values[:, 5])


def test_svr_learns_final_values_from_curve_features():
    rng = np.random.default_rng(0)
    epochs = np.arange(1, 21)
    final = rng.uniform(0.3, 0.95, 400)
    rate = rng.uniform(0.1, 0.5, 400)
    curve = final[:, None] * (1 - np.exp(-rate[:, None] * epochs))
    mask = np.broadcast_to(epochs <= 4, curve.shape)
    svr = baselines.SVRPredictor().fit(curve[:300], mask[:300], final[:300])
    err = np.abs(svr.predict(curve[300:], mask[300:]) - final[300:]).mean()
    assert err < 0.5 * np.abs(final[300:] - final[:300].mean()).mean()


def test_real_baker_sets_load_with_their_own_horizons(shared_data):
    folder = shared_data / "curves" / "baker2018"
    names = [
        "metaqnn_cifar10",
        "metaqnn_svhn",
        "deep_resnets_cifar10",
        "deep_resnets_tinyimagenet",
    ]
    tabs = [tables.load_curves(folder / f"{n}.csv") for n in names]
    obs = observed_from_tables(tabs)
    assert obs.dataset_names == (
        "cifar10",
        "deep_resnets_cifar10",
        "svhn",
        "tinyimagenet",
    )
    assert obs.y.shape == (1000 + 1300 + 486 + 684, 140)
    horizons = {obs.dataset_names[d]: set(obs.horizon[obs.dataset == d].tolist()) for d in range(4)}
    assert horizons == {
        "cifar10": {20},
        "svhn": {20},
        "deep_resnets_cifar10": {49},
        "tinyimagenet": {140},
    }
    # acc_0 (the untrained network) is not used; the first column of deep_resnets is epoch 1
    first = tabs[2].values[0, 0]
    np.testing.assert_allclose(obs.y[obs.dataset == 1][0, 0], first, rtol=1e-6)
    np.testing.assert_array_equal(
        obs.mask.sum(1),
        np.concatenate([t.lengths for t in tabs])[
            np.argsort(
                np.concatenate([np.full(t.n_runs, i) for i, t in enumerate(tabs)]),
                kind="stable",
            )
        ],
    )


def _write_table(path, name, seed, n=6, epochs=10):
    rng = np.random.default_rng(seed)
    final = rng.uniform(0.5, 0.9, n)
    curve = final[:, None] * (1 - 0.6 * np.exp(-0.5 * np.arange(1, epochs + 1)))
    tables.save_curves(
        tables.CurveTable.from_arrays(np.clip(curve + rng.normal(0, 0.01, curve.shape), 0, 1), name),
        path,
    )


@pytest.mark.slow
def test_benchmark_commands_write_the_contract_fields(tmp_path, capsys):
    paths = []
    for i, name in enumerate(["a", "b", "c"]):
        paths.append(str(tmp_path / f"{name}.csv"))
        _write_table(paths[-1], name, i)
    cache = tmp_path / "priors"
    small = [
        "--prior-steps",
        "50",
        "--steps",
        "50",
        "--max-train-curves",
        "6",
        "--prior-cache",
        str(cache),
    ]
    out = tmp_path / "bench.json"
    assert (
        main(
            [
                "curves",
                "benchmark",
                "--train",
                *paths,
                "--test",
                paths[0],
                "--cutoffs",
                "0.2",
                "--finished",
                "4",
                "--json",
                str(out),
                *small,
            ]
        )
        == 0
    )
    record = json.loads(out.read_text())
    rows = record["results"]
    # leave one out: the target's prior was fitted on the other datasets only
    assert list(record["priors"]) == ["b + c"] and record["priors"]["b + c"]["datasets"] == ["b", "c"]
    assert len(record["meta"]["git_commit"]) == 40 and record["meta"]["config"]["finished"] == [4]
    printed = capsys.readouterr().out
    assert "MAE at cutoff 0.2" in printed and "LPD / cov90 at cutoff 0.2" in printed
    assert "{'" not in printed, "progress lines print readable text, not raw dicts"
    mae_line = next(line for line in printed.splitlines() if line.split()[:1] == ["a"])
    transfer = next(r for r in rows if r["method"] == "last_value")
    assert f"{transfer['mae']:.4f}" in mae_line
    # transfer_full: the full prior, next to transfer's strength chosen from the target
    # (where the curve model chooses one)
    full = {"transfer_full"} if has_strength() else set()
    # transfer_mix: the mixture of the better half of the strengths (combine="mix")
    mix = {"transfer_mix", "transfer_mix_unrecalibrated"} if has_mix() else set()
    assert {r["method"] for r in rows} == {
        "last_value",
        "pow3",
        "mmf",
        "svr",
        "no_transfer",
        "transfer",
        "transfer_uncalibrated",
        "transfer_unrecalibrated",
        "transfer_finished4",
        "transfer_auto_finished4",
    } | full | mix
    calibrated = {r["method"]: r["calibrated"] for r in rows if "calibrated" in r}
    assert calibrated == {
        "no_transfer": False,
        "transfer": True,
        "transfer_uncalibrated": False,
        "transfer_unrecalibrated": True,
        "transfer_finished4": True,
        "transfer_auto_finished4": True,
    } | {m: True for m in full | mix}
    # 4 of the 6 runs finished: scored on the other 2, next to transfer on the same 2
    within = next(r for r in rows if r["method"] == "transfer_finished4")
    assert within["finished"] == 4 and within["n_curves"] == 2
    assert {"paired_transfer_mae", "paired_transfer_lpd", "paired_transfer_cov90"} <= set(within)
    assert set(within["adapted_calibration"]) == {"log_a", "b", "c", "d"}
    # the same 2 runs with the strength chosen on the 4 finished ones
    auto = next(r for r in rows if r["method"] == "transfer_auto_finished4")
    assert auto["finished"] == 4 and auto["n_curves"] == 2 and auto["strength_rule"] == "finished"
    assert auto["strength"] in auto["strength_scores"] and auto["paired_transfer_mae"] == within["paired_transfer_mae"]
    rows = [r for r in rows if r is not within and r is not auto]
    saved = sorted(cache.iterdir())
    assert len(saved) == 1  # one left-out target, one prior
    for r in rows:
        assert {
            "dataset",
            "cutoff",
            "method",
            "n_curves",
            "mae",
            "lpd",
            "cov90",
            "sec_per_curve",
        } <= set(r)
        assert r["dataset"] == "a" and r["n_curves"] == 6 and r["mae"] >= 0
        assert (r["lpd"] is None) == (r["method"] in ("last_value", "pow3", "mmf", "svr"))
    out = tmp_path / "stop.json"
    assert (
        main(
            [
                "curves",
                "early-stop",
                "--train",
                *paths,
                "--test",
                paths[0],
                "--repeats",
                "2",
                "--json",
                str(out),
                *small,
            ]
        )
        == 0
    )
    record = json.loads(out.read_text())
    rows = record["results"]
    assert list(record["priors"]) == ["b + c"]
    assert record["meta"]["command"] == "nax curves early-stop" and "git_dirty" in record["meta"]
    printed = capsys.readouterr().out
    assert "epochs saved / regret (points) at delta 0.05" in printed
    assert printed.splitlines()[-1].split()[0] == "mean"
    assert {r["method"] for r in rows} == {
        "transfer",
        "transfer_adaptive",
        "transfer_uncalibrated",
        "no_transfer",
    }
    adaptive = next(r for r in rows if r["method"] == "transfer_adaptive")
    assert adaptive["adapt_fits"] >= 1 and adaptive["adapted_calibration_last_repeat"]["adapted"]["runs"] >= 1
    assert sorted(cache.iterdir()) == saved  # the early-stop command reused the prior
    assert json.loads(out.read_text())["priors"] == json.loads((tmp_path / "bench.json").read_text())["priors"]
    for r in rows:
        assert {
            "dataset",
            "threshold",
            "method",
            "epochs_saved",
            "regret",
            "n_curves",
        } <= set(r)
        assert 0 <= r["epochs_saved"] < 1 and r["regret"] >= 0


def test_benchmark_command_errors_are_one_line(tmp_path, capsys):
    assert (
        main(
            [
                "curves",
                "benchmark",
                "--train",
                str(tmp_path / "none.csv"),
                "--test",
                str(tmp_path / "none.csv"),
            ]
        )
        == 2
    )
    assert "no such curve table" in capsys.readouterr().err


def test_benchmark_finished_count_must_be_positive(tmp_path, capsys):
    path = str(tmp_path / "a.csv")
    _write_table(path, "a", 0)
    args = ["curves", "benchmark", "--train", path, "--test", path, "--finished", "0"]
    assert main(args) == 2
    assert "--finished counts finished runs" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["benchmark", "early-stop", "speed"])
def test_transfer_without_another_source_dataset_is_a_one_line_error(tmp_path, capsys, command):
    path = str(tmp_path / "a.csv")
    _write_table(path, "a", 0)
    assert main(["curves", command, "--train", path, "--test", path]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "transfer needs at least one source dataset other than the target" in err and "a has none" in err


def test_priors_of_every_benchmark_leave_their_target_out():
    """The benchmarks' priors (extrapolation and early stop share them) are fitted on
    every dataset but the target; the SVR baseline's training sets are the same."""
    tabs = {
        n: tables.CurveTable.from_arrays(np.linspace(0.3 + 0.1 * i, 0.8, 10)[None].repeat(4, 0), n)
        for i, n in enumerate("abc")
    }
    assert common.sources_for("a", tabs) == ("b", "c")
    assert common.sources_for("z", tabs) == ("a", "b", "c")
    priors = common.Priors(
        tabs,
        seed=0,
        max_curves=None,
        calibrate=False,
        log=lambda m: None,
        inference=InferenceConfig(num_steps=20, num_samples=10, lr=0.03),
    )
    for target in "abc":
        prior = priors.for_target(target)
        assert prior.info["datasets"] == [n for n in "abc" if n != target]
    assert priors.for_target("a") is priors.for_target("a")  # fitted once per set of sources
    common.require_sources(tabs, {"a": tabs["a"]})
    with pytest.raises(ValueError, match="transfer needs at least one source"):
        common.require_sources({"a": tabs["a"]}, {"a": tabs["a"]})


def test_printed_tables_have_a_column_per_method_and_a_row_per_dataset():
    from nax.curves.bench.report import early_stop_tables, extrapolation_tables

    rows = [
        {
            "dataset": d,
            "cutoff": 0.1,
            "epochs_observed": 2,
            "method": m,
            "mae": mae,
            "lpd": None if m == "last_value" else 1.5,
            "cov90": None if m == "last_value" else 0.9,
        }
        for d, m, mae in (("x", "last_value", 0.12345), ("x", "transfer", 0.05), ("y", "transfer", 0.07))
    ]
    text = extrapolation_tables(rows).splitlines()
    assert text[0] == "MAE at cutoff 0.1" and text[1].split() == ["dataset", "epochs", "last_value", "transfer"]
    assert text[3].split() == ["x", "2", "0.1235", "0.0500"] and text[4].split() == ["y", "2", "0.0700"]
    assert "1.50 / 0.90" in extrapolation_tables(rows)
    stop = [
        {"dataset": d, "threshold": 0.05, "method": "transfer", "epochs_saved": s, "regret": g}
        for d, s, g in (("x", 0.5, 0.01), ("y", 0.7, 0.03))
    ]
    text = early_stop_tables(stop).splitlines()
    assert text[-1].split() == ["mean", "0.600", "/", "2.00"]


@pytest.mark.slow
def test_speed_json_keeps_the_batched_rows_it_does_not_write(tmp_path):
    """curves_speed.json holds `nax curves speed`'s rows and the batched rows of
    `python -m nax.curves.bench.speed`: rewriting one must not delete the other."""
    a, b = str(tmp_path / "a.csv"), str(tmp_path / "b.csv")
    _write_table(a, "a", 0)
    _write_table(b, "b", 1)
    out = tmp_path / "speed.json"
    out.write_text(json.dumps({"batched": {"rows": [1, 2]}, "results": ["stale"]}))
    args = ["curves", "speed", "--train", a, b, "--test", b, "--curves", "4", "--nuts-curves", "--prior-steps", "20"]
    assert main([*args, "--json", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["batched"] == {"rows": [1, 2]}
    assert written["results"] != ["stale"] and written["meta"]["command"] == "nax curves speed"
