"""Freeze-thaw's look-ahead calibration (:mod:`nax.search.ahead_calibration`): known-truth
coverage on simulated predictives, the pooling of sources and target, the steps, and the
strategy feeding resumed trials' outcomes back to its curve model."""

from __future__ import annotations

import jax
import mf_replay as rp
import numpy as np
import pytest
import scipy.stats

from nax import space as space_lib
from nax.search import ahead_calibration as ac
from nax.search import freeze_thaw as ft
from nax.search.multifidelity import TrialResult

SPACE = space_lib.nb201


def _overdispersed(rng, n, inflate, df=None, draws=400):
    """``n`` predictives whose draws are ``inflate`` times wider than the truth's spread
    (both around the same centre): truth N(mu, 1) or t(df), draws N(mu, inflate^2) or t."""
    mu = rng.normal(0.0, 5.0, n)
    noise = (lambda size: rng.standard_t(df, size)) if df else (lambda size: rng.normal(size=size))
    truth = mu + noise(n)
    d = mu[None] + inflate * noise((draws, n))
    return d, truth


def _coverage(draws, truth, level=0.9):
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return float(np.mean((truth >= lo) & (truth <= hi)))


@pytest.mark.parametrize("inflate,df", [(3.0, None), (0.4, None), (2.0, 5.0)])
def test_the_factor_restores_90_percent_coverage_on_fresh_predictives(inflate, df):
    rng = np.random.default_rng(0)
    d, y = _overdispersed(rng, 1500, inflate, df)
    k = ac.factor_from_ratios(ac.interval_ratios(d, y))
    # the truth's 90 % half-width is 1/inflate of the draws'
    assert k == pytest.approx(1.0 / inflate, rel=0.12)
    d2, y2 = _overdispersed(rng, 3000, inflate, df)
    before, after = _coverage(d2, y2), _coverage(ac.rescale(d2, k), y2)
    assert abs(after - 0.9) < 0.03
    assert (before > 0.97) if inflate > 1 else (before < 0.6)


def test_rescale_keeps_the_median_and_multiplies_the_spread():
    d = np.array([[0.0, 10.0], [1.0, 12.0], [2.0, 20.0]])
    out = ac.rescale(d, [0.5, 2.0])
    assert np.allclose(np.median(out, 0), np.median(d, 0))
    assert np.allclose(out[:, 0], [0.5, 1.0, 1.5]) and np.allclose(out[:, 1], [8.0, 12.0, 28.0])


def test_each_source_weighs_one_and_too_few_predictions_change_nothing():
    rng = np.random.default_rng(1)
    small = np.abs(rng.normal(0, 0.5, 200))  # an over-dispersed source (ratios small)
    large = np.abs(rng.normal(0, 2.0, 20))  # few predictions of an under-dispersed one
    cal = ac.from_ratios({0.25: [("a", small), ("b", large)]}, horizon=12)
    k_a, k_b = (ac.factor_from_ratios(x) for x in (small, large))
    # unweighted, 200 small ratios would swamp the 20 large ones; weighted, b's share is half
    assert ac.factor_from_ratios(np.r_[small, large]) < cal.factors[0] < k_b and cal.factors[0] > k_a
    step = cal.fit["steps"][0]
    assert step["predictions"] == 220 and step["prefix_epochs"] == 3
    assert step["coverage_after"] == pytest.approx(0.9, abs=0.03)
    assert set(step["coverage_loo"]) == {"a", "b"}
    assert ac.factor_from_ratios(small[: ac.MIN_RESIDUALS - 1]) == 1.0


def test_the_targets_own_ratios_take_over_the_sources():
    rng = np.random.default_rng(2)
    src = np.abs(rng.normal(0, 1.0, 120))  # sources: calibrated (factor ~1.64 / 1.64 = 1)
    cal = ac.from_ratios({0.25: [("s", src)], 0.5: [("s", src)]}, horizon=12)
    seen = cal.empty_seen()
    assert np.allclose(cal.factor([3, 6], 12, seen), cal.factors)
    for r in np.abs(rng.normal(0, 0.3, 300)):  # the target's predictive is 3x too wide at epoch 3
        seen = cal.observe(seen, 3, 12, r)
    assert len(seen[0]) == 300 and seen[1] == ()
    k3, k6 = cal.factor([3, 6], 12, seen)
    own = 0.3 * scipy.stats.norm.ppf(0.95)  # the target's own 90 % quantile of |N(0, 0.3)|
    # 300 of its predictions weigh ten times the sources' 30: much nearer its own than theirs
    assert own < k3 < own + 0.25 * (cal.factors[0] - own)
    assert k6 == cal.factors[1]  # another step is untouched
    assert cal.observe(seen, 3, 12, np.nan) == seen
    assert np.all(cal.factor([2, 4, 5, 7, 11], 12) == np.array(cal.factors)[[0, 0, 1, 1, 1]])


def test_steps_are_the_prefixes_a_search_predicts_from():
    assert ac.steps(12, 3) == [(3, 6), (6, 9), (9, 12)]
    assert ac.steps(52, 13) == [(13, 26), (26, 39), (39, 52)]
    assert ac.steps(20, 6) == [(6, 12), (12, 18), (18, 20)]
    with pytest.raises(ValueError, match="horizon >= 2"):
        ac.steps(1, 1)


class _Pred:
    def __init__(self, value, at, to):
        self.value, self.at, self.to, self.ok = value, at, to, True


def _observing_model(pool, noise=0.01):
    """An exact :class:`ft.CurveModel` (as in test_multifidelity) that records what each
    resumed trial showed against what was predicted for it."""
    by_prefix = {tuple(np.round(c[:k], 12)): c for c in pool.curves_PxT for k in range(1, pool.max_epochs + 1)}

    def fit(state, curves, epochs, seed):
        return [_Pred(by_prefix[tuple(np.round(c, 12))][e - 1], len(c), e) for c, e in zip(curves, epochs)]

    def improvement(state, fitted, best):
        z = (np.array([a.value for a in fitted]) - best) / noise
        return noise * (z * scipy.stats.norm.cdf(z) + scipy.stats.norm.pdf(z))

    def observe(state, a, value):
        return state + ((a.at, a.to, a.value, value),)

    return ft.CurveModel(lambda key: (), lambda s, completed, key: s, fit, improvement, observe)


def test_the_strategy_shows_the_curve_model_each_resumed_trials_outcome():
    n, H = 10, 12
    encs = SPACE.enumerate()[:: 15625 // n][:n]
    final = np.random.default_rng(0).permutation(n) / (2 * n) + 0.4
    pool = rp.CurvePool(encs, final[:, None] * (1 - 0.5 * np.exp(-np.arange(1, H + 1) / 3))[None, :], SPACE)
    st = ft.strategy(_observing_model(pool), H, delta=3, space=SPACE, candidates=pool.encs_PxE)
    s = st.init(jax.random.key(0))
    resumed = 0
    for k in range(30):
        job, s2 = st.ask(s, jax.random.key(k + 1))
        if job is None:
            break
        have = len(s.curves[job.trial]) if job.trial < len(s.curves) else 0
        resumed += have > 0
        s = st.tell(s2, [TrialResult(job.trial, tuple(pool.curve(job.enc)[: job.epochs]), "completed")])
    seen = s.model
    assert resumed > 0 and len(seen) == resumed  # every resumed trial, once
    # each outcome is the value at the epoch predicted, and the exact model predicted it
    assert all(to == min(at + 3, H) and pred == pytest.approx(got) for at, to, pred, got in seen)


def test_readme_calibrated_look_ahead_column_matches_its_json():
    """The README multi-fidelity table's last column comes from the committed third-version
    JSONs (`benchmarks/results/acceleration/mf_lookahead/`)."""
    import json
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[1]
    rows = [line for line in (root / "README.md").read_text().splitlines() if line.startswith("| ")]
    at = next(i for i, r in enumerate(rows) if "freeze-thaw, look-ahead calibrated" in r)
    header, rows = rows[at], rows[at + 1 : at + 4]  # this table's rows (other tables share labels)
    col = [c.strip() for c in header.strip("|").split("|")].index("freeze-thaw, look-ahead calibrated")
    for label, suite in (("nax meta-dataset", "metadata"), ("LCBench", "lcbench")):
        row = next(r for r in rows if r.startswith(f"| {label}"))
        cell = [c.strip() for c in row.strip("|").split("|")][col]
        speed, delta = (float(x.replace("−", "-")) for x in re.findall(r"[−+-]?\d+\.\d+", cell)[:2])
        path = root / "benchmarks" / "results" / "acceleration" / "mf_lookahead" / f"acceleration_mf_{suite}.json"
        (ft_row,) = [o for o in json.loads(path.read_text())["overall"] if o["variant"] == "freeze_thaw"]
        assert speed == pytest.approx(ft_row["speedup_epochs_ratio_of_means"], abs=0.005)
        assert delta == pytest.approx(ft_row["accuracy_diff_points"], abs=0.005)
