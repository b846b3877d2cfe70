"""Transferred learning-curve extrapolation (Wistuba & Pedapati 2019, section 4).

``fit_prior`` learns a population-level prior over curve shapes from source datasets;
``predict`` extrapolates partial curves of a new dataset with it; ``stopping`` turns the
prediction into an early-termination rule; ``calibration`` fits the extrapolation noise
of the unobserved part of a curve on the sources' prefixes (stored in the prior).
"""

from nax.curves import basis, calibration, models, stopping
from nax.curves.predict import Prediction, predict
from nax.curves.prior import CurvePrior, fit_prior

__all__ = [
    "CurvePrior",
    "Prediction",
    "basis",
    "calibration",
    "fit_prior",
    "models",
    "predict",
    "stopping",
]
