"""The curve benchmarks of the command contracts (``nax curves benchmark`` /
``early-stop`` / ``speed``): extrapolation (:mod:`.extrapolation`), early termination
(:mod:`.early_stop`), prediction speed (:mod:`.speed`); the datasets, leave-one-out priors
and JSON record they share in :mod:`.common`, the printed tables in :mod:`.report`.
"""

from nax.curves.bench.early_stop import early_stop_benchmark
from nax.curves.bench.extrapolation import extrapolation_benchmark
from nax.curves.bench.speed import speed_benchmark

__all__ = ["early_stop_benchmark", "extrapolation_benchmark", "speed_benchmark"]
