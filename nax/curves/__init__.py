"""Transferred learning-curve extrapolation (Wistuba & Pedapati 2019, section 4).

``fit_prior`` (:mod:`~nax.curves.fitting`) learns a population-level prior over curve
shapes from source datasets, and calibrates its extrapolation noise on their prefixes
(:mod:`~nax.curves.calibration`); ``predict`` extrapolates partial curves of a new
dataset with it (``predict_many``: many datasets in one compiled program;
``predict_auto_many``: at the transfer strength chosen from each target's own data,
:mod:`~nax.curves.strength`, or with ``combine="mix"`` an equal-weight
:class:`~nax.curves.mixture.MixturePrediction` of the better half of the strengths);
``stop_rule`` (:mod:`~nax.curves.stopping`) turns the prediction into the early-termination
rule. ``InferenceConfig`` says how every fit is made.
"""

from nax.curves import basis, calibration, fitting, mixture, models, stopping, strength
from nax.curves.calibration import Calibration
from nax.curves.fitting import calibrate_prior, fit_prior
from nax.curves.inference import InferenceConfig
from nax.curves.mixture import MixturePrediction
from nax.curves.observations import DatasetScale, DirectionMismatch
from nax.curves.predict import Prediction, Query, predict, predict_many
from nax.curves.prior import CurvePrior
from nax.curves.stopping import Decision, Finished, StopConfig, StopRule, run_check, stop_rule
from nax.curves.strength import predict_auto, predict_auto_many

__all__ = [
    "Calibration",
    "CurvePrior",
    "DatasetScale",
    "Decision",
    "DirectionMismatch",
    "Finished",
    "InferenceConfig",
    "MixturePrediction",
    "Prediction",
    "Query",
    "StopConfig",
    "StopRule",
    "basis",
    "calibrate_prior",
    "calibration",
    "fit_prior",
    "fitting",
    "mixture",
    "models",
    "predict",
    "predict_auto",
    "predict_auto_many",
    "predict_many",
    "run_check",
    "stop_rule",
    "stopping",
    "strength",
]
