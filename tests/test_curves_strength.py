"""Transfer strength, scale-free transfer, the point estimate and batched prediction.

Known truths: a prior built from the simulating population itself (so "the sources'
population" is exact), curves simulated from the model (tests/test_curves_model.py), and
hand-made predictive draws whose median and mean are known to differ.
"""

import jax.numpy as jnp
import numpy as np
import pytest
from test_curves_model import MU_POP, SIGMA, T, simulate

from nax import tables
from nax.curves import basis, strength
from nax.curves import inference as inference_lib
from nax.curves.fitting import observed_from_tables
from nax.curves.inference import InferenceConfig
from nax.curves.observations import DatasetScale, DirectionMismatch, dataset_scale
from nax.curves.predict import Prediction, Query, predict, predict_many
from nax.curves.prior import LEVEL, CurvePrior

D = basis.num_params()
INF = InferenceConfig(num_steps=400, num_samples=200)
#: enough to exercise the batching, not to fit
TINY = InferenceConfig(num_steps=20, num_samples=20)
#: a target unlike the sources: lower final value, later start, slower and more curved
SHIFT = np.array([-2.5, 1.0, -1.5, 0.8, 0.0, 0.0, 0.0, 0.0])


def population_prior(spread=0.15) -> CurvePrior:
    """The exact population of :func:`simulate` as a transfer prior."""
    return CurvePrior(
        families=basis.DEFAULT_FAMILIES,
        mu_loc=MU_POP.copy(),
        mu_scale=np.full(D, spread),
        log_sigma_loc=np.log(SIGMA),
        log_sigma_scale=np.full(D, 0.25),
        L=np.eye(D),
    )


def hand_prediction(z, *, minimize, scale=None, horizon=T) -> Prediction:
    z = jnp.asarray(z, jnp.float32)
    return Prediction(
        z=z,
        horizon=np.full(z.shape[1], horizon),
        families=basis.DEFAULT_FAMILIES,
        minimize=minimize,
        seed=0,
        model="transfer",
        method="svi",
        diagnostics={"ok": True, "problems": []},
        seconds=0.0,
        scale=scale,
    )


def test_at_strength_loosens_the_population_and_zero_pools_within_target():
    prior = population_prior()
    assert prior.at_strength(1.0) is prior
    half = prior.at_strength(0.5)
    np.testing.assert_allclose(half.mu_scale, 2 * prior.mu_scale)
    np.testing.assert_allclose(half.log_sigma_scale, 2 * prior.log_sigma_scale)
    np.testing.assert_allclose(half.mu_loc, prior.mu_loc)
    zero = prior.at_strength(0.0)
    np.testing.assert_allclose(zero.L, np.eye(D))
    assert (zero.mu_scale >= 1.0).all() and zero.info["strength"] == {"rho": 0.0, "scope": "full"}
    shape = prior.at_strength(1.0, "shape")
    level, rest = list(LEVEL), [i for i in range(D) if i not in LEVEL]
    np.testing.assert_allclose(shape.mu_loc[rest], prior.mu_loc[rest])  # the shape transfers
    np.testing.assert_allclose(shape.mu_loc[level], zero.mu_loc[level])  # the level does not
    assert (shape.mu_scale[level] >= 1.0).all()
    with pytest.raises(ValueError, match="rho"):
        prior.at_strength(1.5)
    with pytest.raises(ValueError, match="scope"):
        prior.at_strength(0.5, "level")


def test_point_is_the_median_when_clipping_and_heavy_tails_pull_the_mean():
    # exp(-loss) near its bound 1 with heavy-tailed noise: draws above 1 are clipped (loss
    # 0), the others have a long tail of large losses, so the mean of the losses is pulled
    # up; true final values drawn from the same predictive are best met by the median
    rng = np.random.default_rng(0)
    n, s = 20, 400
    z = np.tile(MU_POP, (s, n, 1))
    z[..., basis.FINAL] = 3.0  # expected exp(-loss) at the end: 0.95
    z[..., basis.LOG_NOISE] = np.log(0.15)
    pred = hand_prediction(z, minimize=True)
    np.testing.assert_allclose(pred.point, np.median(pred.samples, axis=0))
    y = 1 / (1 + np.exp(-3.0)) + 0.15 * rng.standard_t(5.0, size=(5000, n))
    truth = -np.log(np.clip(y, 1e-12, 1.0))
    mae = lambda p: np.mean(np.abs(truth - p[None]))
    assert np.mean(pred.mean) > 2 * np.mean(pred.point)  # the tail pulls the mean far above the median
    assert mae(pred.point) < 0.95 * mae(pred.mean)


def test_dataset_scale_maps_any_metric_and_keeps_direction():
    rng = np.random.default_rng(1)
    loss = 4.0 - np.cumsum(rng.uniform(0.1, 0.5, size=(6, 8)), axis=1)  # perplexity-like, falls, < 0 late
    scale = dataset_scale(loss, minimize=True)
    y = scale.to_model(loss)
    assert scale.best < scale.start and np.all(np.diff(y, axis=1) > 0)  # lower loss = higher on the model scale
    assert y.min() > 0.0 and y.max() <= 0.5 + 1e-12
    np.testing.assert_allclose(scale.from_model(y), loss)
    flat = dataset_scale(np.full((3, 4), 2.0), minimize=False)
    assert flat.best > flat.start  # a constant dataset still gets a usable span


def test_point_is_equivariant_under_an_affine_change_of_metric():
    # the same model-scale draws on two affinely related metrics (a > 0; a < 0 flips the
    # direction): the dataset scales absorb the map, so the point predictions follow it
    rng = np.random.default_rng(2)
    values = 0.3 + np.cumsum(rng.uniform(0.0, 0.05, size=(5, 6)), axis=1)
    z = np.tile(MU_POP, (100, 5, 1)) + 0.1 * rng.normal(size=(100, 5, D))
    base = hand_prediction(z, minimize=False, scale=dataset_scale(values, minimize=False))
    for a, b, minimize in ((10.0, 3.0, False), (-2.0, 1.0, True)):
        other = hand_prediction(z, minimize=minimize, scale=dataset_scale(a * values + b, minimize=minimize))
        np.testing.assert_allclose(other.point, a * base.point + b, rtol=1e-9, atol=1e-9)


def test_mixed_directions_are_an_error_naming_the_sources_unless_declared():
    acc = tables.CurveTable.from_arrays(simulate(1, 4, MU_POP)[0], "acc_src")
    loss = tables.CurveTable.from_arrays(1.0 - simulate(2, 4, MU_POP)[0], "loss_src", minimize=True)
    with pytest.raises(DirectionMismatch, match="loss_src") as err:
        observed_from_tables([acc, loss])
    assert "loss_src" in " ".join(err.value.sources) or "acc_src" in " ".join(err.value.sources)
    obs = observed_from_tables([acc, loss], allow_mixed=True)
    assert not obs.minimize and obs.y.max() <= 1.0 and len(obs.dataset_names) == 2


def test_default_grid_offers_both_scales_to_a_target_of_another_direction():
    prior = population_prior()
    grid, q = strength.default_grid(prior, Query(np.ones((2, 3)), minimize=False))
    assert grid == strength.FULL_GRID and q.scale is None and q.minimize is False
    # another direction: the full grid on the model scale and the shape-only candidates on
    # the target's dataset scale; with no evidence the full prior on the model scale
    grid, q = strength.default_grid(prior, Query(np.ones((2, 3)), minimize=True))
    assert grid == strength.MIXED_GRID and q.scale is None and q.minimize is True
    assert strength.fallback(grid) is strength.RHO1
    shapes = [c for c in grid if c.scope == "shape"]
    assert len(shapes) == 2 and all(c.query(q).scale == "dataset" for c in shapes)
    assert all(c.query(q) is q for c in grid if c.scope != "shape")
    # a dataset scale given explicitly: every candidate on it, shape only
    grid, q = strength.default_grid(prior, Query(np.ones((2, 3)), minimize=True, scale="dataset"))
    assert grid == strength.SHAPE_GRID and all(c.query(q).scale == "dataset" for c in grid)


def test_scoring_task_holds_out_the_second_half_of_each_prefix():
    values, _, _ = simulate(3, 4, MU_POP)
    cut = values.copy()
    cut[:2, 8:] = np.nan  # two curves seen 8 epochs, two 3 (too short to be judged)
    cut[2:, 3:] = np.nan
    fit, rows, epochs, truth, rule = strength.scoring_task(Query(cut, horizon=T))
    assert rule == "prequential" and rows.tolist() == [0, 1]
    np.testing.assert_array_equal(epochs, [8, 8])
    np.testing.assert_allclose(truth, values[:2, 7])
    seen = np.isfinite(fit.values).sum(axis=1)
    assert seen.tolist() == [4, 4, 1, 1] and np.isnan(fit.values[:, 4:]).all()
    assert strength.scoring_task(Query(cut[2:], horizon=T)) is None  # nothing long enough: fallback


def test_scoring_task_uses_the_targets_finished_runs_when_there_are_some():
    values, _, _ = simulate(5, 6, MU_POP)
    cut = values.copy()
    cut[:, 5:] = np.nan
    fit, rows, epochs, truth, rule = strength.scoring_task(Query(cut[:4], horizon=T, finished=values[4:]))
    assert rule == "finished" and rows.tolist() == [0, 1]
    np.testing.assert_array_equal(epochs, [T, T])
    np.testing.assert_allclose(truth, values[4:, -1])  # judged on the finished runs' finals
    assert np.isfinite(fit.values).sum(axis=1).tolist() == [5, 5]  # cut where the query's prefixes end
    assert np.isfinite(fit.context).sum() == np.isfinite(cut[:4]).sum()  # the query's prefixes, as context


def test_too_short_prefixes_fall_back_to_full_transfer_and_say_why():
    prior = population_prior()
    two = np.where(np.arange(T) < 2, simulate(6, 4, MU_POP)[0], np.nan)
    ((cand, query, record),) = strength.choose(prior, [Query(two, horizon=T)], inference=INF)
    assert cand == strength.RHO1 and record["rule"] == "fallback" and "4 observed epochs" in record["reason"]
    assert record["scores"] == {c.name: None for c in strength.FULL_GRID} and record["rho"] == 1.0


def _queries(n, seen=6, curves=8):
    return [Query(np.where(np.arange(T) < seen, simulate(s, curves, MU_POP)[0], np.nan), horizon=T) for s in range(n)]


def test_a_strength_choice_runs_its_scoring_and_final_fits_in_one_program_per_model(monkeypatch):
    # the scoring fits (half prefixes, 2 candidates per query) and the final fits (one per
    # query) must share one batch size and one padded shape per model: each distinct shape
    # is one more compile, most of a cold call (NOTES section 6, speed). The fits are stubbed
    # (a compile would make this test slow; the slow test below spies on real fits)
    calls = []

    def stub(model, args, in_axes, kwargs, config, *, seed=0):
        calls.append((model, tuple(a.shape for a in args[:3])))
        g, n = args[0].shape[:2]
        d, s = basis.num_params(kwargs["families"]), config.num_samples
        latents = {"mu_t": jnp.zeros((s, d)), "sigma": jnp.ones((s, d)), "eps": jnp.zeros((s, n, d))}
        return [inference_lib.Fit(model, "svi", latents, {"ok": True, "problems": []}, 0.0) for _ in range(g)]

    monkeypatch.setattr(inference_lib, "fit_many", stub)
    grid = (strength.RHO1, strength.RHO0)
    preds = strength.predict_auto_many(population_prior(), _queries(3), candidates=grid, inference=TINY, cut="half")
    assert len({shape for _, shape in calls}) == 1 and {m for m, _ in calls} == {"transfer"}, calls
    # 3 queries -> chunks of 4: 6 scoring fits (2 chunks), then 3 finals (1 chunk); 6 of 20
    # epochs seen -> 8 columns
    assert calls[0][1][0] == (4, 8, 8) and len(calls) == 3
    assert all(p.strength["rule"] == "prequential" and len(p.point) == 8 for p in preds)
    # the min_epochs cut (4 of 6 epochs, the spread check's 3): the 3 check fits are one more
    # chunk of the same program
    calls.clear()
    strength.predict_auto_many(population_prior(), _queries(3), candidates=grid, inference=TINY, cut="min_epochs")
    assert len({shape for _, shape in calls}) == 1 and len(calls) == 4, calls


@pytest.mark.slow
def test_predict_many_in_chunks_equals_one_batch():
    queries, prior = _queries(3), population_prior()
    one = predict_many(prior, queries, inference=TINY)
    chunked = predict_many(prior, queries, inference=TINY, chunk=2, width=32)
    for a, b in zip(one, chunked):
        np.testing.assert_allclose(np.asarray(a.z), np.asarray(b.z), atol=1e-4)


@pytest.mark.slow
def test_strength_choice_in_shared_chunks_equals_the_unchunked_choice(monkeypatch):
    # the chunked, one-shape choice (predict_auto_many) against the same choice with one
    # batch per model and call (the implementation before the chunks): same candidates,
    # same scores, points within SVI float noise; and one shape per model over the grid
    prior, queries = population_prior(), _queries(4, seen=8, curves=12)
    calls, real = [], inference_lib.fit_many
    monkeypatch.setattr(
        inference_lib, "fit_many", lambda m, a, *r, **k: calls.append((m, a[0].shape)) or real(m, a, *r, **k)
    )
    preds = strength.predict_auto_many(prior, queries, inference=INF)
    monkeypatch.undo()
    assert {m for m, _ in calls} == {"transfer", "no_transfer"} and len(set(calls)) == 2, calls
    chosen = strength.choose(prior, queries, inference=INF)
    final = predict_many(
        [c.prior(prior) for c, _, _ in chosen],
        [q for _, q, _ in chosen],
        inference=INF,
        calibrations=[prior.calibration if c.independent else None for c, _, _ in chosen],
    )
    for pred, (cand, _, record), ref in zip(preds, chosen, final):
        assert pred.strength["chosen"] == cand.name
        for name, score in record["scores"].items():
            assert pred.strength["scores"][name] == pytest.approx(score, abs=1e-4)
        np.testing.assert_allclose(pred.point, ref.point, atol=2e-3)


@pytest.mark.slow
def test_predict_many_equals_predict_per_dataset():
    queries = [Query(np.where(np.arange(T) < 6, simulate(s, 8, MU_POP)[0], np.nan), horizon=T) for s in range(3)]
    prior = population_prior()
    many = predict_many(prior, queries, inference=INF)
    for q, p in zip(queries, many):
        one = predict(prior, q.values, horizon=T, inference=INF)
        np.testing.assert_allclose(np.asarray(p.z), np.asarray(one.z), atol=1e-4)
        np.testing.assert_allclose(p.point, one.point, atol=1e-4)


@pytest.mark.slow
def test_scale_free_prediction_follows_an_affine_change_of_metric():
    values = np.where(np.arange(T) < 8, simulate(4, 8, MU_POP)[0], np.nan)
    one = predict(None, values, horizon=T, inference=INF, scale="dataset")
    other = predict(None, 5.0 - 3.0 * values, horizon=T, minimize=True, inference=INF, scale="dataset")
    assert isinstance(one.scale, DatasetScale) and one.ok and other.ok
    np.testing.assert_allclose(other.point, 5.0 - 3.0 * one.point, atol=1e-3)


@pytest.mark.slow
def test_strength_keeps_the_population_for_a_like_target_and_drops_it_for_a_shifted_one():
    prior = population_prior()
    queries, kinds = [], []
    for kind, mu in (("same", MU_POP), ("shifted", MU_POP + SHIFT)):
        for seed in (0, 1):
            values = simulate(100 + seed, 16, mu)[0]
            queries.append(Query(np.where(np.arange(T) < 6, values, np.nan), horizon=T))
            kinds.append(kind)
    preds = strength.predict_auto_many(prior, queries, inference=INF)
    for kind, pred in zip(kinds, preds):
        record = pred.strength
        assert record["rule"] == "prequential" and set(record["scores"]) == {c.name for c in strength.FULL_GRID}
        # like the sources: strong transfer; shifted: within-target pooling or independent
        # curves (measured: rho 1 vs independent, scores 0.033 vs 0.10 and 0.054 vs 0.024)
        if kind == "same":
            assert record["rho"] is not None and record["rho"] >= 0.5, record
        else:
            assert record["rho"] is None or record["rho"] == 0.0, record


@pytest.mark.slow
def test_a_loss_target_of_accuracy_sources_is_judged_on_both_scales():
    """A loss target whose ``exp(-loss)`` *is* a source-population accuracy keeps a
    model-scale candidate; every candidate of the mixed grid is scored in table units."""
    prior = population_prior()
    acc = simulate(7, 12, MU_POP)[0]
    loss = -np.log(np.clip(acc, 1e-6, 1.0))
    query = Query(np.where(np.arange(T) < 6, loss, np.nan), horizon=T, minimize=True)
    (pred,) = strength.predict_auto_many(prior, [query], inference=INF)
    record = pred.strength
    assert record["rule"] == "prequential" and set(record["scores"]) == {c.name for c in strength.MIXED_GRID}
    assert all(v is not None and np.isfinite(v) for v in record["scores"].values()), record
    assert record["scale"] == "query", record  # its levels are the sources': the model scale wins
    assert pred.ok and np.mean(np.abs(pred.point - loss[:, -1])) < 0.1
