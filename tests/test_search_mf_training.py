"""Multi-fidelity search with real (tiny) training: paused trials keep a checkpoint, resume from
it with the uninterrupted run's curve, a killed search resumes them, a missing checkpoint
restarts its trial from epoch 0 with one warning, and no checkpoint outlives the search."""

from __future__ import annotations

import shutil
import warnings

import jax
import numpy as np
import pytest

from nax import checkpoints as ck_lib
from nax import train
from nax.search import halving, loop
from nax.search import journal as journal_lib
from nax.search.evaluators import TrainingEvaluator

# compiling the tiny network is what costs time on a CPU
pytestmark = pytest.mark.slow

CFG = train.TrainConfig(
    epochs=3, channels=4, cells_per_stage=1, batch_size=128, evaluate_test=False, learning_rate=0.05
)


def _small(s: train.Splits) -> train.Splits:
    return train.Splits(
        s.name, s.num_classes, s.train_images[:256], s.train_labels[:256], s.val_images[:128], s.val_labels[:128]
    )


def _halving(ev, pool):
    # three trials train 1 epoch each, the best is resumed to 3: rungs (1, 3) at eta 3
    return halving.successive_halving(3, 1, 3, 3, space=ev.space, candidates=pool, repeat=False)


def _search(ev, pool, out, *, replay=None, until=None):
    path = out / "journal.jsonl"
    j = journal_lib.Journal.reopen(path) if replay else journal_lib.Journal.create(path, {}, 0)
    try:
        return loop.run_search(
            _halving(ev, pool), ev, loop.Budget(epochs=5), jax.random.key(0), journal=j, replay=replay, until=until
        )
    finally:
        j.close()


def _jobs(outcome):
    return [
        (r.run, r.job, r.start, r.result.arch, r.result.status, r.result.curve, r.result.cost_epochs)
        for r in outcome.runs
    ]


def test_paused_trials_resume_from_checkpoints_and_a_killed_search_resumes(digits_splits, tmp_path):
    splits = _small(digits_splits)
    pool = TrainingEvaluator(splits, CFG).space.sample(jax.random.key(3), 3)
    full_ev = TrainingEvaluator(splits, CFG, checkpoints=tmp_path / "a" / "ckpt")
    a = _search(full_ev, pool, tmp_path / "a")
    assert [r.result.status for r in a.runs] == ["paused"] * 3 + ["completed"]
    assert [r.result.cost_epochs for r in a.runs] == [1, 1, 1, 2] and a.epochs_spent == 5
    top = a.runs[-1]
    # resumed from its checkpoint: the curve of an uninterrupted 3-epoch run of that trial
    plain = TrainingEvaluator(splits, CFG).evaluate(top.enc, top.seed)
    assert top.result.curve == plain.curve and top.start == 1
    events = journal_lib.read(tmp_path / "a" / "journal.jsonl")[1]
    assert sum(e["event"] == "checkpoint" for e in events) == 3
    # no trial can resume once the search is over: every checkpoint is gone, the peak reported
    assert ck_lib.usage(tmp_path / "a" / "ckpt").bytes == 0
    assert a.summary()["checkpoint_bytes_peak"] > 0

    # killed after the first rung (the stream closed): the checkpoints stay, the resumed
    # search promotes from them and ends exactly as the uninterrupted one
    b_ev = TrainingEvaluator(splits, CFG, checkpoints=tmp_path / "b" / "ckpt")
    (tmp_path / "b").mkdir()
    cut = _search(b_ev, pool, tmp_path / "b", until=lambda s: s.run.job == 2)
    assert len(cut.runs) == 3 and len(ck_lib.run_ids(tmp_path / "b" / "ckpt")) == 3
    shutil.copytree(tmp_path / "b", tmp_path / "c")  # the same kill, for the missing-checkpoint case
    replay = loop.replay_from(journal_lib.read(tmp_path / "b" / "journal.jsonl")[1])
    b = _search(b_ev, pool, tmp_path / "b", replay=replay)
    assert _jobs(b) == _jobs(a)

    # the promoted trial's checkpoint is missing at resume: it restarts from epoch 0 with one
    # warning line, is charged the epochs it retrains, and trains the same curve
    c_ev = TrainingEvaluator(splits, CFG, checkpoints=tmp_path / "c" / "ckpt")
    ck_lib.delete_run(tmp_path / "c" / "ckpt", f"trial-{top.run:06d}")
    replay = loop.replay_from(journal_lib.read(tmp_path / "c" / "journal.jsonl")[1])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        c = _search(c_ev, pool, tmp_path / "c", replay=replay)
    lines = [w for w in caught if issubclass(w.category, ck_lib.CheckpointWarning)]
    assert len(lines) == 1 and "restarts from epoch 0" in str(lines[0].message)
    assert c.runs[-1].result.curve == top.result.curve and c.runs[-1].result.cost_epochs == 3
    assert c.runs[-1].result.warning == str(lines[0].message)
    ends = [e for e in journal_lib.read(tmp_path / "c" / "journal.jsonl")[1] if e["event"] == "end"]
    assert ends[-1]["warning"] == str(lines[0].message)
    assert np.isclose(c.epochs_spent, 6)
