"""The characteristic model in one namespace: specification, fit and target posterior.

The parts live in ``spec.py`` (the generative model, the fitted ``CharacteristicModel`` and
its saved format), ``fit.py`` (type-II MAP of the scales and the population posterior on
the sources) and ``posterior.py`` (conditioning on a target, scoring, sampling). Callers
that want the whole model (``from nax.characteristics import model``) import it from here.
"""

from nax.characteristics.fit import MAX_HYPER_ROWS, fit
from nax.characteristics.posterior import (
    RHO_PRIOR,
    SIGMA_GRID,
    TAU_ALONE,
    TAU_FACTORS,
    TargetPosterior,
    sample_scores,
    score,
    update,
)
from nax.characteristics.spec import (
    ALPHA_SD,
    FORMAT_VERSION,
    INTERCEPT_SD,
    MIN_ARCHS_PER_SOURCE,
    CharacteristicModel,
    hierarchical_model,
    mean_by_arch,
    normal_scores,
    strengths,
)

__all__ = [
    "ALPHA_SD",
    "FORMAT_VERSION",
    "INTERCEPT_SD",
    "MAX_HYPER_ROWS",
    "MIN_ARCHS_PER_SOURCE",
    "RHO_PRIOR",
    "SIGMA_GRID",
    "TAU_ALONE",
    "TAU_FACTORS",
    "CharacteristicModel",
    "TargetPosterior",
    "fit",
    "hierarchical_model",
    "mean_by_arch",
    "normal_scores",
    "sample_scores",
    "score",
    "strengths",
    "update",
]
