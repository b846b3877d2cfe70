"""Runs that pause and resume: nax.checkpoints with nax.train.train_architecture (real training, tiny preset)."""

import dataclasses
import os
import warnings

import numpy as np
import pytest

from nax import checkpoints, space, train

S = space.nb201
CONV = S.from_string("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|")
CFG = train.preset("tiny", epochs=3, batch_size=64, evaluate_test=True)  # test_train's FAST: one shared program


@pytest.fixture(scope="module")
def reference(digits_splits):
    """The uninterrupted run every pause/resume must reproduce."""
    return train.train_architecture(CONV, digits_splits, CFG)


def same_run(a, b):
    """Records equal but for wall time (run and per-epoch seconds)."""
    strip = lambda r: dataclasses.replace(r, wall_s=0.0, curve=tuple(m._replace(epoch_s=0.0) for m in r.curve))
    return strip(a) == strip(b)


def test_paused_twice_and_resumed_gives_the_uninterrupted_record(digits_splits, reference, tmp_path):
    ck = checkpoints.RunCheckpoints(tmp_path, "run")
    a = train.train_architecture(CONV, digits_splits, CFG, checkpoints=ck, until_epoch=1)
    assert a.status == "paused" and a.epochs_done == 1 and a.test_accuracy is None
    assert ck.saved.epoch == 1 and ck.saved.bytes > 0 and ck.resumed_epoch == 0
    assert [m[1:4] for m in a.curve] == [m[1:4] for m in reference.curve[:1]]

    ck = checkpoints.RunCheckpoints(tmp_path, "run")  # a new object, as a later job would make
    b = train.train_architecture(CONV, digits_splits, CFG, checkpoints=ck, resume=True, until_epoch=2)
    assert b.status == "paused" and ck.resumed_epoch == 1 and ck.saved.epoch == 2
    assert os.listdir(ck.path) == ["epoch-000002"]  # the latest epoch only

    ck = checkpoints.RunCheckpoints(tmp_path, "run")
    c = train.train_architecture(CONV, digits_splits, CFG, checkpoints=ck, resume=True)
    assert ck.resumed_epoch == 2 and ck.warning is None
    assert same_run(c, reference)  # bit for bit: losses, accuracies, test accuracy, status
    assert c.curve[0].epoch_s == a.curve[0].epoch_s  # the restored epochs keep their own timings
    assert c.wall_s >= sum(m.epoch_s for m in c.curve)  # seconds of all segments, not only the last
    assert ck.saved is None and checkpoints.usage(tmp_path).runs == 0  # completed: nothing left to resume


def test_checkpointing_changes_nothing(digits_splits, reference, tmp_path):
    rec = train.train_architecture(CONV, digits_splits, CFG, checkpoints=checkpoints.RunCheckpoints(tmp_path, "r"))
    assert same_run(rec, reference)


def _corrupt_arrays(path):
    files = [os.path.join(b, f) for b, _, fs in os.walk(path / "state") for f in fs]
    biggest = max(files, key=os.path.getsize)
    data = bytearray(open(biggest, "rb").read())
    data[len(data) // 2 :] = bytes(len(data) - len(data) // 2)  # zero the second half
    open(biggest, "wb").write(bytes(data))


def _corrupt_metadata(path):
    meta = path / "meta" / "metadata"
    meta.write_text(meta.read_text()[:-20])


def _remove_all(path):
    import shutil

    shutil.rmtree(path.parent)


@pytest.mark.parametrize("damage", [_remove_all, _corrupt_arrays, _corrupt_metadata], ids=["missing", "arrays", "meta"])
def test_missing_or_corrupt_checkpoint_restarts_with_one_warning(digits_splits, reference, tmp_path, damage):
    ck = checkpoints.RunCheckpoints(tmp_path, "run")
    train.train_architecture(CONV, digits_splits, CFG, checkpoints=ck, until_epoch=1)
    damage(ck.path / "epoch-000001")
    ck = checkpoints.RunCheckpoints(tmp_path, "run")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rec = train.train_architecture(CONV, digits_splits, CFG, checkpoints=ck, resume=True)
    assert [w.category for w in caught] == [checkpoints.CheckpointWarning]
    line = str(caught[0].message)
    assert "\n" not in line and "run run cannot be resumed" in line and "restarts from epoch 0" in line
    assert ck.warning == line and ck.resumed_epoch == 0
    assert same_run(rec, reference)  # nothing else lost: the whole run, from scratch


def test_a_torn_save_leaves_the_previous_checkpoint(digits_splits, reference, tmp_path):
    """A process killed while orbax wrote epoch 2 leaves its temporary folder beside epoch 1."""
    ck = checkpoints.RunCheckpoints(tmp_path, "run")
    train.train_architecture(CONV, digits_splits, CFG, checkpoints=ck, until_epoch=1)
    torn = ck.path / "epoch-000002.orbax-checkpoint-tmp-1234"
    (torn / "state").mkdir(parents=True)
    (torn / "state" / "junk").write_bytes(b"\0" * 100)
    assert ck.latest().epoch == 1
    ck = checkpoints.RunCheckpoints(tmp_path, "run")
    with warnings.catch_warnings():
        warnings.simplefilter("error", checkpoints.CheckpointWarning)
        rec = train.train_architecture(CONV, digits_splits, CFG, checkpoints=ck, resume=True, until_epoch=2)
    assert ck.resumed_epoch == 1 and os.listdir(ck.path) == ["epoch-000002"]  # the torn folder is gone
    assert [m[1:4] for m in rec.curve] == [m[1:4] for m in reference.curve[:2]]


def test_another_runs_checkpoint_is_refused(digits_splits, tmp_path):
    ck = checkpoints.RunCheckpoints(tmp_path, "run")
    train.train_architecture(CONV, digits_splits, CFG, checkpoints=ck, until_epoch=2)
    with pytest.raises(checkpoints.OtherRun, match="belongs to another run .*config, rng"):
        train.train_architecture(CONV, digits_splits, CFG.replace(seed=1), checkpoints=ck, resume=True)
    with pytest.raises(ValueError, match="is at epoch 2, past until_epoch=1"):
        train.train_architecture(CONV, digits_splits, CFG, checkpoints=ck, resume=True, until_epoch=1)
    assert ck.latest().epoch == 2  # refusing touched nothing


def test_stopped_run_keeps_no_checkpoint_and_fresh_start_replaces_one(digits_splits, reference, tmp_path):
    ck = checkpoints.RunCheckpoints(tmp_path, "run")
    rec = train.train_architecture(CONV, digits_splits, CFG, checkpoints=ck, callback=lambda r: True)
    assert rec.status == "stopped" and not ck.path.exists()
    train.train_architecture(CONV, digits_splits, CFG, checkpoints=ck, until_epoch=2)
    fresh = train.train_architecture(CONV, digits_splits, CFG, checkpoints=ck, until_epoch=1)  # resume=False
    assert ck.resumed_epoch == 0 and ck.latest().epoch == 1
    assert [m[1:4] for m in fresh.curve] == [m[1:4] for m in reference.curve[:1]]


def test_bad_until_epoch_and_run_id(digits_splits, tmp_path):
    for e in (0, 4):
        with pytest.raises(ValueError, match=r"until_epoch must be in 1\.\.3"):
            train.train_architecture(CONV, digits_splits, CFG, until_epoch=e)
    for bad in ("", "a/b", ".hidden"):
        with pytest.raises(ValueError, match="must be a plain folder name"):
            checkpoints.RunCheckpoints(tmp_path, bad)


def test_usage_delete_and_prune(tmp_path):
    """Disk use of a root; deleting runs that can no longer resume (arrays only: no training)."""
    import jax

    tree = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "n": np.array(3, np.int32)}
    leaves = jax.tree.leaves(tree)
    prog = checkpoints.Progress(1, 5, (), 0.5, (0, 7))
    for run in ("a", "b", "c"):
        ck = checkpoints.RunCheckpoints(tmp_path, run)
        ck.save(leaves, prog, {"run": run})  # written in the background
        saved = ck.wait()
        assert saved.epoch == 1 and saved.bytes > 0 and saved == ck.latest()
    use = checkpoints.usage(tmp_path)
    assert use.runs == 3 and use.bytes == sum(use.per_run.values()) and use.per_run["c"] == saved.bytes
    back, p = checkpoints.RunCheckpoints(tmp_path, "b").restore(leaves, {"run": "b"})
    assert p == prog and all(np.array_equal(x, y) and x.dtype == y.dtype for x, y in zip(back, leaves))
    assert checkpoints.delete_run(tmp_path, "a") == use.per_run["a"]
    assert checkpoints.prune(tmp_path, keep=["c"]) == use.per_run["b"]
    assert checkpoints.run_ids(tmp_path) == ["c"] and checkpoints.usage(tmp_path).runs == 1
    assert checkpoints.usage(tmp_path / "absent") == (0, 0, {})


def test_pack_unpack_round_trip_and_mismatch():
    leaves = [np.ones((2, 2), np.float32), np.array(4, np.int32), np.arange(3, dtype=np.float64), np.zeros(0)]
    flat = checkpoints.pack(leaves)
    assert flat.dtype == np.uint8 and flat.size == 16 + 4 + 24
    back = checkpoints.unpack(flat, leaves)
    assert all(np.array_equal(a, b) and a.shape == b.shape and a.dtype == b.dtype for a, b in zip(back, leaves))
    with pytest.raises(ValueError, match="the saved state has 44 bytes, the network's 20"):
        checkpoints.unpack(flat, leaves[:2])
