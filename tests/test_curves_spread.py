"""The predictive's spread recalibrated on the target's own prefixes (nax.curves.spread).

Known truths: check draws and values from normal laws of known scales (the factor is their
ratio; the rescaled interval covers 90 % of fresh values); hand-made predictions (the
median and the point do not move, the rescaled density integrates to one and matches the
rescaled draws); simulated curves whose deviations from the model grow with time at a
known rate the prior's calibration under- or overstates (slow).
"""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from test_curves_model import MU_POP, T, simulate
from test_curves_strength import INF, TINY, hand_prediction, population_prior

from nax.curves import basis, spread, strength
from nax.curves import inference as inference_lib
from nax.curves.calibration import Calibration
from nax.curves.predict import Query


def _coverage_after_recalibration(model_sd, true_sd, *, n=30, reps=200, seed=0):
    """Mean coverage of fresh values by the 90 % interval rescaled on ``n`` check values,
    and the factors, when the model says N(0, model_sd) and the truth is N(0, true_sd)."""
    rng = np.random.default_rng(seed)
    covered, factors = [], []
    for _ in range(reps):
        draws = model_sd * rng.normal(size=(400, n))
        k, record = spread.factor(spread.normalised_errors(draws, true_sd * rng.normal(size=n)))
        assert record["rule"] == "conformal" and record["values"] == n
        fresh_draws = spread.rescale(model_sd * rng.normal(size=(400, n)), k)
        lo, hi = np.quantile(fresh_draws, [0.05, 0.95], axis=0)
        fresh = true_sd * rng.normal(size=n)
        covered.append(np.mean((fresh >= lo) & (fresh <= hi)))
        factors.append(k)
    return float(np.mean(covered)), np.array(factors)


@pytest.mark.parametrize("true_sd", [0.25, 1.0, 4.0])
def test_rescaled_interval_covers_ninety_percent_of_fresh_values(true_sd):
    # over-wide (0.25), right (1) and over-narrow (4) predictives: the factor is about the
    # ratio of scales, and the interval it gives covers ~90 % (conformal: at least 90 % in
    # expectation, a little more with 30 check values)
    cov, k = _coverage_after_recalibration(1.0, true_sd)
    assert 0.88 <= cov <= 0.95, cov
    assert np.median(k) == pytest.approx(true_sd, rel=0.2)


def test_over_wide_is_narrowed_and_over_narrow_widened_but_never_beyond_the_bounds():
    _, wide = _coverage_after_recalibration(1.0, 0.3, reps=20)
    _, narrow = _coverage_after_recalibration(1.0, 3.0, reps=20)
    assert (wide < 1).all() and (narrow > 1).all()
    rng = np.random.default_rng(1)
    huge, _ = spread.factor(spread.normalised_errors(rng.normal(size=(400, 20)), 1e3 * rng.normal(size=20)))
    tiny, _ = spread.factor(spread.normalised_errors(rng.normal(size=(400, 20)), 1e-4 * rng.normal(size=20)))
    assert (huge, tiny) == spread.FACTOR_BOUNDS[::-1]


def test_too_few_check_values_keep_the_sources_spread():
    rng = np.random.default_rng(2)
    draws = rng.normal(size=(400, spread.MIN_CHECK - 1))
    k, record = spread.factor(spread.normalised_errors(draws, 5 * rng.normal(size=spread.MIN_CHECK - 1)))
    assert k == 1.0 and record["rule"] == "fallback" and "check values" in record["reason"]
    assert spread.MIN_CHECK == 9  # the first n with ceil(0.9 (n + 1)) <= n
    # a check value where the check interval has no width on its side says nothing
    flat = np.zeros((400, 12))
    assert np.isnan(spread.normalised_errors(flat, np.ones(12))).all()
    assert spread.factor(spread.normalised_errors(flat, np.ones(12)))[0] == 1.0


def _hand(minimize=False, k=None, calibrated=True):
    n, s = 6, 400
    z = np.tile(MU_POP, (s, n, 1))
    z = z + 0.2 * np.random.default_rng(3).normal(size=z.shape)
    pred = hand_prediction(z, minimize=minimize)
    if calibrated:
        cal = Calibration(np.log(0.05), 1.0, 1.0)
        pred = dataclasses.replace(pred, t_obs=np.full(n, 0.3), y_last=np.full(n, 0.5), calibration=cal)
    return pred if k is None else dataclasses.replace(pred, spread=np.full(n, k))


@pytest.mark.parametrize("minimize", [False, True])
def test_rescaling_keeps_the_point_and_scales_the_interval(minimize):
    base, wide = _hand(minimize), _hand(minimize, k=3.0)
    np.testing.assert_array_equal(wide.point, base.point)
    # on the model scale the interval is exactly 3x as wide about the median
    y0 = base.model_draws(base.horizon[:, None])[..., 0]
    y3 = wide.model_draws(wide.horizon[:, None])[..., 0]
    w = lambda y: np.diff(np.quantile(y, [0.05, 0.95], axis=0), axis=0)[0]
    np.testing.assert_allclose(w(y3), 3 * w(y0), rtol=1e-9)
    np.testing.assert_allclose(np.median(y3, 0), np.median(y0, 0), atol=1e-12)
    if not minimize:
        np.testing.assert_allclose(np.median(wide.samples, 0), base.point, atol=1e-12)


@pytest.mark.parametrize("k", [0.4, 2.5])
def test_rescaled_log_density_is_a_density_of_the_rescaled_draws(k):
    # 600 curves with one and the same posterior: each evaluates one point of the grid
    n, s = 600, 400
    one = MU_POP + 0.2 * np.random.default_rng(4).normal(size=(s, 1, len(MU_POP)))
    pred = hand_prediction(np.broadcast_to(one, (s, n, len(MU_POP))).copy(), minimize=False)
    cal = Calibration(np.log(0.05), 1.0, 1.0)
    pred = dataclasses.replace(pred, t_obs=np.full(n, 0.3), y_last=np.full(n, 0.5), calibration=cal)
    pred = dataclasses.replace(pred, spread=np.full(n, k))
    draws = pred.samples.ravel()
    grid = np.linspace(*np.quantile(draws, [0.0005, 0.9995]), n)
    dens = np.exp(pred.log_density(grid))
    assert np.trapezoid(dens, grid) == pytest.approx(1.0, abs=0.02)
    # its 5 / 95 % quantiles are those of the rescaled draws
    cdf = np.cumsum(dens) * (grid[1] - grid[0])
    for q in (0.05, 0.95):
        assert grid[np.searchsorted(cdf, q)] == pytest.approx(np.quantile(draws, q), abs=0.03 * k)


def _stub_fits(calls, spread_of_draws=0.0):
    def stub(model, args, in_axes, kwargs, config, *, seed=0):
        calls.append((model, tuple(a.shape for a in args[:3])))
        g, n = args[0].shape[:2]
        d, s = basis.num_params(kwargs["families"]), config.num_samples
        eps = spread_of_draws * np.random.default_rng(len(calls)).normal(size=(s, n, d))
        latents = {"mu_t": jnp.zeros((s, d)), "sigma": jnp.ones((s, d)), "eps": jnp.asarray(eps, jnp.float32)}
        return [inference_lib.Fit(model, "svi", latents, {"ok": True, "problems": []}, 0.0) for _ in range(g)]

    return stub


def test_short_prefixes_get_one_check_fit_in_the_programs_the_choice_already_runs(monkeypatch):
    # 2 of 20 epochs seen: no strength can be scored (fallback), but each curve's first
    # epoch can predict its second: one more fit per query, same shape as the final ones
    calls = []
    monkeypatch.setattr(inference_lib, "fit_many", _stub_fits(calls, 0.3))
    queries = [Query(np.where(np.arange(T) < 2, simulate(s, 12, MU_POP)[0], np.nan), horizon=T) for s in range(3)]
    preds = strength.predict_auto_many(population_prior(), queries, inference=TINY)
    assert len(calls) == 2 and len(set(calls)) == 1, calls  # the final chunk, then the check chunk
    for pred in preds:
        record = pred.strength["spread"]
        assert pred.strength["rule"] == "fallback" and record["check"] == "prequential"
        assert record["values"] == 12 and record["rule"] == "conformal"
        assert (pred.spread == record["factor"]).all() if record["factor"] != 1.0 else pred.spread is None
    # one epoch seen: nothing to check, the sources' spread stays
    calls.clear()
    one = [Query(np.where(np.arange(T) < 1, simulate(7, 12, MU_POP)[0], np.nan), horizon=T)]
    (pred,) = strength.predict_auto_many(population_prior(), one, inference=TINY)
    assert len(calls) == 1 and pred.spread is None and pred.strength["spread"]["rule"] == "fallback"
    (plain,) = strength.predict_auto_many(population_prior(), queries[:1], inference=TINY, recalibrate=False)
    assert plain.spread is None and "spread" not in plain.strength


@pytest.mark.slow
@pytest.mark.parametrize("stated", [0.2, 5.0])
def test_recalibration_corrects_a_calibration_that_misstates_the_extrapolation_noise(stated):
    # curves of the population plus a random walk (sd 0.03 per epoch, so sqrt(gap) growth)
    # the model does not have; the prior's calibration states it `stated` times too large
    # or too small (b = 1/2, c = 0, the right law). The recalibrated 90 % interval of the final
    # values covers ~90 %; before, far less (too narrow) or nearly all (too wide)
    rng = np.random.default_rng(11)
    step = 0.03
    true_a = step * np.sqrt(T)  # sd of the walk over the whole run, in units of normalised time
    prior = population_prior()
    prior = dataclasses.replace(prior, calibration=Calibration(np.log(stated * true_a), 0.5, 0.0))
    queries, finals = [], []
    for s in range(4):
        y = simulate(100 + s, 24, MU_POP)[0] + np.cumsum(step * rng.normal(size=(24, T)), axis=1)
        queries.append(Query(np.where(np.arange(T) < 8, y, np.nan), horizon=T))
        finals.append(y[:, -1])
    preds = strength.predict_auto_many(prior, queries, candidates=(strength.RHO1,), inference=INF)
    before, after = [], []
    for pred, final in zip(preds, finals):
        lo, hi = pred.quantile([0.05, 0.95])
        after.append(np.mean((final >= lo) & (final <= hi)))
        raw = dataclasses.replace(pred, spread=None)
        lo, hi = raw.quantile([0.05, 0.95])
        before.append(np.mean((final >= lo) & (final <= hi)))
        assert np.allclose(pred.point, raw.point)
    before, after = float(np.mean(before)), float(np.mean(after))
    assert abs(after - 0.9) < abs(before - 0.9), (before, after)
    assert 0.8 <= after <= 0.98, (before, after)


def test_matrix_reports_coverage_per_family_before_and_after_recalibration():
    from nax.curves.bench import matrix

    row = lambda ds, c, m, cov, lpd: {"protocol": "loo", "family": "f", "dataset": ds, "cutoff": c, "method": m,
                                      "cov90": cov, "lpd": lpd}  # fmt: skip
    rows = [row(d, c, "no_transfer", 0.5, 0.0) for d in "ab" for c in (0.1, 0.5)]
    rows += [row(d, c, "transfer", 0.9 if c == 0.1 else 0.7, 1.0) for d in "ab" for c in (0.1, 0.5)]
    rows += [row(d, c, "transfer_unrecalibrated", 0.6, -1.0) for d in "ab" for c in (0.1, 0.5)]
    assert matrix.coverage_means(rows, "loo") == {"f": pytest.approx(0.8)}
    assert matrix.coverage_means(rows, "loo", "transfer_unrecalibrated") == {"f": pytest.approx(0.6)}
    assert matrix.lpd_share(rows, "loo") == {"f": (2, 2)}  # only cutoffs <= 20 %
    assert matrix.lpd_share(rows, "loo", method="transfer_unrecalibrated") == {"f": (0, 2)}
    assert "transfer_unrecalibrated cov90 / LPD" in matrix.calibration_table(rows, "loo")
