"""Curve model: recovery on simulated curves, transfer, reproducibility, save/load, bad input.

Curves are simulated from the model itself (known parameters), so the truths are exact.
One small prior is fitted per module; every prediction uses the same batch shape so the
jitted SVI program compiles once.
"""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from nax import curves, tables
from nax.curves import basis
from nax.curves.fitting import PRIOR_INFERENCE
from nax.curves.inference import InferenceConfig

T = 20  # epochs of full training
N = 8  # curves per prediction batch
STEPS = 400
INF = InferenceConfig(num_steps=STEPS, num_samples=200)
MU_POP = np.array([1.0, -1.0, 1.5, 0.3, -4.0, 0.0, 0.0, 0.0])
SIGMA = np.array([0.5, 0.3, 0.3, 0.2, 0.2, 0.3, 0.3, 0.3])


def simulate(seed, n, mu, *, sigma=SIGMA):
    """``n`` complete curves [n, T] from z ~ N(mu, diag(sigma^2)), plus their z and noiseless finals."""
    rng = np.random.default_rng(seed)
    z = mu + sigma * rng.normal(size=(n, len(mu)))
    t = np.arange(1, T + 1) / T
    mean = np.asarray(basis.curve_mean(jnp.asarray(z, jnp.float32), jnp.asarray(t, jnp.float32)[None]))
    noise = np.asarray(basis.noise_scale(jnp.asarray(z, jnp.float32)))[:, None]
    y = np.clip(mean + noise * rng.standard_t(5.0, size=mean.shape), 0.0, 1.0)
    return y, z, mean[:, -1]


def dataset_levels(seed, k, tau=0.15):
    return MU_POP + tau * np.random.default_rng(seed).normal(size=(k, len(MU_POP)))


def truncate(values, epochs):
    out = values.copy()
    out[:, epochs:] = np.nan
    return out


@pytest.fixture(scope="module")
def prior():
    levels = dataset_levels(1, 3)
    srcs = [tables.CurveTable.from_arrays(simulate(10 + g, 16, levels[g])[0], f"src{g}") for g in range(3)]
    return curves.fit_prior(srcs, inference=PRIOR_INFERENCE.replace(num_steps=800, num_samples=200), seed=0)


@pytest.fixture(scope="module")
def target():
    level = dataset_levels(2, 1)[0]
    values, _z, final = simulate(99, N, level)
    return values, final


def test_hierarchical_recovers_population_mean(prior):
    assert prior.info["diagnostics"]["ok"], prior.info["diagnostics"]
    assert prior.info["datasets"] == ["src0", "src1", "src2"]
    # the final value and the noise level are identified by complete curves
    assert abs(prior.mu_loc[basis.FINAL] - MU_POP[basis.FINAL]) < 0.4
    assert abs(prior.mu_loc[basis.LOG_NOISE] - MU_POP[basis.LOG_NOISE]) < 0.4
    # and the curve-level spread of the final value (true 0.5) is recovered roughly
    assert 0.25 < np.exp(prior.log_sigma_loc[basis.FINAL]) < 1.0


def test_no_transfer_recovers_curve_parameters():
    values, z, final = simulate(5, N, MU_POP)
    pred = curves.predict(None, values, horizon=T, inference=INF, seed=0)
    assert pred.ok, pred.diagnostics
    # the expected final value and the noise scale of each curve
    assert np.abs(pred.mean - final).max() < 0.04
    noise = np.exp(np.asarray(pred.z[..., basis.LOG_NOISE]).mean(0))
    true_noise = np.exp(z[:, basis.LOG_NOISE])
    assert np.all(np.abs(np.log(noise / true_noise)) < 0.9)


def test_transfer_beats_no_transfer_when_datasets_share_structure(prior, target):
    values, final = target
    seen = truncate(values, 2)  # 10% of training observed
    kw = {"horizon": T, "inference": INF, "seed": 0}
    with_prior = curves.predict(prior, seen, **kw)
    without = curves.predict(None, seen, **kw)
    mae_t, mae_n = (
        np.abs(with_prior.mean - final).mean(),
        np.abs(without.mean - final).mean(),
    )
    assert mae_t < mae_n, (mae_t, mae_n)
    assert with_prior.log_density(final).mean() > without.log_density(final).mean()
    lo, hi = with_prior.quantile([0.05, 0.95])
    assert np.mean((final >= lo) & (final <= hi)) >= 0.75


def test_context_curves_inform_the_target_level(prior, target):
    values, final = target
    seen = truncate(values, 2)
    kw = {"horizon": T, "inference": INF, "seed": 0}
    # 4 runs at 10% of training plus 4 finished runs of the same dataset as context
    # (8 curves in all, the shape of the other tests, so nothing recompiles)
    alone = curves.predict(prior, seen, **kw)
    informed = curves.predict(prior, seen[:4], context=values[4:], **kw)
    assert informed.samples.shape == (200, 4)
    err_alone = np.abs(alone.mean[:4] - final[:4]).mean()
    err_informed = np.abs(informed.mean - final[:4]).mean()
    assert err_informed <= err_alone + 0.01, (err_informed, err_alone)


def test_exact_rerun_from_seed(prior, target):
    seen = truncate(target[0], 4)
    kw = {"horizon": T, "inference": INF}
    a = curves.predict(prior, seen, seed=3, **kw)
    b = curves.predict(prior, seen, seed=3, **kw)
    c = curves.predict(prior, seen, seed=4, **kw)
    np.testing.assert_array_equal(a.samples, b.samples)
    assert not np.array_equal(a.samples, c.samples)


def test_predict_at_any_epoch_and_quantiles(prior, target):
    pred = curves.predict(
        prior,
        truncate(target[0], 4),
        horizon=T,
        inference=INF,
        seed=0,
    )
    at = pred.predict_at([5, 10, T])
    assert at.shape == (200, N, 3)
    np.testing.assert_allclose(at[..., -1], pred.samples, rtol=1e-6)
    q = pred.quantile([0.05, 0.5, 0.95])
    assert q.shape == (3, N) and np.all(q[0] <= q[1]) and np.all(q[1] <= q[2])


def test_prior_save_load_round_trip(prior, target, tmp_path):
    path = tmp_path / "prior.json"
    prior.save(path)
    back = curves.CurvePrior.load(path)
    for k in ("mu_loc", "mu_scale", "log_sigma_loc", "log_sigma_scale", "L"):
        np.testing.assert_array_equal(getattr(back, k), getattr(prior, k))
    assert back.families == prior.families and back.info == json.loads(json.dumps(prior.info))
    seen = truncate(target[0], 4)
    kw = {"horizon": T, "inference": INF, "seed": 0}
    np.testing.assert_array_equal(
        curves.predict(prior, seen, **kw).samples,
        curves.predict(back, seen, **kw).samples,
    )


def test_prior_from_another_version_is_refused(prior, tmp_path):
    d = prior.to_dict()
    d["version"] = 99
    path = tmp_path / "old.json"
    path.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="version 99"):
        curves.CurvePrior.load(path)
    (tmp_path / "junk.json").write_text("not json")
    with pytest.raises(ValueError, match="not a JSON curve prior"):
        curves.CurvePrior.load(tmp_path / "junk.json")
    d = prior.to_dict()
    d["format"] = "something else"
    (tmp_path / "other.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match="not a nax curve prior"):
        curves.CurvePrior.load(tmp_path / "other.json")


# ---- bad input -------------------------------------------------------------------------
def test_nan_inside_observed_part_is_an_error_unless_masked(prior, target):
    values = truncate(target[0], 6)
    values[0, 2] = np.nan
    mask = np.isfinite(target[0]) & (np.arange(T) < 6)
    with pytest.raises(ValueError, match="non-finite value at observed column 2"):
        curves.predict(prior, values, mask, horizon=T, inference=INF.replace(num_samples=400))
    # documented: without a mask, a gap inside a curve is an unobserved epoch
    pred = curves.predict(prior, values, horizon=T, inference=INF)
    assert np.isfinite(pred.samples).all()


def test_constant_and_decreasing_curves_give_finite_bounded_predictions(prior, target):
    values = truncate(target[0], 6)
    values[0, :6] = 0.1  # a network that never learns
    values[1, :6] = np.linspace(0.6, 0.4, 6)  # overfitting: validation accuracy falls
    pred = curves.predict(prior, values, horizon=T, inference=INF, seed=0)
    assert pred.ok and np.isfinite(pred.samples).all()
    # documented: a flat curve is predicted to stay near its level; the prior (curves
    # usually rise) leaves a little room above it, far below the population's typical 0.7
    assert 0.08 < np.median(pred.samples[:, 0]) < 0.25
    # documented: the expected curve is non-decreasing, so a falling curve is outside the
    # model; it is predicted around its level, pulled towards the prior's typical final
    # value (about 0.73 here), never extrapolated downwards
    assert 0.4 < np.median(pred.samples[:, 1]) < 0.8


def test_curve_longer_than_training_length_is_an_error(prior, target):
    with pytest.raises(ValueError, match="beyond its training length"):
        curves.predict(prior, target[0], horizon=T - 5, inference=INF.replace(num_samples=400))


def test_values_outside_unit_interval_are_an_error(prior, target):
    with pytest.raises(ValueError, match="divide by 100"):
        curves.predict(prior, truncate(target[0], 4) * 100, horizon=T)
    bad = truncate(target[0], 4)
    bad[0, 0] = -0.1
    with pytest.raises(ValueError, match="fractions in"):
        curves.predict(prior, bad, horizon=T)
    empty = truncate(target[0], 4)
    empty[3] = np.nan
    with pytest.raises(ValueError, match="no observed value"):
        curves.predict(prior, empty, horizon=T)


def test_losses_with_minimize(target):
    losses = -np.log(np.clip(truncate(target[0], 8), 1e-3, None))  # cross-entropy-like, falling
    pred = curves.predict(None, losses, horizon=T, minimize=True, inference=INF, seed=0)
    assert pred.minimize and np.isfinite(pred.samples).all() and (pred.samples > -0.5).all()
    truth = -np.log(target[0][:, -1])
    assert np.abs(pred.mean - truth).mean() < 0.5
    assert np.isfinite(pred.log_density(truth)).all()
    with pytest.raises(ValueError, match="non-negative"):
        curves.predict(None, -losses, horizon=T, minimize=True)


def test_single_curve_target_dataset(prior, target):
    pred = curves.predict(prior, truncate(target[0][:1], 4), horizon=T, inference=INF)
    assert pred.samples.shape == (200, 1) and pred.ok
    assert abs(pred.mean[0] - target[1][0]) < 0.2


@pytest.mark.slow
def test_nuts_records_convergence_diagnostics(prior, target):
    pred = curves.predict(
        prior,
        truncate(target[0][:1], 6),
        horizon=T,
        inference=InferenceConfig(method="nuts", num_samples=100, num_warmup=100),
        seed=0,
    )
    d = pred.diagnostics
    assert {"r_hat_max", "ess_min", "divergences", "ok", "problems"} <= set(d)
    assert np.isfinite(d["r_hat_max"]) and d["ess_min"] > 0
    assert d["ok"] == (not d["problems"])
    assert pred.samples.shape == (100, 1)
