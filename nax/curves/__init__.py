"""Transferred learning-curve extrapolation (Wistuba & Pedapati 2019, section 4).

``fit_prior`` (:mod:`~nax.curves.fitting`) learns a population-level prior over curve
shapes from source datasets, and calibrates its extrapolation noise on their prefixes
(:mod:`~nax.curves.calibration`); ``predict`` extrapolates partial curves of a new
dataset with it; ``stop_rule`` (:mod:`~nax.curves.stopping`) turns the prediction into
the early-termination rule. ``InferenceConfig`` says how every fit is made.
"""

from nax.curves import basis, calibration, fitting, models, stopping
from nax.curves.calibration import Calibration
from nax.curves.fitting import calibrate_prior, fit_prior
from nax.curves.inference import InferenceConfig
from nax.curves.predict import Prediction, predict
from nax.curves.prior import CurvePrior
from nax.curves.stopping import Decision, Finished, StopConfig, StopRule, run_check, stop_rule

__all__ = [
    "Calibration",
    "CurvePrior",
    "Decision",
    "Finished",
    "InferenceConfig",
    "Prediction",
    "StopConfig",
    "StopRule",
    "basis",
    "calibrate_prior",
    "calibration",
    "fit_prior",
    "fitting",
    "models",
    "predict",
    "run_check",
    "stop_rule",
    "stopping",
]
