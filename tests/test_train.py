import json

import chex
import jax
import numpy as np
import pytest

from nax import models, space, train
from nax import steps as steps_lib

S = space.nb201
CONV = S.from_string("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|")
FAST = train.preset("tiny", epochs=3, batch_size=64, evaluate_test=True)


@pytest.mark.slow
def test_runs_on_two_devices_with_replicated_state():
    assert jax.local_device_count() == 2, "conftest forces two CPU devices"
    tr = train.Trainer(10, FAST)
    st = tr.init(jax.random.key(0), CONV, (8, 8, 1))
    leaf = jax.tree.leaves(st["params"])[0]
    assert leaf.sharding.is_fully_replicated and len(leaf.sharding.device_set) == 2


def test_learns_and_records_a_curve(digits_splits):
    rec = train.train_architecture(CONV, digits_splits, FAST)
    assert rec.status == "completed" and rec.epochs_done == 3
    accs = rec.val_accuracies
    assert accs[-1] > 0.8, accs  # 8x8 digits are easy; chance is 0.1
    assert rec.curve[-1].train_loss < rec.curve[0].train_loss
    assert rec.test_accuracy is not None and rec.test_accuracy > 0.75
    assert rec.num_params > 0 and all(m.epoch_s > 0 for m in rec.curve)


def test_same_seed_same_curve_other_seed_differs(digits_splits):
    a = train.train_architecture(CONV, digits_splits, FAST)
    b = train.train_architecture(CONV, digits_splits, FAST)
    c = train.train_architecture(CONV, digits_splits, FAST.replace(seed=1))
    strip = lambda r: [(m.train_loss, m.val_accuracy, m.val_loss) for m in r.curve]
    assert strip(a) == strip(b)
    assert strip(a) != strip(c)


@pytest.mark.slow  # 21 runs: > 15 s on the 2-core machine
def test_compile_once_for_twenty_architectures(digits_splits):
    """One trace of each step serves 20 architectures, other seeds, lengths and learning rates."""
    chex.clear_trace_counter()
    cfg = FAST.replace(epochs=1, batch_size=96, evaluate_test=False)
    tr = train.Trainer(10, cfg, wrap=chex.assert_max_traces(n=1))  # a second trace raises
    encs = S.sample(jax.random.key(7), 20)
    assert len({tuple(e) for e in encs}) == 20
    recs = train.train_many(encs, digits_splits, cfg, trainer=tr)
    assert len({r.arch for r in recs}) == 20
    train.train_architecture(encs[0], digits_splits, cfg.replace(seed=3, epochs=2, learning_rate=0.05), trainer=tr)
    assert tr.trace_counts == {"init": 1, "train": 1, "eval": 1}


@pytest.mark.slow
def test_shared_trainer_compiles_once_per_program(digits_splits):
    cfg = FAST.replace(epochs=1, batch_size=80, evaluate_test=False)  # a batch shape no other test uses
    tr = train.get_trainer(10, cfg)
    assert train.get_trainer(10, cfg.replace(seed=5, learning_rate=0.3, epochs=4)) is tr
    before = tr.trace_counts
    train.train_many(S.sample(jax.random.key(8), 3), digits_splits, cfg)
    traced = {k: tr.trace_counts[k] - before[k] for k in before}
    assert traced["train"] == 1 and traced["init"] <= 1 and traced["eval"] <= 1, traced
    train.train_architecture(CONV, digits_splits, cfg.replace(seed=2, epochs=2, learning_rate=0.05))
    assert {k: tr.trace_counts[k] - before[k] for k in before} == traced


@pytest.mark.slow
def test_steps_are_pure_functions_of_their_arguments(digits_splits):
    """Same state and batch in, same state and loss out, whatever ran in between."""
    cfg = FAST
    tx = train.make_optimizer(cfg)
    model = models.build_supernet(10, cfg.channels, cfg.cells_per_stage)
    steps = steps_lib.make_steps(model, tx, supernet=True)
    enc = jax.numpy.asarray(CONV, jax.numpy.int32)
    state = jax.jit(steps.init, static_argnums=2)(jax.random.key(0), enc, (8, 8, 1))
    x, y = digits_splits.train_images[:64], digits_splits.train_labels[:64]
    step = jax.jit(steps.train)
    a, ma = step(state, x, y, enc, 0.1)
    step(a, x[::-1], y[::-1], enc, 0.5)  # an unrelated step in between
    b, mb = step(state, x, y, enc, 0.1)
    chex.assert_trees_all_equal((a, ma), (b, mb))
    assert float(ma["loss"]) > 0
    with pytest.raises(AssertionError):  # and the state did move
        chex.assert_trees_all_equal(a["params"], state["params"])


def test_a_trainer_for_another_program_is_refused(digits_splits):
    tr = train.Trainer(10, FAST.replace(channels=8))
    with pytest.raises(ValueError, match="another network or optimiser"):
        train.train_architecture(CONV, digits_splits, FAST, trainer=tr)
    spec = train.Trainer(10, FAST.replace(form="specialised"), CONV)
    other = S.from_string(
        "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
    )
    with pytest.raises(ValueError, match="another network or optimiser"):
        train.train_architecture(other, digits_splits, FAST.replace(form="specialised"), trainer=spec)


@pytest.mark.slow  # compiles a specialised network: > 15 s on the 2-core machine
def test_specialised_form_matches_supernet_form(digits_splits):
    """Same names → same initialisation; the two forms learn the same curve (up to float noise)."""
    sup = train.train_architecture(CONV, digits_splits, FAST.replace(epochs=2))
    spec = train.train_architecture(CONV, digits_splits, FAST.replace(epochs=2, form="specialised"))
    np.testing.assert_allclose(sup.val_accuracies, spec.val_accuracies, atol=0.02)


def test_callback_stops_the_run(digits_splits):
    seen = []

    def stop_after_two(rec):
        seen.append(rec.epochs_done)
        return rec.epochs_done >= 2

    rec = train.train_architecture(CONV, digits_splits, FAST.replace(epochs=5), callback=stop_after_two)
    assert rec.status == "stopped" and rec.epochs_done == 2 and seen == [1, 2]
    assert rec.test_accuracy is None


@pytest.mark.slow
def test_divergence_is_a_status_not_an_exception(digits_splits):
    rec = train.train_architecture(CONV, digits_splits, FAST.replace(learning_rate=1e12, weight_decay=0.0))
    assert rec.status == "diverged"
    assert 1 <= rec.epochs_done <= 3 and not np.isfinite(rec.curve[-1].train_loss)


def test_record_json_round_trip(digits_splits):
    rec = train.train_architecture(CONV, digits_splits, FAST.replace(epochs=1))
    back = train.RunRecord.from_json(rec.to_json())
    assert back == rec
    assert json.loads(rec.to_json())["curve"][0]["epoch"] == 1


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(epochs=0), "epochs must be >= 1"),
        (dict(optimizer="rmsprop"), "unknown optimizer"),
        (dict(schedule="step"), "unknown schedule"),
        (dict(form="dense"), "unknown form"),
    ],
)
def test_bad_config(kw, match):
    with pytest.raises(ValueError, match=match):
        train.TrainConfig(**kw)
    with pytest.raises(ValueError, match="unknown training preset"):
        train.preset("gpu-huge")


def _init_at_default_options(trainer, key, enc, shape):
    """``trainer``'s init step compiled with XLA's default options (no ``compiler_options``)."""
    make = steps_lib.make_steps(trainer.model, trainer.tx, trainer.supernet)
    return jax.jit(make.init, out_shardings=trainer.repl, static_argnums=(2,))(key, np.asarray(enc, np.int32), shape)


@pytest.mark.slow  # each default-options init compiles for 10-30 s on the 2-core machine
@pytest.mark.parametrize("preset", ["tiny", "metadata", "cpu", "nb201"])
def test_init_at_level_one_gives_the_default_variables_bitwise(preset):
    """The init step runs at LLVM level 1 on the CPU (its compile: 5-8 s -> 1.6-3 s at small
    sizes, NOTES §2) and gives bit for bit the variables and optimiser state of the default
    compile in both forms, so no curve moves."""
    assert steps_lib.init_compiler_options() == {"xla_backend_optimization_level": 1}
    enc = S.from_string("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|skip_connect~0|avg_pool_3x3~1|none~2|")
    shape = {"tiny": (8, 8, 1), "metadata": (8, 8, 1), "cpu": (28, 28, 1), "nb201": (32, 32, 3)}[preset]
    for form in ("specialised", "supernet"):
        tr = train.Trainer(10, train.preset(preset, form=form), enc)
        key = jax.random.key(0)
        chex.assert_trees_all_equal(tr.init(key, enc, shape), _init_at_default_options(tr, key, enc, shape))
