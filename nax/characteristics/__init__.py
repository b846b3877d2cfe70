"""Transferred architecture selection: named characteristics and a hierarchical model.

X, names = features(encodings)                       # characteristics of a batch
model = fit(arch_table, sources=["cifar10", "cifar100"], seed=0)
mean, std = score(model, encodings, target_observations=(encs_k, accs_k))
post = update(model, (encs_k, accs_k)); score(post, encodings)   # update once, score often
draws = sample_scores(model, encodings, (encs_k, accs_k), key, n=8)
strengths(model)                                     # strong and weak characteristics
"""

from nax.characteristics.featurize import (
    CHARACTERISTICS,
    all_features,
    centered,
    features,
    groups,
    space_stats,
)
from nax.characteristics.fit import fit
from nax.characteristics.posterior import TargetPosterior, sample_scores, score, update
from nax.characteristics.spec import CharacteristicModel, hierarchical_model, normal_scores, strengths

__all__ = [
    "CHARACTERISTICS",
    "CharacteristicModel",
    "TargetPosterior",
    "all_features",
    "centered",
    "features",
    "fit",
    "groups",
    "hierarchical_model",
    "normal_scores",
    "sample_scores",
    "score",
    "space_stats",
    "strengths",
    "update",
]
