import jax
import numpy as np
import pytest

from nax import space

S = space.nb201
EXAMPLE = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|nor_conv_3x3~2|"


def test_string_round_trip_and_edge_order():
    enc = S.from_string(EXAMPLE)
    assert enc.dtype == np.int32 and enc.shape == (6,)
    # edge order 0→1, 0→2, 1→2, 0→3, 1→3, 2→3
    assert [S.ops[i] for i in enc] == [
        "nor_conv_3x3",
        "none",
        "skip_connect",
        "avg_pool_3x3",
        "nor_conv_1x1",
        "nor_conv_3x3",
    ]
    assert S.to_string(enc) == EXAMPLE


def test_enumeration_is_complete_and_round_trips():
    all_ = S.enumerate()
    assert all_.shape == (15625, 6) and S.size == 15625
    assert len({tuple(e) for e in all_}) == 15625
    np.testing.assert_array_equal(S.index(all_), np.arange(15625))
    for e in all_[::997]:
        np.testing.assert_array_equal(S.from_string(S.to_string(e)), e)


def test_sampling_is_seeded_uniform_and_valid():
    a = S.sample(jax.random.key(3), 5000)
    b = S.sample(jax.random.key(3), 5000)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (5000, 6) and a.min() == 0 and a.max() == 4
    freq = np.bincount(a.ravel(), minlength=5) / a.size
    np.testing.assert_allclose(freq, 0.2, atol=0.01)
    assert S.sample(jax.random.key(0)).shape == (6,)


def test_mutation_changes_exactly_one_edge():
    enc = S.from_string(EXAMPLE)
    keys = jax.random.split(jax.random.key(0), 200)
    edges_hit = set()
    for k in keys:
        m = S.mutate(k, enc)
        diff = np.flatnonzero(m != enc)
        assert len(diff) == 1
        edges_hit.add(int(diff[0]))
    assert edges_hit == set(range(6))
    assert len(S.neighbours(enc)) == 24


def test_connectivity():
    none = S.op_index("none")
    assert not S.is_connected(np.full(6, none))
    # only 0→1 and 1→2 live: node 3 unreachable
    assert not S.is_connected(S.from_string("|skip_connect~0|+|none~0|skip_connect~1|+|none~0|none~1|none~2|"))
    assert S.is_connected(S.from_string("|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"))
    assert S.is_connected(S.from_string("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|avg_pool_3x3~1|none~2|"))
    conn = S.is_connected(S.enumerate())
    # known count: cells with no input→output path (each of the paths 0-3, 0-1-3, 0-2-3, 0-1-2-3 dead)
    brute = []
    for e in S.enumerate()[::251]:
        live = e != none
        paths = [live[3], live[0] and live[4], live[1] and live[5], live[0] and live[2] and live[5]]
        brute.append(any(paths))
    np.testing.assert_array_equal(conn[::251], brute)


@pytest.mark.parametrize(
    "bad, match",
    [
        ("|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown operation 'conv_5x5'"),
        ("|none~0|+|none~0|none~1|", "expected 3 nodes"),
        ("|none~0|+|none~0|+|none~0|none~1|none~2|", "node 2 needs 2 inputs"),
        ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "must read from node 0"),
        ("none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "wrapped in"),
        ("|none0|+|none~0|none~1|+|none~0|none~1|none~2|", "is not 'op~input'"),
    ],
)
def test_bad_strings(bad, match):
    with pytest.raises(ValueError, match=match):
        S.from_string(bad)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros(5, int), "length 6"),
        (np.array([0, 1, 2, 3, 4, 5]), r"values must lie in 0..4"),
        (np.array([0, -1, 0, 0, 0, 0]), r"values must lie in 0..4"),
        (np.array([0.5] * 6), "must hold integers"),
        (np.int32(3), "length 6"),
    ],
)
def test_bad_encodings(bad, match):
    with pytest.raises(ValueError, match=match):
        S.validate(bad)


def test_unknown_space():
    with pytest.raises(ValueError, match="available: nb201"):
        space.get("darts")
    assert space.get("nb201") is S


def test_from_strings_round_trips_every_nb201_cell_and_equals_from_string():
    cells = space.nb201.enumerate()
    strings = [space.nb201.to_string(c) for c in cells]
    enc = space.nb201.from_strings(strings)
    assert enc.dtype == np.int32 and enc.shape == (15625, 6)
    np.testing.assert_array_equal(enc, cells)
    # row by row equal to from_string, whitespace and a non-canonical edge ("~01") included
    odd = [f"  {strings[7]} ", strings[42].replace("~1|", "~01|"), strings[-1]]
    np.testing.assert_array_equal(space.nb201.from_strings(odd), [space.nb201.from_string(s) for s in odd])
    assert space.nb201.from_strings([]).shape == (0, 6)
    tiny = space.CellSpace(name="tiny", ops=("a", "b"), num_nodes=2)  # one edge: one regex group
    np.testing.assert_array_equal(tiny.from_strings(["|b~0|", " |a~0|"]), [[1], [0]])


@pytest.mark.parametrize(
    "bad,index,reason",
    [
        ("|none~0|+|none~0|", 1, r"malformed nb201 string '\|none~0\|\+\|none~0\|': expected 3 nodes"),
        ("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", 1, "unknown operation 'conv'.*accepted: none, skip"),
        ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", 1, "must read from node 0"),
        (7, 1, "must be str, got int"),
    ],
)
def test_from_strings_names_the_bad_string(bad, index, reason):
    good = space.nb201.to_string(np.zeros(6, np.int32))
    with pytest.raises(space.ArchStringError, match=reason) as err:
        space.nb201.from_strings([good, bad, good])
    assert err.value.index == index and err.value.string == bad
    assert f"architecture {index} ({bad!r})" in str(err.value) and isinstance(err.value, ValueError)
