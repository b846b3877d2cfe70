"""The hierarchical characteristic model on data simulated from its own NumPyro model."""

import json

import jax
import numpy as np
import numpyro
import pytest
import scipy.stats

from nax import characteristics as ch
from nax import space, tables

S = space.nb201
CELLS = S.enumerate()
STRONG = {"disconnected": 1.0, "op counts": 0.3, "live op counts": 0.2}
TAU, SIGMA = 0.03, 0.2


def simulate(n_per_source=250, n_sources=3, seed=0):
    """Draw data from ``ch.hierarchical_model`` with known, sparse group scales."""
    rng = np.random.default_rng(seed)
    _, names = ch.all_features()
    gidx, gnames = ch.groups(names)
    g = np.array([STRONG.get(n, 1e-3) for n in gnames])
    rows = [rng.choice(S.size, n_per_source, replace=False) for _ in range(n_sources)]
    Xs = [ch.centered(CELLS[r]) for r in rows]
    cond = {"g_global": 0.1, "g": g, "tau_dev": TAU, "sigma": np.full(n_sources, SIGMA)}
    model = numpyro.handlers.condition(ch.hierarchical_model, cond)
    tr = numpyro.handlers.trace(numpyro.handlers.seed(model, jax.random.key(seed))).get_trace(Xs, gidx, len(gnames))
    ys = [np.asarray(tr[f"y_{d}"]["value"], np.float64) for d in range(n_sources)]
    w0 = np.asarray(tr["w0"]["value"], np.float64)
    names_ds = [f"sim{d}" for d in range(n_sources)]
    # any increasing map of y is the same data to the model (it ranks): here fractions
    acc = scipy.stats.norm.cdf(np.concatenate(ys) / 4)
    table = tables.ArchTable.from_encodings(CELLS[np.concatenate(rows)], np.repeat(names_ds, n_per_source), acc)
    return table, names_ds, w0, ys, gnames


@pytest.fixture(scope="module")
def sim():
    table, names, w0, ys, gnames = simulate()
    model = ch.fit(table, names, seed=0)
    return table, names, w0, ys, gnames, model


def test_recovers_population_effects(sim):
    table, names, w0, ys, gnames, model = sim
    Xall = ch.centered(CELLS)
    truth, pred = Xall @ w0, Xall @ model.mu0
    assert scipy.stats.spearmanr(truth, pred).statistic > 0.97
    # the strong groups get the largest scales (group sparsity)
    top = [model.group_names[i] for i in np.argsort(-model.group_scale)[: len(STRONG)]]
    assert set(top) == set(STRONG), top
    # scales on the normal-score scale: y / sd(y)
    sd = np.mean([y.std() for y in ys])
    np.testing.assert_allclose(model.sigma, SIGMA / sd, rtol=0.35)
    assert TAU / sd / 3 < model.tau_dev < 3 * TAU / sd
    s = ch.strengths(model)
    assert s["mean"].is_monotonic_decreasing
    assert s.iloc[-1]["name"] == "disconnected" or w0[list(model.names).index("disconnected")] > 0


def test_no_target_data_is_the_population(sim):
    model = sim[-1]
    enc = CELLS[::97]
    mean, std = ch.score(model, enc)
    np.testing.assert_allclose(mean, ch.centered(enc) @ model.mu0, atol=1e-10)
    post = ch.update(model, None)
    assert post.k == 0 and post.rho == 1.0 and post.tau == model.tau_dev
    mean2, std2 = ch.score(post, enc)
    np.testing.assert_array_equal(mean, mean2)
    # prior sd: intercept, alpha and population uncertainty, and the deviation tau_dev
    Xc = ch.centered(enc)
    m = Xc @ model.mu0
    var = (
        1.0
        + 0.25 * m**2
        + np.einsum("ij,jk,ik->i", Xc, model.Sigma0 + model.tau_dev**2 * np.eye(model.num_features), Xc)
    )
    np.testing.assert_allclose(std, np.sqrt(var), rtol=1e-6)


def test_target_observations_order_invariant(sim):
    model = sim[-1]
    rng = np.random.default_rng(1)
    idx = rng.choice(S.size, 40, replace=False)
    acc = rng.uniform(0.2, 0.9, 40)
    perm = rng.permutation(40)
    a = ch.update(model, (CELLS[idx], acc))
    b = ch.update(model, (CELLS[idx[perm]], acc[perm]))
    assert (a.rho, a.tau, a.sigma) == (b.rho, b.tau, b.sigma)
    enc = CELLS[::53]
    for x, y in zip(ch.score(a, enc), ch.score(b, enc)):
        np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-9)


def test_target_evaluations_teach_a_deviating_target(sim):
    """A new dataset whose effects deviate from w0: its evaluations must improve the ranking."""
    table, names, w0, ys, gnames, model = sim
    rng = np.random.default_rng(5)
    Xall = ch.centered(CELLS)
    w_t = w0 + rng.normal(0.0, 0.05, len(w0))
    truth = Xall @ w_t + rng.normal(0.0, SIGMA, S.size)
    zero = ch.score(model, CELLS, return_std=False)[0]
    idx = rng.choice(S.size, 150, replace=False)
    post = ch.update(model, (CELLS[idx], truth[idx]))
    upd = ch.score(post, CELLS, return_std=False)[0]
    r0 = scipy.stats.spearmanr(zero, truth).statistic
    r1 = scipy.stats.spearmanr(upd, truth).statistic
    assert r1 > r0 + 0.01 and post.rho > 0 and post.tau > model.tau_dev, (r0, r1, post.rho, post.tau)
    # evaluated cells: posterior sd shrinks below the prior sd
    _, sd0 = ch.score(model, CELLS[idx])
    _, sd1 = ch.score(post, CELLS[idx])
    assert np.all(sd1 < sd0)


def test_sample_scores_match_posterior_moments(sim):
    model = sim[-1]
    rng = np.random.default_rng(2)
    idx = rng.choice(S.size, 20, replace=False)
    obs = (CELLS[idx], rng.uniform(0.3, 0.9, 20))
    enc = CELLS[rng.choice(S.size, 50, replace=False)]
    mean, std = ch.score(model, enc, obs)
    n = 4000
    draws = ch.sample_scores(model, enc, obs, jax.random.key(0), n=n)
    assert draws.shape == (n, len(enc))
    assert np.all(np.abs(draws.mean(0) - mean) < 5 * std / np.sqrt(n))
    np.testing.assert_allclose(draws.std(0), std, rtol=0.08)
    again = ch.sample_scores(model, enc, obs, jax.random.key(0), n=n)
    np.testing.assert_array_equal(draws, again)


@pytest.mark.slow
def test_exact_rerun_and_save_load(sim, tmp_path):
    table, names, *_, model = sim
    again = ch.fit(table, names, seed=0)
    for k in ("mu0", "lam0", "E", "group_scale", "sigma", "source_mean"):
        np.testing.assert_array_equal(getattr(model, k), getattr(again, k))
    path = tmp_path / "model.npz"
    model.save(str(path))
    loaded = ch.CharacteristicModel.load(str(path))
    assert loaded.names == model.names and loaded.sources == model.sources and loaded.tau_dev == model.tau_dev
    assert loaded.group_names == model.group_names and loaded.info == model.info
    np.testing.assert_array_equal(loaded.group_idx, model.group_idx)
    obs = (CELLS[:30], np.linspace(0.1, 0.9, 30))
    for x, y in zip(ch.score(model, CELLS[::101], obs), ch.score(loaded, CELLS[::101], obs)):
        np.testing.assert_array_equal(x, y)
    bad = tmp_path / "bad.npz"
    np.savez(bad, header=np.array('{"format": "other"}'))
    with pytest.raises(ValueError, match="not a nax characteristic model"):
        ch.CharacteristicModel.load(str(bad))


def test_saved_model_is_format_2_and_byte_stable(sim, tmp_path):
    """The same fit saves to the same bytes (every .npz member), header keys in a fixed order."""
    import zipfile

    model = sim[-1]
    paths = [tmp_path / "a.npz", tmp_path / "b.npz"]
    for p in paths:
        model.save(str(p))
    with zipfile.ZipFile(paths[0]) as a, zipfile.ZipFile(paths[1]) as b:
        assert (
            a.namelist()
            == b.namelist()
            == [
                "header.npy",
                "mu0.npy",
                "E.npy",
                "lam0.npy",
                "group_scale.npy",
                "sigma.npy",
                "source_mean.npy",
                "n_per_source.npy",
                "group_idx.npy",
            ]
        )
        assert all(a.read(n) == b.read(n) for n in a.namelist())
    with np.load(paths[0]) as z:
        header = json.loads(str(z["header"]))
    assert list(header) == ["format", "version", "names", "sources", "space", "tau_dev", "group_names", "info"]
    assert header["format"] == "nax.characteristics" and header["version"] == 2


@pytest.mark.slow
def test_lower_is_better_scores_give_the_model_of_their_negation(sim):
    """A loss table declared lower-is-better is ranked reversed: the same model as the negated
    values (higher is better), which here rank as the simulated accuracies do."""
    table, names, *_, model = sim
    loss = 1.0 - 4.0 * table.accuracy  # any sign; lower is better
    as_loss = tables.ArchTable.from_encodings(table.encodings, table.datasets, loss, unit="score", lower_is_better=True)
    negated = tables.ArchTable.from_encodings(table.encodings, table.datasets, -loss, unit="score")
    m_loss, m_neg = ch.fit(as_loss, names, seed=0), ch.fit(negated, names, seed=0)
    for k in ("mu0", "lam0", "E", "group_scale", "sigma", "source_mean"):
        np.testing.assert_array_equal(getattr(m_loss, k), getattr(m_neg, k))
        np.testing.assert_array_equal(getattr(m_loss, k), getattr(model, k))
    # the same losses read as higher-is-better rank every source reversed: effects flip sign
    wrong = ch.fit(tables.ArchTable.from_encodings(table.encodings, table.datasets, loss, unit="score"), names)
    assert scipy.stats.pearsonr(wrong.mu0, -model.mu0).statistic > 0.999


def test_format_1_model_still_loads_and_scores(sim, tmp_path):
    """A model saved before the live-pair and live-structure characteristics (format 1, fine
    groups) scores with its own characteristics, picked by name."""
    model = sim[-1]
    old = [
        i
        for i, n in enumerate(model.names)
        if not (n.startswith("live edge ") and " & " in n)
        and n
        not in (
            "live paths",
            "longest live path",
            "shortest conv chain",
            "live paths with a conv",
            "convs on live paths",
        )
    ]
    names = [model.names[i] for i in old]
    _, fine_names = ch.groups(names, fine=True)
    lam, E = np.linalg.eigh(model.Sigma0[np.ix_(old, old)])
    header = dict(
        format="nax.characteristics",
        version=1,
        names=names,
        sources=list(model.sources),
        space="nb201",
        tau_dev=model.tau_dev,
        group_names=fine_names,
        info={},
    )
    path = tmp_path / "v1.npz"
    np.savez(
        path,
        header=np.array(json.dumps(header)),
        mu0=model.mu0[old],
        E=E,
        lam0=np.clip(lam, 0, None),
        group_scale=np.linspace(0.1, 1.0, len(fine_names)),
        sigma=model.sigma,
        source_mean=model.source_mean[:, old],
        n_per_source=model.n_per_source,
    )
    loaded = ch.CharacteristicModel.load(str(path))
    assert loaded.num_features == len(old) < model.num_features
    enc = CELLS[::211]
    np.testing.assert_allclose(ch.score(loaded, enc)[0], ch.centered(enc)[:, old] @ model.mu0[old], atol=1e-10)
    post = ch.update(loaded, (CELLS[:20], np.linspace(0.1, 0.9, 20)))
    assert np.all(np.isfinite(ch.score(post, enc)[1]))
    s = ch.strengths(loaded)
    assert set(s["group"]) == set(fine_names) and "edges 0->1 & 0->2" in set(s["group"])
    row = s[s["name"] == "edge 0->1 = none & edge 0->2 = none"].iloc[0]
    assert row["group_scale"] == loaded.group_scale[fine_names.index("edges 0->1 & 0->2")]


# ---------------------------------------------------------------------------- bad input
def test_source_with_too_few_architectures():
    t = tables.ArchTable.from_encodings(CELLS[:9], "tiny", np.linspace(0.1, 0.9, 9))
    with pytest.raises(ValueError, match="9 distinct architectures; at least 10"):
        ch.fit(t, ["tiny"])
    # repeats of one architecture (seeds) are averaged, not counted twice
    t = tables.ArchTable.from_encodings(
        np.repeat(CELLS[:6], 2, 0), "tiny", np.linspace(0.1, 0.9, 12), meta={"seed": np.tile([0, 1], 6)}
    )
    with pytest.raises(ValueError, match="6 distinct"):
        ch.fit(t, ["tiny"])


def test_unknown_or_empty_sources():
    table = simulate(n_per_source=20, n_sources=1)[0]
    with pytest.raises(ValueError, match="'cifar10' has no rows"):
        ch.fit(table, ["cifar10"])
    with pytest.raises(ValueError, match="at least one source"):
        ch.fit(table, [])


def test_nan_accuracies_rejected():
    class Table:  # a duck-typed table that skipped the loader's checks
        encodings = CELLS[:20]
        datasets = np.full(20, "a")
        accuracy = np.r_[np.linspace(0.1, 0.9, 19), np.nan]

    with pytest.raises(ValueError, match="1 accuracies are NaN"):
        ch.fit(Table(), ["a"])


def test_bad_target_observations(sim):
    model = sim[-1]
    with pytest.raises(ValueError, match="NaN or infinite"):
        ch.update(model, (CELLS[:3], np.array([0.5, np.nan, 0.4])))
    with pytest.raises(ValueError, match="3 encodings but 2 accuracies"):
        ch.update(model, (CELLS[:3], np.array([0.5, 0.4])))
    with pytest.raises(ValueError, match="must lie in"):
        ch.update(model, (np.array([[0, 0, 0, 0, 0, 7]]), np.array([0.5])))
    with pytest.raises(ValueError, match="explicit jax.random key"):
        ch.sample_scores(model, CELLS[:3])
    # an empty target is the zero-shot prior
    np.testing.assert_array_equal(
        ch.score(model, CELLS[:5], (CELLS[:0], np.zeros(0)))[0], ch.score(model, CELLS[:5])[0]
    )


def test_target_op_set_subset_of_sources(sim):
    """A target that never uses avg_pool: scores exist for every cell, pooled cells keep the prior."""
    model = sim[-1]
    pool = S.op_index("avg_pool_3x3")
    no_pool = CELLS[~np.any(CELLS == pool, axis=1)]
    rng = np.random.default_rng(3)
    idx = rng.choice(len(no_pool), 60, replace=False)
    Xall = ch.centered(no_pool[idx])
    acc = scipy.stats.norm.cdf(Xall @ model.mu0)
    mean, std = ch.score(model, CELLS, (no_pool[idx], acc))
    assert np.all(np.isfinite(mean)) and np.all(std > 0)
    with_pool = np.any(CELLS == pool, axis=1)
    assert std[with_pool].mean() > std[~with_pool].mean()
