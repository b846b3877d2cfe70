"""Transferred learning-curve extrapolation (Wistuba & Pedapati 2019, section 4).

``fit_prior`` learns a population-level prior over curve shapes from source datasets;
``predict`` extrapolates partial curves of a new dataset with it; ``stopping`` turns the
prediction into an early-termination rule.
"""

from nax.curves import basis, models, stopping
from nax.curves.predict import Prediction, predict
from nax.curves.prior import CurvePrior, fit_prior

__all__ = [
    "CurvePrior",
    "Prediction",
    "basis",
    "fit_prior",
    "models",
    "predict",
    "stopping",
]
