"""Where the strength check cuts the target's prefixes (issue 13, helper H13:
``cut="min_epochs"``; benchmarks/NOTES.md section 6, "The check's evidence").

Known truths: the epochs each cut keeps (by hand), which value the check then predicts (the
curve's own), and the independent candidate as the ``no_transfer`` model (the diagnosis).
"""

import dataclasses

import numpy as np
import pytest
from test_curves_model import MU_POP, T, simulate
from test_curves_strength import INF, SHIFT, population_prior

from nax.curves import spread, strength, strength_scoring
from nax.curves.calibration import Calibration
from nax.curves.predict import Query, predict


def test_min_epochs_cut_never_refits_a_judged_curve_on_fewer_than_min_epochs():
    counts = np.array([1, 2, 3, 4, 5, 6, 8, 10, 26])
    assert strength_scoring.check_keep(counts, "half").tolist() == [1, 1, 1, 2, 2, 3, 4, 5, 13]
    assert strength_scoring.check_keep(counts, "min_epochs").tolist() == [1, 1, 2, 3, 4, 4, 4, 5, 13]
    assert strength.CHECK_CUT in strength.CUTS
    with pytest.raises(ValueError, match="cut"):
        strength_scoring.check_keep(counts, "late")


def test_min_epochs_cut_predicts_the_same_last_epoch_from_more_of_the_prefix():
    values = simulate(3, 4, MU_POP)[0]
    six = Query(np.where(np.arange(T) < 6, values, np.nan), horizon=T)
    for cut, kept in (("half", 3), ("min_epochs", 4)):
        fit, rows, epochs, truth, rule = strength.scoring_task(six, cut=cut)
        assert rule == "prequential" and rows.tolist() == [0, 1, 2, 3]
        assert np.isfinite(fit.values).sum(axis=1).tolist() == [kept] * 4
        np.testing.assert_array_equal(epochs, [6] * 4)
        np.testing.assert_allclose(truth, values[:, 5])
    # the spread check keeps its half cut, so it shares the scoring fits only where both cuts agree
    check = lambda q: {"any": strength.scoring_task(q, spread.MIN_CHECK_EPOCHS)}  # noqa: E731
    assert not strength_scoring._same_cut(strength.scoring_task(six, cut="min_epochs"), check(six))
    ten = Query(np.where(np.arange(T) < 10, values, np.nan), horizon=T)
    assert strength_scoring._same_cut(strength.scoring_task(ten, cut="min_epochs"), check(ten))
    assert strength_scoring._same_cut(strength.scoring_task(six), check(six))


@pytest.mark.slow
def test_the_independent_candidate_predicts_what_no_transfer_predicts():
    # the diagnosis: `independent` is the no_transfer model plus the prior's extrapolation
    # noise, which is symmetric (d = 0), so it moves the spread and not the point
    prior = dataclasses.replace(population_prior(), calibration=Calibration(-2.25, 1.34, 0.72))
    values = np.where(np.arange(T) < 8, simulate(11, 12, MU_POP + SHIFT)[0], np.nan)
    (pred,) = strength.predict_auto_many(prior, [Query(values, horizon=T)], candidates=(strength.INDEPENDENT,),
                                         inference=INF, recalibrate=False)  # fmt: skip
    ref = predict(None, values, horizon=T, inference=INF)
    assert pred.strength["chosen"] == "independent" and pred.calibrated and not ref.calibrated
    assert np.median(np.abs(pred.point - ref.point)) < 0.01
    assert np.mean(pred.quantile(0.95) - pred.quantile(0.05)) > np.mean(ref.quantile(0.95) - ref.quantile(0.05))
