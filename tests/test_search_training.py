"""The training evaluator: real (tiny) training inside the search; stopping and divergence.

Compiling is what costs time on a CPU: one program serves the stop/complete runs and one
the diverging runs.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from nax import space as space_lib
from nax import train
from nax.search import journal as journal_lib
from nax.search import loop, progress, report, strategies
from nax.search.evaluators import TrainingEvaluator

CFG = train.TrainConfig(
    epochs=2, channels=4, cells_per_stage=1, batch_size=128, evaluate_test=False, learning_rate=0.05
)
SPACE = space_lib.nb201
CONV = SPACE.from_string(
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
)
POOL = SPACE.from_string(
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"
)


def _small(s: train.Splits) -> train.Splits:
    return train.Splits(
        s.name, s.num_classes, s.train_images[:256], s.train_labels[:256], s.val_images[:128], s.val_labels[:128]
    )


@pytest.mark.slow
def test_training_stops_early_and_a_diverged_run_is_recorded(digits_splits, tmp_path):
    ev = TrainingEvaluator(_small(digits_splits), CFG)
    # a stop test that cuts the run after its first epoch, predicting 0.5
    r = ev.evaluate(CONV, 0, lambda curve: (True, 0.5))
    assert r.status == "stopped" and len(r.curve) == 1 and r.cost_epochs == 1 and r.value == 0.5
    full = ev.evaluate(CONV, 0, lambda curve: (False, None))
    assert full.status == "completed" and len(full.curve) == 2 and full.final == full.curve[-1]
    assert full.curve[0] == r.curve[0]  # same seed, same first epoch
    assert [m["val_acc"] for m in full.epoch_metrics] == list(full.curve)

    # watched by the search's progress display, the same run trains the same curve, and the
    # display sees its epochs (all but the last, which ends the run); 128 validation images:
    # accuracies resolve to 3 decimals
    seen = []
    show = progress.Progress(lambda s: None, quiet=True)
    show.epoch = seen.append
    watched = show.watch(ev).evaluate(CONV, 0, lambda curve: (False, None))
    assert watched.curve == full.curve and watched.status == "completed" and seen == [1]
    assert report.accuracy_decimals(ev) == (3, "validation set of 128 examples")

    # a learning rate of 1e30 makes the training loss non-finite in the first epoch: every run
    # diverges; the search records them and goes on (this compiles a second program)
    hot = TrainingEvaluator(_small(digits_splits), CFG.replace(learning_rate=1e30))
    strat = strategies.random(SPACE, candidates=np.stack([CONV, POOL]))
    j = journal_lib.Journal.create(tmp_path / "journal.jsonl", {}, 0)
    # two runs: a run starts only if a whole run (2 epochs) fits into the budget left
    out = loop.run_search(strat, hot, loop.Budget(epochs=4), jax.random.key(0), journal=j)
    j.close()
    assert len(out.runs) >= 2 and {r.result.status for r in out.runs} == {"diverged"} and out.best is None
    assert all(r.result.value is None and "non-finite" in r.result.error for r in out.runs)
    failed = [e for e in journal_lib.read(tmp_path / "journal.jsonl")[1] if e["event"] == "failed"]
    assert len(failed) == len(out.runs) and failed[0]["status"] == "diverged"
    # the journal replays the diverged runs exactly (their curves are the finite prefix)
    replay = loop.replay_from(journal_lib.read(tmp_path / "journal.jsonl")[1])
    assert [replay.finished[r.run].curve for r in out.runs] == [r.result.curve for r in out.runs]
