"""Named characteristics of NAS-Bench-201 cells: values checked by hand on known cells."""

import numpy as np
import pytest

from nax import characteristics as ch
from nax import models, space
from nax.characteristics import featurize

S = space.nb201


def _row(arch: str) -> dict:
    X, names = ch.features(S.from_string(arch))
    return dict(zip(names, X[0]))


def test_names_unique_and_groups_cover_every_characteristic():
    X, names = ch.all_features()
    assert X.shape == (S.size, len(names)) and len(set(names)) == len(names)
    gidx, gnames = ch.groups(names)
    assert gidx.shape == (len(names),) and set(gidx) == set(range(len(gnames)))
    # prior groups are kinds of characteristic; format-1 models used one group per edge (pair)
    assert featurize.group_of("edge 0->1 = none & edge 2->3 = skip_connect") == "edge pairs"
    assert featurize.group_of("live edge 0->1 = skip_connect & live edge 2->3 = skip_connect") == "live edge pairs"
    assert featurize.group_of("live edge 0->1 = skip_connect") == "live edge ops"
    assert featurize.group_of("path nor_conv_3x3 > skip_connect") == "paths of length 2"
    assert featurize.fine_group_of("edge 0->1 = none & edge 2->3 = skip_connect") == "edges 0->1 & 2->3"
    assert len(gnames) < len(ch.groups(names, fine=True)[1])


def test_known_cell():
    # 0->1 conv3x3, 0->2 none, 1->2 skip, 0->3 avg_pool, 1->3 none, 2->3 conv3x3
    r = _row("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|")
    assert r["edge 0->1 = nor_conv_3x3"] == 1 and r["edge 0->1 = none"] == 0
    assert r["count none"] == 2 and r["count nor_conv_3x3"] == 2
    assert r["edge 0->1 = nor_conv_3x3 & edge 2->3 = nor_conv_3x3"] == 1
    # live paths: 0->3 (avg_pool) and 0->1->2->3 (conv, skip, conv)
    assert r["path avg_pool_3x3"] == 1
    assert r["path nor_conv_3x3 > skip_connect > nor_conv_3x3"] == 1
    assert sum(v for k, v in r.items() if k.startswith("path ")) == 2
    assert r["disconnected"] == 0 and r["longest conv chain"] == 2
    assert r["live count nor_conv_3x3"] == 2 and r["live edge 0->3 = avg_pool_3x3"] == 1
    # live edges 0->1, 1->2, 0->3, 2->3: every pair of them, once
    assert r["live edge 0->1 = nor_conv_3x3 & live edge 2->3 = nor_conv_3x3"] == 1
    assert r["live edge 1->2 = skip_connect & live edge 0->3 = avg_pool_3x3"] == 1
    assert sum(v for k, v in r.items() if k.startswith("live edge ") and " & " in k) == 6
    assert r["live paths"] == 2 and r["longest live path"] == 3 and r["shortest conv chain"] == 0
    assert r["live paths with a conv"] == 1 and r["convs on live paths"] == 2
    params, macs = models.analytic_sizes(
        S.from_string("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"), 10
    )
    assert r["log10 params"] == pytest.approx(np.log10(params[0]))
    assert r["log10 MACs"] == pytest.approx(np.log10(macs[0]))


def test_dead_edges_are_not_live():
    # node 1 never reaches the output (1->2 and 1->3 are none): the conv on 0->1 is dead
    r = _row("|nor_conv_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|nor_conv_1x1~2|")
    assert r["edge 0->1 = nor_conv_3x3"] == 1 and r["live edge 0->1 = nor_conv_3x3"] == 0
    assert r["live count nor_conv_3x3"] == 0 and r["live count nor_conv_1x1"] == 1
    assert r["disconnected"] == 0 and r["longest conv chain"] == 1
    assert r["live edge 0->2 = skip_connect & live edge 2->3 = nor_conv_1x1"] == 1
    assert sum(v for k, v in r.items() if k.startswith("live edge 0->1")) == 0
    assert r["live paths"] == 1 and r["longest live path"] == 2 and r["shortest conv chain"] == 1


def test_disconnected_cell():
    r = _row("|nor_conv_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|none~2|")
    assert r["disconnected"] == 1 and r["longest conv chain"] == 0
    assert sum(v for k, v in r.items() if k.startswith("path ") or k.startswith("live ")) == 0
    assert r["shortest conv chain"] == 0 and r["convs on live paths"] == 0


def test_batch_matches_single_and_centering():
    enc = S.enumerate()[[0, 17, 4000, 15624]]
    X, _ = ch.features(enc)
    for i, e in enumerate(enc):
        np.testing.assert_array_equal(ch.features(e)[0][0], X[i])
    mu, _ = ch.space_stats()
    np.testing.assert_allclose(ch.centered(enc), X - mu)
    np.testing.assert_allclose(ch.centered(S.enumerate()).mean(0), 0.0, atol=1e-9)


def test_unknown_encoding_values_rejected():
    with pytest.raises(ValueError, match="values must lie in"):
        ch.features(np.array([0, 1, 2, 3, 4, 5]))
