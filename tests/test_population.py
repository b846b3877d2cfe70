"""Many architectures per program (``nax.population``): K cells in one compiled step train
exactly as K separate ``train_architecture`` runs; the GPU benchmark runs end to end on CPU."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import REPO

from nax import data, population, space, train

ARCHS = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|none~0|nor_conv_1x1~1|avg_pool_3x3~2|",
    "|skip_connect~0|+|none~0|nor_conv_3x3~1|+|nor_conv_1x1~0|avg_pool_3x3~1|skip_connect~2|",
)


@pytest.fixture(scope="module")
def small(digits_splits):
    s = digits_splits
    return train.Splits("digits", 10, s.train_images[:256], s.train_labels[:256], s.val_images[:128],
                        s.val_labels[:128], s.test_images[:128], s.test_labels[:128])  # fmt: skip


CFG = train.preset("tiny", epochs=2, batch_size=64, eval_batch_size=128)


def test_mesh_spreads_cells_first_then_batches():
    devs = jax.local_devices()
    assert len(devs) == 2  # conftest: two fake CPU devices
    assert dict(population.population_mesh(2).shape) == {"arch": 1, "data": 2}  # arch split off: see population_mesh
    assert dict(population.population_mesh(4).shape) == {"arch": 1, "data": 2}
    assert dict(population.population_mesh(3).shape) == {"arch": 1, "data": 2}
    assert dict(population.population_mesh(1).shape) == {"arch": 1, "data": 2}
    assert dict(population.population_mesh(5, devs[:1]).shape) == {"arch": 1, "data": 1}


def test_needs_loaded_splits_and_cells(small):
    with pytest.raises(TypeError, match="nax.train.train_population"):
        population.train_population([space.nb201.from_string(ARCHS[0])], "digits", CFG)
    with pytest.raises(ValueError, match="at least one"):
        population.train_population([], small, CFG)


def _assert_same_record(a, b):
    assert (a.arch, a.dataset, a.seed, a.status, a.num_params) == (b.arch, b.dataset, b.seed, b.status, b.num_params)
    assert a.config == b.config and len(a.curve) == len(b.curve) == CFG.epochs
    for ma, mb in zip(a.curve, b.curve):
        assert ma.epoch == mb.epoch
        np.testing.assert_allclose(mb.train_loss, ma.train_loss, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(mb.val_loss, ma.val_loss, rtol=1e-4, atol=1e-5)
        assert abs(mb.val_accuracy - ma.val_accuracy) <= 1 / 128 + 1e-9  # at most one example flips
    assert abs(a.test_accuracy - b.test_accuracy) <= 1 / 128 + 1e-9


@pytest.mark.slow
@pytest.mark.parametrize("k", [2, 3])  # 2: cells sharded over 'arch'; 3: batches over 'data'
def test_curves_equal_separate_runs(small, k):
    encs = [space.nb201.from_string(a) for a in ARCHS[:k]]
    separate = [train.train_architecture(e, small, CFG) for e in encs]
    trainer = population.PopulationTrainer(small.num_classes, CFG, k)
    together = population.train_population(encs, small, CFG, trainer=trainer)
    assert [r.arch for r in together] == list(ARCHS[:k])
    for a, b in zip(separate, together):
        _assert_same_record(a, b)
    assert {r.status for r in together} == {"completed"}

    # another seed and learning rate, a callback stopping the first cell: the same program
    stop_first = lambda rec: rec.arch == ARCHS[0]
    other = population.train_population(encs, small, CFG.replace(seed=1, learning_rate=1e9), callback=stop_first,
                                        trainer=trainer)  # fmt: skip
    assert trainer.trace_counts["train"] == 1
    assert other[0].status == "stopped" and other[0].epochs_done == 1 and other[0].test_accuracy is None
    # a learning rate of 1e9 makes every cell with a convolution diverge, each with its partial curve
    for r in other[1:]:
        assert r.status == "diverged" and not np.isfinite(r.curve[-1].train_loss)


@pytest.mark.slow
def test_gpu_benchmark_smoke_runs_on_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    cmd = [sys.executable, str(REPO / "benchmarks" / "bench_gpu.py"), "--smoke", "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(out.read_text())
    names = {row["contender"] for row in res["rows"]}
    assert names == {"specialised", "single", "population 1", "population 2"}
    assert all(row["img_s_median"] > 0 and row["compile_s"] > 0 for row in res["rows"])
    assert set(res["ratios"]["tiny"]) >= {"population_2_over_population_1", "compile_once_over_specialised"}
    assert res["provenance"]["jax_backend"] == "cpu"


def test_reachable_from_nax_train(small):
    if not hasattr(train, "train_population"):
        pytest.skip("nax.train does not re-export train_population yet (requested of nax/train.py's owner)")
    with pytest.raises(ValueError, match="at least one"):
        train.train_population([], small, CFG)


def _builder():
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_metadataset", REPO / "experiments" / "build_metadataset.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve their module by name
    spec.loader.exec_module(mod)
    return mod


def test_builder_gpu_config_and_groups(tmp_path):
    mod = _builder()
    cfg = mod.CONFIGS["gpu"]
    t = cfg.train
    assert (t.channels, t.cells_per_stage, t.image_size, t.batch_size) == (16, 5, (32, 32), 256)
    assert set(mod.CATALOG) <= set(cfg.datasets) and set(data.NAMES) <= set(cfg.datasets)
    assert len(cfg.archs()) == len(mod.HAND_PICKED) + cfg.num_archs
    # catalog datasets count as present only where prepared under the TFDS dir
    assert not mod.available("cifar10", catalog_dir=tmp_path)
    (tmp_path / "cifar10" / "3.0.2").mkdir(parents=True)
    (tmp_path / "cifar10" / "3.0.2" / "dataset_info.json").write_text("{}")
    assert mod.available("cifar10", catalog_dir=tmp_path)
    todo = [("a", "x1"), ("b", "y1"), ("a", "x2"), ("a", "x3"), ("b", "y2")]
    assert list(mod._groups(todo, 2)) == [("a", ["x1", "x2"]), ("a", ["x3"]), ("b", ["y1", "y2"])]
    with pytest.raises(ValueError, match="population size"):
        mod.run(mod.CONFIGS["quick"], tmp_path / "m", population_size=0, progress=False)


@pytest.mark.slow
def test_builder_population_gives_the_same_records(tmp_path, monkeypatch):
    # a population trains the one-hot supernet (nax.population); its single runs are compared
    # in the same form (the builder's single runs use the select default, equal to one-hot
    # only up to float rounding, which SGD amplifies past this test's tolerance in 3 epochs)
    import functools

    from nax import models

    monkeypatch.setattr(models, "build_supernet", functools.partial(models.build_supernet, mix="onehot"))
    # a trainer cache of its own, so that no select-form trainer is reused here nor a one-hot one later
    monkeypatch.setattr(train, "_shared_trainer", functools.lru_cache(maxsize=8)(train._shared_trainer.__wrapped__))
    mod = _builder()
    cfg = mod.CONFIGS["quick"]
    one = mod.run(cfg, tmp_path / "one", max_runs=4, progress=False)
    two = mod.run(cfg, tmp_path / "two", max_runs=4, progress=False, population_size=2)
    assert one["runs_now"] == two["runs_now"] == 4 and two["population"] == 2
    a = {(r.dataset, r.arch): r for r in mod.read_journal(tmp_path / "one" / "journal.jsonl")[1]}
    b = {(r.dataset, r.arch): r for r in mod.read_journal(tmp_path / "two" / "journal.jsonl")[1]}
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(b[key].val_accuracies, a[key].val_accuracies, atol=2 / 128)
        np.testing.assert_allclose(
            [m.train_loss for m in b[key].curve], [m.train_loss for m in a[key].curve], rtol=1e-3
        )
