"""Combining transfer strengths instead of choosing one (nax.curves.mixture, and
``combine="mix"`` of nax.curves.strength).

Known truths: a mixture of a prediction with itself is that prediction; the density of an
equal-weight mixture of two hand-made predictions is the average of their densities; the
better half of given scores; the admissible candidates without evidence; stubbed fits
(tests/test_curves_spread.py) for the end-to-end path, so no compile.
"""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from test_curves_model import MU_POP, T, simulate
from test_curves_spread import _hand, _stub_fits
from test_curves_strength import TINY, hand_prediction, population_prior

from nax.curves import inference as inference_lib
from nax.curves import strength
from nax.curves.bench import matrix
from nax.curves.mixture import MixturePrediction, without_spread
from nax.curves.predict import Query


def test_a_mixture_of_a_prediction_with_itself_is_that_prediction():
    pred = _hand()
    mix = MixturePrediction((pred, pred))
    np.testing.assert_array_equal(mix.samples, np.concatenate([pred.samples, pred.samples]))
    np.testing.assert_array_equal(mix.point, pred.point)  # the median of duplicated draws
    final = pred.point + 0.01
    np.testing.assert_allclose(mix.log_density(final), pred.log_density(final), rtol=1e-12)
    width = np.ptp(pred.quantile([0.05, 0.95]), axis=0)
    np.testing.assert_allclose(mix.quantile([0.05, 0.95]), pred.quantile([0.05, 0.95]), atol=0.01 * width.max())
    np.testing.assert_allclose(mix.mean, pred.mean)
    assert mix.ok and mix.calibrated and mix.spread is None and mix.horizon is pred.horizon
    assert mix.diagnostics == {"ok": True, "problems": []} and mix.seconds == 2 * pred.seconds
    assert mix.predict_at([5, T]).shape == (2 * pred.samples.shape[0], len(pred.horizon), 2)


def test_the_log_density_of_two_components_is_the_log_of_their_average_density():
    a = _hand()
    z = np.asarray(a.z) + np.array([-0.8, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])  # a lower final value
    b = dataclasses.replace(hand_prediction(z, minimize=False), t_obs=a.t_obs, y_last=a.y_last,
                            calibration=a.calibration)  # fmt: skip
    mix = MixturePrediction((a, b))
    v = np.linspace(*np.quantile(np.concatenate([a.samples, b.samples]), [0.1, 0.9]), len(a.horizon))
    by_hand = np.log(0.5 * np.exp(a.log_density(v)) + 0.5 * np.exp(b.log_density(v)))
    np.testing.assert_allclose(mix.log_density(v), by_hand, rtol=1e-9)
    assert np.abs(a.log_density(v) - b.log_density(v)).max() > 1.0  # the components differ


def test_the_spread_is_stripped_from_every_component_and_does_not_move_the_point():
    wide, plain = _hand(k=3.0), _hand()
    mix = MixturePrediction((wide, plain))
    assert mix.spread is not None and mix.without_spread().spread is None
    np.testing.assert_array_equal(mix.point, MixturePrediction((plain, plain)).point)
    np.testing.assert_array_equal(without_spread(mix).samples, MixturePrediction((plain, plain)).samples)
    assert without_spread(wide).spread is None and without_spread(plain) is plain
    with pytest.raises(ValueError, match="same number of draws"):
        _ = MixturePrediction((plain, dataclasses.replace(plain, z=plain.z[:10]))).samples


def test_the_better_half_keeps_the_best_scored_candidates_in_grid_order():
    grid = strength.FULL_GRID  # rho1, rho0.5, rho0, independent
    names = lambda cands: [c.name for c in cands]
    scores = {"rho1": 0.3, "rho0.5": 0.1, "rho0": 0.2, "independent": 0.4}
    assert names(strength.better_half(grid, scores)) == ["rho0.5", "rho0"]
    # 3 scored: ceil(3 / 2) = 2; a failed fit is not a candidate
    assert names(strength.better_half(grid, {**scores, "rho0": None})) == ["rho1", "rho0.5"]
    # ties broken by grid order
    tied = {"rho1": 0.2, "rho0.5": 0.1, "rho0": 0.2, "independent": 0.2}
    assert names(strength.better_half(grid, tied)) == ["rho1", "rho0.5"]
    assert names(strength.better_half(grid, {"rho1": None, "rho0.5": None, "rho0": 0.5})) == ["rho0"]
    assert strength.better_half(grid, {c.name: None for c in grid}) is None
    six = {c.name: float(i) for i, c in enumerate(strength.MIXED_GRID)}
    assert len(strength.better_half(strength.MIXED_GRID, six)) == 3


def test_without_evidence_every_candidate_on_the_model_or_query_scale_is_kept():
    q = Query(np.ones((2, T)), horizon=T)
    assert strength.fallback_mixture(strength.FULL_GRID, q) == strength.FULL_GRID
    model_scale = strength.fallback_mixture(strength.MIXED_GRID, q)
    assert [c.name for c in model_scale] == ["rho1", "rho0.5", "rho0", "independent"]
    # a query with its own dataset scale: every candidate predicts on it
    assert strength.fallback_mixture(strength.MIXED_GRID, q.replace(scale="dataset")) == strength.MIXED_GRID


def _stub(calls, sd=0.3):
    """tests/test_curves_spread.py's stubbed fits, with ``no_transfer`` ones too."""
    base = _stub_fits(calls, sd)

    def stub(model, args, in_axes, kwargs, config, *, seed=0):
        fits = base(model, args, in_axes, kwargs, config, seed=seed)
        if model != "no_transfer":
            return fits
        z = lambda f: jnp.asarray(MU_POP, jnp.float32) + f.latents["eps"]
        return [inference_lib.Fit(model, f.method, {"z": z(f)}, f.diagnostics, f.seconds) for f in fits]

    return stub


def test_mix_end_to_end_shares_the_scoring_fits_and_weights_its_components_equally(monkeypatch):
    calls = []
    monkeypatch.setattr(inference_lib, "fit_many", _stub(calls))
    queries = [Query(np.where(np.arange(T) < 6, simulate(s, 12, MU_POP)[0], np.nan), horizon=T) for s in range(3)]
    grid = (strength.RHO1, strength.RHO_HALF, strength.RHO0)  # one model: one program
    each = strength.predict_auto_each(population_prior(), queries, candidates=grid, inference=TINY, cut="half")
    # 3 queries x 3 candidates scored (3 chunks of 4), 3 chosen finals (1 chunk), 3 x 2 kept
    # (ceil(3 / 2)) finals (2 chunks); every check reuses its candidate's scoring fit
    assert len(calls) == 6 and len(set(calls)) == 1, calls
    calls.clear()  # the min_epochs cut (4 of 6 epochs; the spread check's 3): + 3 + 6 check fits, same program
    strength.predict_auto_each(population_prior(), queries, candidates=grid, inference=TINY, cut="min_epochs")
    assert len(calls) == 9 and len(set(calls)) == 1, calls
    calls.clear()
    for chosen, mix in zip(each["choose"], each["mix"]):
        record = mix.strength
        assert record["rule"] == "prequential" and len(record["kept"]) == 2 == len(mix.components)
        assert sum(record["weights"].values()) == pytest.approx(1.0)
        assert record["chosen"] == "mix(" + "+".join(record["kept"]) + ")"
        assert record["scores"] == chosen.strength["scores"]
        assert chosen.strength["chosen"] in record["kept"]  # the best is in the better half
        assert set(record["spread"]) == set(record["kept"]) and np.isfinite(mix.point).all()
        assert mix.samples.shape == (2 * TINY.num_samples, 12) and np.isfinite(mix.log_density(mix.point)).all()
    # no evidence (2 epochs seen): every candidate, one extra check fit each (one query:
    # chunks of 1; the independent candidate is another model, another program)
    calls.clear()
    short = [Query(np.where(np.arange(T) < 2, simulate(9, 12, MU_POP)[0], np.nan), horizon=T)]
    (mix,) = strength.predict_auto_many(population_prior(), short, inference=TINY, combine="mix")
    assert mix.strength["rule"] == "fallback" and mix.strength["kept"] == [c.name for c in strength.FULL_GRID]
    assert sum(mix.strength["weights"].values()) == pytest.approx(1.0) and len(calls) == 8
    with pytest.raises(ValueError, match="combine"):
        strength.predict_auto_many(population_prior(), short, inference=TINY, combine="vote")


def test_matrix_prints_the_mixture_next_to_the_chosen_strength(capsys, tmp_path):
    import json

    rows = []
    for fam, m, mae in [("f", "transfer", 0.2), ("f", "transfer_mix", 0.1), ("g", "transfer", 0.3),
                        ("g", "transfer_mix", 0.5)]:  # fmt: skip
        for base in ("last_value", "no_transfer", "svr", "pow3"):
            rows.append({"protocol": "loo", "family": fam, "dataset": "d", "cutoff": 0.1, "method": base, "mae": 0.25,
                         "lpd": 0.0, "cov90": 0.9, "sec_per_curve": 0.1})  # fmt: skip
        rows.append({"protocol": "loo", "family": fam, "dataset": "d", "cutoff": 0.1, "method": m, "mae": mae,
                     "lpd": 0.0, "cov90": 0.9, "sec_per_curve": 0.1})  # fmt: skip
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"results": rows}))
    matrix.main([str(path)])
    out = capsys.readouterr().out
    assert "mean over families of transfer_mix: 0.3000" in out and "mean over families of transfer: 0.2500" in out
    assert "transfer_mix cov90 / LPD" in out and "coverage of transfer_mix per family" in out
