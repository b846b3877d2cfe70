"""Simulated searches (``nax.search.simulate``) on arrays of known accuracies: they run
through the search driver, never evaluate a cell twice, stop as documented, and their
metrics are exact on hand-made arrays."""

from __future__ import annotations

import numpy as np
import pytest

from nax import space as space_lib
from nax import tables
from nax.characteristics import model as model_lib
from nax.search import simulate

SPACE = space_lib.nb201
ENC = SPACE.enumerate()
#: a structured objective: 3x3 convolutions help, pooling hurts, plus noise
ACC = 60 + 3 * (ENC == 3).sum(1) - 2 * (ENC == 4).sum(1) + np.random.default_rng(0).normal(0, 1.0, len(ENC))


def test_search_metrics_on_hand_made_arrays():
    acc = np.arange(200, dtype=float)  # the top 1 % is cells 198 and 199
    assert simulate.top_mask(acc).nonzero()[0].tolist() == [198, 199]
    m = simulate.search_metrics(np.array([5, 7, 199, 3]), np.array([10, 20]), acc, at=2)
    assert m == {"evals_to_top1": 3, "regret_at_50": 199.0 - 20.0}
    assert simulate.search_metrics(np.array([1, 2]), np.array([], int), acc)["evals_to_top1"] is None


def test_evolution_is_deduplicated_reproducible_and_stops_once_it_has_found_the_top():
    init = np.random.default_rng(1).choice(len(ENC), 10, replace=False)
    runs = [
        simulate.regularized_evolution(np.random.default_rng(s), ENC, ACC, init, 3000, min_steps=20) for s in (0, 0, 1)
    ]
    a = runs[0]
    np.testing.assert_array_equal(a, runs[1])
    assert not np.array_equal(a, runs[2][: len(a)])
    assert len(set(a.tolist())) == len(a) and not np.isin(a, init).any()
    top = simulate.top_mask(ACC)
    hit = int(np.flatnonzero(top[a])[0])
    assert len(a) == max(20, hit + 1)  # ends at the first top-1 % cell once 20 were made
    # the budget caps the proposals
    assert len(simulate.regularized_evolution(np.random.default_rng(0), ENC, ACC, init, 7, min_steps=50)) == 7


def test_evolution_needs_fewer_evaluations_than_random_on_a_structured_objective():
    evo, rnd = [], []
    for s in range(6):
        rng = np.random.default_rng(s)
        init = rng.choice(len(ENC), 10, replace=False)
        evo.append(
            simulate.search_metrics(simulate.regularized_evolution(rng, ENC, ACC, init, 3000, min_steps=1), init, ACC)[
                "evals_to_top1"
            ]
        )
        rnd.append(simulate.search_metrics(simulate.random_order(rng, len(ENC), init), init, ACC)["evals_to_top1"])
    assert np.mean(evo) < np.mean(rnd), (evo, rnd)


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(2)
    rows = rng.choice(len(ENC), 150, replace=False)
    encs = np.concatenate([ENC[rows], ENC[rows]])
    acc = np.concatenate([ACC[rows], ACC[rows] + rng.normal(0, 1.0, len(rows))])
    table = tables.ArchTable.from_encodings(encs, np.repeat(["a", "b"], len(rows)), acc, unit="percent")
    return model_lib.fit(table, ["a", "b"], seed=0, space=SPACE)


@pytest.mark.slow
def test_model_guided_is_the_greedy_posterior_mean_search(model):
    """Each proposal is the unevaluated cell of highest posterior mean given every value
    seen before it (the definition, recomputed here step by step), and a model transferred
    from sources like the target finds a top-1 % cell within a few proposals."""
    init = np.random.default_rng(3).choice(len(ENC), 5, replace=False)
    prop = simulate.model_guided(model, ENC, ACC, init, 6, min_steps=6)
    assert len(prop) == 6 and len(set(prop.tolist())) == 6 and not np.isin(prop, init).any()
    seen = list(init)
    for p in prop[:3]:
        mean, _ = model_lib.score(model_lib.update(model, (ENC[seen], ACC[seen])), ENC, return_std=False)
        mean[seen] = -np.inf
        assert p == int(np.argmax(mean))
        seen.append(int(p))
    assert simulate.search_metrics(prop, init, ACC)["evals_to_top1"] is not None
