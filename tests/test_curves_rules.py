"""Basis families, baselines, the stopping rule, loading the real curve sets, the commands."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from nax import tables
from nax.cli import main
from nax.curves import baselines, basis, stopping
from nax.curves.predict import Prediction
from nax.curves.prior import observed_from_tables


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
    z = jnp.asarray(
        np.random.default_rng(1).normal(size=(50, basis.num_params())), jnp.float32
    )
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


def test_should_stop_compares_with_the_best_so_far():
    pred = _prediction(0.5)
    assert np.all(stopping.prob_better(pred, 0.6) < 0.01)
    assert stopping.should_stop(pred, 0.6).all()
    assert not stopping.should_stop(pred, 0.4).any()
    assert not stopping.should_stop(pred, -np.inf).any()
    # a failed inference never stops a run
    assert not stopping.should_stop(_prediction(0.5, ok=False), 0.6).any()


def test_early_stopping_rule_over_epochs():
    rule = stopping.early_stopping(
        None, horizon=10, min_epochs=3, num_steps=300, num_samples=200
    )
    state = rule.init()
    stop, state = rule.update([0.1, 0.1, 0.1, 0.1], state)
    assert not stop.any()  # nothing finished yet: no best to beat
    state = rule.tell(np.linspace(0.5, 0.9, 10), state)
    assert state.best == pytest.approx(0.9) and state.context.shape == (1, 10)
    stop, state = rule.update([[0.1, 0.1]], state)
    assert not stop.any()  # before min_epochs
    stop, state = rule.update(
        [[0.1, 0.1, 0.1, 0.1, 0.1], [0.7, 0.8, 0.88, 0.93, 0.95]], state
    )
    assert stop.tolist() == [True, False]
    stopped = rule.tell([0.1, 0.1, 0.1], state)  # a stopped run joins the context only
    assert stopped.best == state.best and stopped.context.shape == (2, 10)


def test_pow3_least_squares_recovers_a_pow3_curve():
    epochs = np.arange(1, 21)
    values = np.stack([0.9 - 0.5 * epochs**-0.7, 0.8 - 0.3 * epochs**-1.2])
    mask = np.repeat(epochs[None] <= 6, 2, 0)
    pred = baselines.pow3_least_squares(
        np.where(mask, values, np.nan), mask, epochs, 20
    )
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
    horizons = {
        obs.dataset_names[d]: set(obs.horizon[obs.dataset == d].tolist())
        for d in range(4)
    }
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
        tables.CurveTable.from_arrays(
            np.clip(curve + rng.normal(0, 0.01, curve.shape), 0, 1), name
        ),
        path,
    )


@pytest.mark.slow
def test_benchmark_commands_write_the_contract_fields(tmp_path):
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
    rows = json.loads(out.read_text())["results"]
    assert {r["method"] for r in rows} == {
        "last_value",
        "pow3",
        "svr",
        "no_transfer",
        "transfer",
        "transfer_uncalibrated",
        "transfer_finished4",
    }
    calibrated = {r["method"]: r["calibrated"] for r in rows if "calibrated" in r}
    assert calibrated == {
        "no_transfer": False,
        "transfer": True,
        "transfer_uncalibrated": False,
        "transfer_finished4": True,
    }
    # 4 of the 6 runs finished: scored on the other 2, next to transfer on the same 2
    within = next(r for r in rows if r["method"] == "transfer_finished4")
    assert within["finished"] == 4 and within["n_curves"] == 2
    assert {"paired_transfer_mae", "paired_transfer_lpd", "paired_transfer_cov90"} <= set(within)
    assert set(within["adapted_calibration"]) == {"log_a", "b", "c", "d"}
    rows = [r for r in rows if r is not within]
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
        assert (r["lpd"] is None) == (r["method"] in ("last_value", "pow3", "svr"))
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
    rows = json.loads(out.read_text())["results"]
    assert {r["method"] for r in rows} == {
        "transfer",
        "transfer_adaptive",
        "transfer_uncalibrated",
        "no_transfer",
    }
    adaptive = next(r for r in rows if r["method"] == "transfer_adaptive")
    assert adaptive["adapt_fits"] >= 1 and adaptive["adapted_calibration_last_repeat"]["adapted"]["runs"] >= 1
    assert sorted(cache.iterdir()) == saved  # the early-stop command reused the prior
    assert (
        json.loads(out.read_text())["priors"]
        == json.loads((tmp_path / "bench.json").read_text())["priors"]
    )
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
