"""The PyTorch peer network of benchmarks/bench_peer.py is nax's network: same parameter
count, same logits and same SGD steps once nax's weights are copied across.

PyTorch is the optional ``peer`` extra (a multi-GB install), never a test dependency: every
test here skips with the reason when it is absent.
"""

import importlib.util
import pathlib

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is the optional `peer` extra (pip install -e '.[peer]')")

import jax  # noqa: E402

from nax import models, space, train  # noqa: E402

_PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "peer_torch.py"
_spec = importlib.util.spec_from_file_location("peer_torch", _PATH)
pt = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pt)

ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
#: every op at least once: none, skip, conv1x1, conv3x3, avg pool
ALL_OPS = (0, 1, 2, 3, 4, 3)


def test_op_names_and_edges_are_nax_s():
    assert pt.OPS == space.NB201_OPS
    assert pt.EDGES == space.nb201.edges and pt.NUM_NODES == space.nb201.num_nodes


@pytest.mark.parametrize("enc", [ARCH, ALL_OPS, (0, 0, 0, 0, 0, 0), (2, 2, 2, 2, 2, 2)])
def test_parameter_counts_equal_at_nb201_size(enc):
    enc = space.nb201.from_string(enc) if isinstance(enc, str) else np.asarray(enc)
    n_torch = pt.param_count(pt.TinyNetwork(enc, 10, 16, 5, in_channels=3))
    assert n_torch == models.param_count(models.build(enc, 10, 16, 5), (32, 32, 3))
    assert n_torch == models.analytic_size(enc, 10, 16, 5)[0]


def test_the_benchmark_cell_has_nb201_s_parameter_count():
    assert pt.param_count(pt.TinyNetwork(space.nb201.from_string(ARCH), 10, 16, 5)) == 1_288_506


def _tiny(enc, seed=0):
    """A C=4, N=1 nax network on 8x8x1 images and the PyTorch copy of its initial weights."""
    net = models.build(enc, 10, 4, 1)
    variables = net.init(jax.random.key(seed), np.zeros((1, 8, 8, 1), np.float32), train=False)
    tm = pt.load_flax_variables(pt.TinyNetwork(enc, 10, 4, 1, in_channels=1), jax.device_get(variables))
    return net, variables, tm.to(memory_format=torch.channels_last)


@pytest.mark.slow  # first jax compile + torch import: 17 s of the fast tier
@pytest.mark.parametrize("training", [False, True])
def test_logits_equal_after_weight_copy(training):
    net, variables, tm = _tiny(ALL_OPS)
    x = np.random.default_rng(0).standard_normal((16, 8, 8, 1)).astype(np.float32)
    tm.train(training)
    with torch.no_grad():
        got = tm(pt.to_input(x)).numpy()
    # jitted: op-by-op Flax compiles hundreds of small programs (minutes on a loaded machine)
    apply = jax.jit(lambda v, x: net.apply(v, x, train=training, mutable=["batch_stats"] if training else False))
    want = apply(variables, x)
    want = np.asarray(want[0] if training else want)
    assert np.abs(want).max() > 0.1  # not a degenerate all-zero comparison
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_weight_copy_refuses_another_cell_s_variables():
    _, variables, _ = _tiny((1, 1, 1, 1, 1, 1))  # no conv edges
    with pytest.raises(KeyError):
        pt.load_flax_variables(pt.TinyNetwork(ALL_OPS, 10, 4, 1, in_channels=1), variables)


@pytest.mark.slow
def test_same_sgd_steps_give_the_same_losses():
    """Optimiser, learning rate, momentum, Nesterov and weight decay of the TrainConfig on both sides."""
    cfg = train.preset("tiny", form="specialised", batch_size=32)
    enc = np.asarray(ALL_OPS)
    tr = train.Trainer(10, cfg, enc)
    state = tr.init(jax.random.key(0), enc, (8, 8, 1))
    variables = jax.device_get({"params": state["params"], "batch_stats": state["batch_stats"]})
    tm = pt.load_flax_variables(pt.TinyNetwork(enc, 10, 4, 1, in_channels=1), variables)
    tm = tm.to(memory_format=torch.channels_last).train()
    opt = pt.make_optimizer(tm, cfg)
    rng = np.random.default_rng(1)
    nax_losses, torch_losses = [], []
    for _ in range(4):
        x = rng.standard_normal((32, 8, 8, 1)).astype(np.float32)
        y = rng.integers(0, 10, 32).astype(np.int32)
        state, m = tr.train_step(state, x, y, enc, cfg.learning_rate)
        nax_losses.append(float(m["loss"]))
        torch_losses.append(float(pt.train_step(tm, opt, pt.to_input(x), torch.from_numpy(y.astype(np.int64)))))
    assert len(set(nax_losses)) == 4  # the weights moved between steps
    np.testing.assert_allclose(torch_losses, nax_losses, atol=1e-4)
