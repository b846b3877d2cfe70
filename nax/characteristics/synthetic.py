"""A synthetic target unlike NAS-Bench-201's datasets, for the dissimilar-target benchmark."""

from __future__ import annotations

import numpy as np

from nax import space as space_lib
from nax.characteristics import featurize as feats

SYNTHETIC = "synthetic-dissimilar"


def synthetic_dissimilar(space: space_lib.CellSpace = space_lib.nb201, seed: int = 0) -> np.ndarray:
    """Accuracy (percent-like) of every cell of ``space`` for a target unlike NAS-Bench-201's.

    It rewards pooling and skip connections and punishes 3x3 convolutions (the sources
    do the opposite), plus random pairwise edge-operation effects (sd 0.3, from ``seed``)
    and noise (sd 0.3): ``acc = 60 + 5 z``, ``z = count(avg_pool) + 0.5 count(skip)
    - 0.7 count(conv3x3) + pairs . w + noise``. Returns ``(space.size,)`` in enumerate order.
    """
    X, names = feats.all_features(space)
    col = {n: i for i, n in enumerate(names)}
    rng = np.random.default_rng(seed)
    # the raw edge pairs only (not the live ones added later): the target stays the same
    pair = np.array([n.startswith("edge ") and " & " in n for n in names])
    z = X[:, col["count avg_pool_3x3"]] + 0.5 * X[:, col["count skip_connect"]] - 0.7 * X[:, col["count nor_conv_3x3"]]
    z = z + X[:, pair] @ rng.normal(0.0, 0.3, pair.sum()) + rng.normal(0.0, 0.3, len(X))
    return 60.0 + 5.0 * z
