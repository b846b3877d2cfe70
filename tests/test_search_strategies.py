"""Strategies: purity, no repeats, regularized evolution's population, transfer's Thompson sampling."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from nax import space as space_lib
from nax import tables
from nax.search import strategies
from nax.search.strategies import Observation

SPACE = space_lib.nb201


def _pool(n, seed=0):
    encs = SPACE.sample(jax.random.key(seed), 4 * n)
    return encs[np.sort(np.unique(SPACE.index(encs), return_index=True)[1])][:n]


def _key(i):
    return jax.random.fold_in(jax.random.key(7), i)


@pytest.mark.parametrize(
    "make",
    [
        lambda pool: strategies.random(SPACE, batch=3, candidates=pool),
        lambda pool: strategies.evolution(SPACE, population=4, sample=2, batch=3, candidates=pool),
    ],
)
def test_no_repeats_until_the_pool_is_exhausted_and_pure(make):
    pool = _pool(30)
    s = make(pool)
    state = s.init(jax.random.key(0), SPACE)
    asked = []
    for i in range(10):  # 30 asks = the whole pool
        before = state.asked_P.copy()
        encs, new = s.ask(state, _key(i))
        assert np.array_equal(state.asked_P, before)  # the input state is untouched
        again, _ = s.ask(state, _key(i))
        assert np.array_equal(encs, again)  # same state and key -> same ask
        state = s.tell(new, [Observation(e, float(e.sum())) for e in encs])
        asked += [SPACE.to_string(e) for e in encs]
    assert sorted(asked) == sorted(SPACE.to_string(e) for e in pool)
    encs, _ = s.ask(state, _key(99))  # exhausted: repeats are allowed
    assert encs.shape == (3, 6) and all(SPACE.to_string(e) in asked for e in encs)


def test_evolution_ages_out_and_mutates_the_tournament_winner():
    s = strategies.evolution(SPACE, population=5, sample=50, batch=1)
    state = s.init(jax.random.key(0), SPACE)
    told = []
    for i in range(12):
        (enc,), state = s.ask(state, _key(i))
        if i >= 5:
            # with 50 draws from 5 members the tournament winner is a best member: the child is one edge away
            top = max(v for _, v in state.population)
            parents = [state.pool.encs_PxE[p] for p, v in state.population if v == top]
            assert any((p != enc).sum() == 1 for p in parents)
        value = None if i == 7 else float((enc == 3).sum())  # run 7 fails: not in the population
        state = s.tell(state, [Observation(enc, value)])
        if value is not None:
            told.append(SPACE.index(enc))
    assert [int(state.pool.encs_PxE[p] @ 5 ** np.arange(5, -1, -1)) for p, _ in state.population] == told[-5:]
    assert state.asked_P.sum() == 12


def test_evolution_finds_better_cells_than_random_on_a_known_objective():
    # objective: number of 3x3 convolutions; evolution should climb, random should not
    def best_after(s, n=60):
        state = s.init(jax.random.key(0), SPACE)
        vals = []
        for i in range(n):
            (enc,), state = s.ask(state, _key(i))
            vals.append(float((enc == 3).sum()))
            state = s.tell(state, [Observation(enc, vals[-1])])
        return np.mean(vals[-20:])

    evo = best_after(strategies.evolution(SPACE, population=10, sample=3))
    rnd = best_after(strategies.random(SPACE))
    assert evo > rnd + 1.0, (evo, rnd)


def _arch_table(datasets=("a", "b", "target"), n=120, seed=0):
    """Accuracy = 0.5 + 0.07 * (#3x3 convs) + noise, on every dataset."""
    rng = np.random.default_rng(seed)
    encs = _pool(n, seed)
    rows_e, rows_d, rows_a = [], [], []
    for d in datasets:
        acc = 0.5 + 0.07 * (encs == 3).sum(1) + rng.normal(0, 0.01, len(encs))
        rows_e.append(encs)
        rows_d += [d] * len(encs)
        rows_a.append(acc)
    return tables.ArchTable.from_encodings(np.concatenate(rows_e), np.array(rows_d), np.concatenate(rows_a))


@pytest.mark.slow
def test_transfer_asks_the_sources_best_first_and_learns_from_the_target():
    from nax.search import transfer

    table = _arch_table()
    target = table.encodings[table.datasets == "target"]
    acc = table.accuracy[table.datasets == "target"]
    s = transfer.strategy(SPACE, table, ["a", "b"], seed=0, batch=2, candidates=target)
    state = s.init(jax.random.key(0), SPACE)
    found = []
    for i in range(5):
        encs, state = s.ask(state, _key(i))
        vals = [float(acc[np.flatnonzero((target == e).all(1))[0]]) for e in encs]
        found += vals
        state = s.tell(state, [Observation(e, v) for e, v in zip(encs, vals)])
    # 10 of 120 cells asked: their mean accuracy is far above the pool's (a top decile by transfer)
    assert np.mean(found) > np.quantile(acc, 0.8), (np.mean(found), np.quantile(acc, [0.5, 0.8]))
    assert len({SPACE.to_string(e) for e in target[state.asked_P]}) == 10
    assert len(state.observed) == 10


def test_warm_start_tells_earlier_evaluations_first():
    """Evaluations made before the search count as asked (never proposed again) and, in
    evolution, seed the population as its random initial members: with a full population
    told, the very first ask is a one-edge mutation of the tournament winner."""
    told = [Observation(e, float((e == 3).sum())) for e in _pool(6, 3)]
    s = strategies.warm_start(strategies.evolution(SPACE, population=6, sample=6), told)  # pool: the space
    state = s.init(jax.random.key(0), SPACE)
    assert state.n_random == 6 and len(state.population) == 6 and state.asked_P.sum() == 6
    (child,), state = s.ask(state, _key(0))
    # sample = population and values 0..6: the winner is the first of the best values
    best = max(enumerate(told), key=lambda t: (t[1].value, -t[0]))[1].enc
    assert (child != best).sum() == 1
    asked = set(SPACE.index(np.stack([o.enc for o in told])).tolist())
    for i in range(10):
        (enc,), state = s.ask(state, _key(i + 1))
        assert int(SPACE.index(enc[None])[0]) not in asked
        asked.add(int(SPACE.index(enc[None])[0]))
        state = s.tell(state, [Observation(enc, float((enc == 3).sum()))])
