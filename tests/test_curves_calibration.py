"""Extrapolation-noise calibration: recovery of known noise, coverage, prior format.

The predictive draws and truths are simulated with a known extrapolation noise, so the
truths are exact; the prediction tests use a hand-made prior (no prior fit) and one batch
shape, so the SVI program compiles once.
"""

import dataclasses
import json
import warnings

import jax
import numpy as np
import pytest

from nax import curves, tables
from nax.curves import calibration
from nax.curves.fitting import CALIBRATION_INFERENCE
from nax.curves.inference import InferenceConfig
from nax.curves.stopping import FinalDraws, stop_rule

T, N, STEPS = 20, 8, 300
TRUE = calibration.Calibration(np.log(0.12), 1.5, 1.0)
INF = InferenceConfig(num_steps=STEPS, num_samples=200)


def simulated_predictive(seed, n=1500, s_draws=64):
    """Predictive draws (m, s) [S, n] of an uncalibrated model and truths y [n] that carry
    the extrapolation noise ``TRUE`` on top, with their gap and headroom [n]."""
    rng = np.random.default_rng(seed)
    gap = rng.uniform(0.1, 0.9, n)
    head = rng.uniform(0.1, 0.8, n)
    centre = rng.uniform(0.3, 0.9, n)
    post = 0.01  # posterior spread of the expected final value
    m = centre + post * rng.normal(size=(s_draws, n))
    s = np.full((s_draws, n), 0.005)
    e = calibration.ext_scale(TRUE, gap, head)
    y = centre + post * rng.normal(size=n) + 0.005 * rng.standard_t(5.0, n) + e * rng.standard_t(5.0, n)
    return m, s, y, gap, head


def coverage(params, m, s, y, gap, head, seed=0):
    rng = np.random.default_rng(seed)
    e = calibration.ext_scale(params, gap, head)
    draws = m + s * rng.standard_t(5.0, m.shape) + e * rng.standard_t(5.0, m.shape)
    lo, hi = np.quantile(draws, [0.05, 0.95], axis=0)
    return float(np.mean((y >= lo) & (y <= hi)))


@pytest.mark.slow
def test_fit_recovers_known_extrapolation_noise_and_calibrates():
    m, s, y, gap, head = simulated_predictive(0)
    params, nll = calibration.fit_params(m, s, y, gap, head, np.full(len(y), 1 / len(y)))
    assert np.isfinite(nll)
    assert abs(np.exp(params.log_a) - 0.12) < 0.03
    assert abs(params.b - 1.5) < 0.35 and abs(params.c - 1.0) < 0.35
    # fresh curves from the same process: the calibrated 90% interval covers ~90%
    fresh = simulated_predictive(1)
    assert 0.86 <= coverage(params, *fresh) <= 0.94
    # the uncalibrated predictive is badly over-confident on the same curves
    assert coverage(calibration.Calibration(-30.0, 1.0, 0.0), *fresh) < 0.7


def test_no_extrapolation_noise_at_observed_epochs_whatever_the_exponent():
    for b in (0.0, 1.5):
        cal = TRUE._replace(b=b)
        e = calibration.ext_scale(cal, np.array([-0.2, 0.0, 0.3, 0.6]), 0.5)
        assert e[0] == 0.0 and e[1] == 0.0 and 0 < e[2] <= e[3]


def test_log_density_matches_monte_carlo():
    m, s, y, gap, head = simulated_predictive(2, n=6, s_draws=32)
    exact = calibration.log_density(TRUE, m, s, y, gap, head, nodes=24)
    rng = np.random.default_rng(0)
    e = calibration.ext_scale(TRUE, gap, head)
    # p(y) = E[t5 density of y - m - e * t] over draws and the extrapolation term
    k = 20000
    ext = e * rng.standard_t(5.0, (k, 1, len(y)))
    from scipy.stats import t as student_t

    mc = np.log(student_t.pdf(y - m[None] - ext, 5.0, scale=s[None]).mean(axis=(0, 1)))
    np.testing.assert_allclose(exact, mc, atol=0.05)


def hand_prior(calib=None):
    mu = np.array([1.0, -1.0, 1.5, 0.3, -4.0, 0.0, 0.0, 0.0])
    return curves.CurvePrior(
        families=curves.basis.DEFAULT_FAMILIES,
        mu_loc=mu,
        mu_scale=np.full(8, 0.3),
        log_sigma_loc=np.log(np.full(8, 0.3)),
        log_sigma_scale=np.full(8, 0.25),
        L=np.eye(8),
        calibration=calib,
    )


@pytest.fixture(scope="module")
def partial():
    rng = np.random.default_rng(3)
    t = np.arange(1, T + 1)
    values = np.clip(0.8 - 0.5 * t[None] ** -0.7 * rng.uniform(0.8, 1.2, (N, 1)), 0, 1) + 0.005 * rng.normal(
        size=(N, T)
    )
    values[:, 5:] = np.nan
    return values


@pytest.mark.slow
def test_calibrated_prediction_widens_only_the_unobserved_part(partial):
    kw = {"horizon": T, "inference": INF, "seed": 0}
    cal = curves.predict(hand_prior(TRUE), partial, **kw)
    raw = curves.predict(hand_prior(None), partial, **kw)
    assert cal.calibrated and not raw.calibrated
    np.testing.assert_allclose(cal.t_obs, 5 / T)
    np.testing.assert_allclose(cal.y_last, partial[:, 4], rtol=1e-6)
    # same posterior, same mean; wider final-value predictive
    np.testing.assert_allclose(cal.mean, raw.mean, rtol=1e-6)
    assert np.all(cal.std > raw.std)
    # at observed epochs there is nothing to extrapolate
    np.testing.assert_array_equal(cal.predict_at([3, 5]), raw.predict_at([3, 5]))
    later = cal.predict_at([10, 20]).std(0) - raw.predict_at([10, 20]).std(0)
    assert np.all(later[:, 1] > later[:, 0])  # more noise further from the prefix
    # a final value far from the plateau is much more plausible once calibrated
    far = raw.mean + 0.15
    assert np.all(cal.log_density(far) > raw.log_density(far) + 0.5)
    assert np.all(np.isfinite(cal.log_density(raw.mean)))
    # stopping: a calibrated prediction is less sure a run cannot beat a nearby best
    best = raw.mean + 0.05
    rule = stop_rule(hand_prior(TRUE), T)
    judged = [rule.judge(rule.init(jax.random.key(0)), FinalDraws.from_prediction(p), best) for p in (cal, raw)]
    assert np.all(judged[0].prob_better >= judged[1].prob_better)
    # the rule's point prediction is the predictive mean
    np.testing.assert_allclose(judged[0].predicted_final, cal.mean, rtol=1e-12)


def test_prior_round_trip_keeps_calibration(tmp_path):
    prior = hand_prior(TRUE._replace(fit={"cutoffs": [0.1, 0.5]}))
    prior.save(tmp_path / "p.json")
    back = curves.CurvePrior.load(tmp_path / "p.json")
    assert isinstance(back.calibration, calibration.Calibration)
    assert back.calibration == prior.calibration
    assert json.loads((tmp_path / "p.json").read_text())["version"] == 2


def test_version_1_prior_loads_uncalibrated_with_a_warning(tmp_path):
    d = hand_prior(None).to_dict()
    d["version"] = 1
    d.pop("calibration")
    (tmp_path / "v1.json").write_text(json.dumps(d))
    with pytest.warns(UserWarning, match="no extrapolation-noise calibration"):
        back = curves.CurvePrior.load(tmp_path / "v1.json")
    assert back.calibration is None
    # a version-2 file with a malformed calibration is refused
    d = hand_prior(None).to_dict()
    d["calibration"] = {"kind": "something"}
    (tmp_path / "bad.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match="calibration"):
        curves.CurvePrior.load(tmp_path / "bad.json")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        curves.CurvePrior.load(_saved(tmp_path, hand_prior(TRUE)))


def _saved(tmp_path, prior):
    path = tmp_path / "v2.json"
    prior.save(path)
    return path


def test_fit_prior_calibrates_on_sources_only():
    """``calibrate_prior`` fits the noise on the sources it is given and records them."""
    rng = np.random.default_rng(0)
    t = np.arange(1, T + 1)

    def source(name, jump):
        # plateau, then a step (learning-rate drop) at 70% of training: the smooth model
        # cannot see it in a prefix, so the calibration must widen the predictive
        base = 0.5 + 0.1 * rng.uniform(size=(N, 1)) - 0.2 * t[None] ** -1.0
        vals = base + jump * (t[None] > 0.7 * T) + 0.003 * rng.normal(size=(N, T))
        return tables.CurveTable.from_arrays(np.clip(vals, 0, 1), name)

    srcs = [source("a", 0.15), source("b", 0.2)]
    prior = curves.calibrate_prior(hand_prior(None), srcs, inference=CALIBRATION_INFERENCE.replace(num_steps=STEPS))
    cal = prior.calibration
    assert cal.fit["datasets"] == ["a", "b"]
    assert np.exp(cal.log_a) > 0.02  # the jumps are seen as extrapolation noise
    cov = cal.fit["source_coverage"]
    early = [c for c in cov if c["cutoff"] < 0.7]
    assert np.mean([c["cov90_after"] for c in early]) > np.mean([c["cov90_before"] for c in early])
    assert dataclasses.replace(prior, calibration=None).calibration is None


def test_calibration_on_losses_stays_in_loss_units():
    """``minimize``: the noise lives on the model scale exp(-loss); draws, densities and
    the recorded source coverage are in loss units and finite."""
    rng = np.random.default_rng(1)
    t = np.arange(1, T + 1)
    acc = 0.5 + 0.1 * rng.uniform(size=(N, 1)) - 0.3 * t[None] ** -0.8
    acc = acc + 0.15 * (t[None] > 0.7 * T) + 0.003 * rng.normal(size=(N, T))
    losses = -np.log(np.clip(acc, 1e-3, 1.0))
    src = tables.CurveTable.from_arrays(losses, "a", minimize=True)
    prior = dataclasses.replace(hand_prior(None), minimize=True)
    prior = curves.calibrate_prior(prior, [src], inference=CALIBRATION_INFERENCE.replace(num_steps=STEPS))
    assert prior.calibration is not None and np.isfinite(prior.calibration.log_a)
    seen = losses.copy()
    seen[:, 6:] = np.nan
    kw = {"horizon": T, "inference": INF, "seed": 0}
    pred = curves.predict(prior, seen, **kw)
    assert pred.minimize and pred.calibrated
    assert np.isfinite(pred.samples).all() and (pred.samples >= 0).all()
    assert np.isfinite(pred.log_density(losses[:, -1])).all()
    raw = dataclasses.replace(pred, calibration=None)
    assert np.all(pred.std >= raw.std)


#: a prior as nax wrote it before the calibration was typed (untyped calibration dict,
#: then an adapted one with its location and provenance): such files must still load
OLD_CALIBRATIONS = [
    {
        "kind": "extrapolation_noise",
        "log_a": -1.84,
        "b": 0.86,
        "c": 1.44,
        "df": 5.0,
        "fit": {"cutoffs": [0.1, 0.2, 0.35, 0.6], "datasets": ["a", "b"], "mean_nll": -1.2},
    },
    {
        "kind": "extrapolation_noise",
        "log_a": -1.2,
        "b": 0.5,
        "c": 2.0,
        "df": 5.0,
        "d": 0.7,
        "adapted": {
            "runs": 4,
            "predictions": 12,
            "scale": [1.0, 1.0, 1.0, 2.0],
            "source": {"log_a": -1.84, "b": 0.86, "c": 1.44, "d": 0.0},
        },
    },
    {"kind": "extrapolation_noise", "log_a": -2.0, "b": 1.0, "c": 1.0},
]


@pytest.mark.parametrize("old", OLD_CALIBRATIONS)
def test_priors_written_with_an_untyped_calibration_still_load(tmp_path, old):
    d = hand_prior(None).to_dict()
    d["calibration"] = old
    path = tmp_path / "old.json"
    path.write_text(json.dumps(d))
    back = curves.CurvePrior.load(path)
    cal = back.calibration
    assert (cal.log_a, cal.b, cal.c) == (old["log_a"], old["b"], old["c"])
    assert cal.d == old.get("d", 0.0) and cal.df == 5.0
    assert cal.fit == old.get("fit") and cal.adapted == old.get("adapted")
    if "adapted" in old:  # adapting again starts from the sources' values it records
        assert cal.source == calibration.Calibration(-1.84, 0.86, 1.44)
    # written back, it is the same record
    assert cal.to_dict() == {**old, "df": 5.0}
