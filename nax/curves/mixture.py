"""An equal-weight mixture of predictions of the same curves: :class:`MixturePrediction`.

Why (issue 13, benchmarks/NOTES.md section 6, "Combining strengths instead of choosing
one"): the transfer strength chosen by the prequential check (:mod:`nax.curves.strength`)
was on average no better than always using the full prior on the committed matrix, and
lost to ``no_transfer`` on 3 of 4 families cross-family; the check (half prefix -> last
observed epoch) is a short-horizon, noisy signal for a long-horizon question. When weights
are estimated from a weak signal, a simple average of the better forecasts beats picking
one (Bates & Granger 1969; the "forecast combination puzzle", Smith & Wallis 2009;
Claeskens et al. 2016). ``predict_auto_many(..., combine="mix")`` therefore predicts with
the better half of the candidates, each weighted equally; this module is what it returns.
The rule was fixed before it was measured.

A mixture offers what the callers of a :class:`~nax.curves.predict.Prediction` use:
draws (the components' draws concatenated: every component has the same number of draws,
so concatenation is the equal-weight mixture), the point (median of the components'
*unrescaled* draws, so the spread recalibration does not move it, as for a
``Prediction``), quantiles, log density (log of the average of the component densities)
and :meth:`MixturePrediction.without_spread`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.special import logsumexp


@dataclasses.dataclass
class MixturePrediction:
    """Equal-weight mixture of ``components`` (:class:`~nax.curves.predict.Prediction` of
    the same N curves: same horizon, direction and number of draws S). ``strength``: the
    record of how the components were chosen (:mod:`nax.curves.strength`)."""

    components: tuple
    strength: dict | None = None

    def __post_init__(self):
        self.components = tuple(self.components)
        if not self.components:
            raise ValueError("a mixture needs at least one component")
        first = self.components[0]
        for c in self.components[1:]:
            if c.minimize != first.minimize or not np.array_equal(c.horizon, first.horizon):
                raise ValueError("mixture components must predict the same curves in the same direction")

    @property
    def weights(self) -> np.ndarray:
        return np.full(len(self.components), 1.0 / len(self.components))

    @property
    def horizon(self) -> np.ndarray:
        return self.components[0].horizon

    @property
    def minimize(self) -> bool:
        return self.components[0].minimize

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.components)

    @property
    def diagnostics(self) -> dict:
        problems = []
        for c in self.components:
            problems += [p for p in c.diagnostics.get("problems", []) if p not in problems]
        return {"ok": self.ok, "problems": problems}

    @property
    def seconds(self) -> float:
        return float(sum(c.seconds for c in self.components))

    @property
    def calibrated(self) -> bool:
        return any(c.calibrated for c in self.components)

    @property
    def spread(self):
        """None when no component's spread was recalibrated, else the components' spreads
        (a tuple, None for a component left as fitted)."""
        spreads = tuple(c.spread for c in self.components)
        return None if all(s is None for s in spreads) else spreads

    def without_spread(self) -> MixturePrediction:
        """The same mixture with every component's spread as fitted."""
        return dataclasses.replace(self, components=tuple(without_spread(c) for c in self.components))

    @staticmethod
    def _concat(draws) -> np.ndarray:
        draws = [np.asarray(d) for d in draws]
        if len({d.shape[0] for d in draws}) != 1:
            raise ValueError("equal weights need the same number of draws in every component")
        return np.concatenate(draws, axis=0)

    @property
    def samples(self) -> np.ndarray:
        """[K S, N] draws of the final value (table units)."""
        return self._concat([c.samples for c in self.components])

    @property
    def point(self) -> np.ndarray:
        """The median of the mixture's draws before any spread recalibration, [N]."""
        return np.median(self._concat([without_spread(c).samples for c in self.components]), axis=0)

    @property
    def mean(self) -> np.ndarray:
        """The mixture's mean: the average of the component means, [N]."""
        return np.mean([c.mean for c in self.components], axis=0)

    @property
    def std(self) -> np.ndarray:
        return self.samples.std(0)

    def quantile(self, q) -> np.ndarray:
        return np.quantile(self.samples, q, axis=0)

    def predict_at(self, epochs) -> np.ndarray:
        """[K S, N, E] draws at ``epochs`` (:meth:`Prediction.predict_at`)."""
        return self._concat([c.predict_at(epochs) for c in self.components])

    def model_draws(self, epochs) -> np.ndarray:
        """[K S, N, E] model-scale draws; the components must share their scale (a mixed
        grid's model-scale and dataset-scale candidates do not: an error)."""
        if len({c.scale for c in self.components}) != 1:
            raise ValueError("mixture components on different scales have no common model scale")
        return self._concat([c.model_draws(epochs) for c in self.components])

    def log_density(self, final_values) -> np.ndarray:
        """log of the weighted average of the component densities at ``final_values`` [N]."""
        lpd = np.stack([c.log_density(final_values) for c in self.components])
        return logsumexp(lpd + np.log(self.weights)[:, None], axis=0)


def without_spread(pred):
    """``pred`` (a Prediction or a :class:`MixturePrediction`) with its spread as fitted."""
    if isinstance(pred, MixturePrediction):
        return pred.without_spread()
    return pred if pred.spread is None else dataclasses.replace(pred, spread=None)


__all__ = ["MixturePrediction", "without_spread"]
