"""Many architectures per program: K cells trained by one compiled step.

``train_population(encs, splits, cfg)`` trains K NAS-Bench-201 cells at once: the
compile-once network of ``nax.models`` (encoding as an input, the one-hot mix) under
``jax.vmap`` over parameters, batch-norm statistics, optimiser states and encodings, so
one compiled train step advances all K cells on the same batch. The program runs on a
2-D mesh ``('arch', 'data')`` over the local devices (``population_mesh``): cells spread
over ``arch`` (``shard_map``: each device steps its own cells), or batches split over
``data`` when the devices do not divide K.

Each cell is trained exactly as ``nax.train.train_architecture`` trains it alone: the
same initial parameters (``fold_in(key(cfg.seed), 0)``), the same batches in the same
order, the same learning rate per step and the same evaluation, so the K records equal K
separate runs within float tolerance (``tests/test_population.py``). The one-hot mix is
used rather than ``lax.switch``: under ``vmap`` a switch on a batched index becomes a
select that runs every branch anyway.

This module imports nothing from ``nax.train`` (``nax.train`` re-exports
``train_population`` and loads datasets by name): ``splits`` is a ``nax.train.Splits``
and ``cfg`` a ``nax.train.TrainConfig``, read by attribute.

Where it pays: on the 2-core CPU of the development machine, vmap turns each convolution
into a grouped one and K cells per program train *fewer* images per second than one cell
(``benchmarks/results/population.json``); on a GPU the cells are far too small to fill the
device and K > 1 is how the hardware is used (``benchmarks/bench_gpu.py``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from nax import models
from nax import space as space_lib
from nax.records import EpochMetrics, RunRecord
from nax.steps import (
    batch_plan,
    epoch_order,
    evaluate_batches,
    init_compiler_options,
    make_optimizer,
    make_steps,
    step_rates,
    train_epoch,
)


def population_mesh(k: int, devices: Sequence | None = None) -> Mesh:
    """A 2-D mesh ``('arch', 'data')`` over ``devices`` (default: all local ones) for K cells.

    Every batch is split over ``data`` and all K cells run on every device (``arch`` has size 1;
    see below why the ``arch`` split is off). One device: 1x1.
    """
    devices = list(jax.local_devices() if devices is None else devices)
    n = len(devices)
    # The `arch` split (cells spread over devices through shard_map) gave records off by up to
    # 4/128 validation accuracy from K separate runs in the builder's --population 2 test on 2 CPU
    # devices; the `data` split matches them (losses within 5e-7). Until that is understood every
    # population runs on the `data` axis.
    n_arch = 1
    return Mesh(np.array(devices).reshape(n_arch, n // n_arch), ("arch", "data"))


def _supernet(num_classes: int, cfg):
    # one-hot: under vmap a switch becomes a select over every branch anyway
    return models.build_supernet(num_classes, cfg.channels, cfg.cells_per_stage, mix="onehot")


class PopulationTrainer:
    """The jitted, vmapped steps of K cells of one network size and optimiser.

    State leaves carry a leading axis of K and are sharded over ``arch``; batches are
    shared by all K cells and sharded over ``data``. One program per K and array shape.
    """

    def __init__(self, num_classes: int, cfg, k: int, *, devices: Sequence | None = None):
        self.cfg, self.num_classes, self.k = cfg, num_classes, int(k)
        self.model = _supernet(num_classes, cfg)
        self.tx = make_optimizer(cfg)
        self.mesh = population_mesh(self.k, devices)
        self.n_data = self.mesh.shape["data"]
        by_arch = NamedSharding(self.mesh, P("arch"))
        batch = NamedSharding(self.mesh, P("data"))
        repl = NamedSharding(self.mesh, P())
        steps = make_steps(self.model, self.tx, True)

        def init_cells(key_data, encs, image_shape):  # the same key for every cell, as K separate runs
            key = jax.random.wrap_key_data(key_data)
            return jax.vmap(lambda e: steps.init(key, e, image_shape))(encs)

        init = init_cells
        train = jax.vmap(steps.train, in_axes=(0, None, None, 0, None))
        evaluate = jax.vmap(steps.eval, in_axes=(0, None, None, None, 0))
        if self.mesh.shape["arch"] > 1:
            # cells spread over devices: each device runs the vmapped step on its own cells.
            # Left to the SPMD partitioner instead, the vmapped step sharded over the cell axis
            # gave wrong curves on 2 CPU devices (jax 0.10.2): losses 0.15 off after an epoch.
            a, r = P("arch"), P()
            smap = lambda f, i, o: jax.shard_map(f, mesh=self.mesh, in_specs=i, out_specs=o, check_vma=False)

            def init(key_data, encs, image_shape):
                return smap(lambda kd, e: init_cells(kd, e, image_shape), (r, a), a)(key_data, encs)

            train = smap(train, (a, r, r, a, r), (a, a))
            evaluate = smap(evaluate, (a, r, r, r, a), a)
        self._init = jax.jit(
            init,
            static_argnums=(2,),
            in_shardings=(repl, by_arch),
            out_shardings=by_arch,
            compiler_options=init_compiler_options(),
        )
        self._train = jax.jit(
            train,
            in_shardings=(by_arch, batch, batch, by_arch, repl),
            out_shardings=(by_arch, by_arch),
            donate_argnums=(0,),  # the old state is never read again
        )
        self._eval = jax.jit(evaluate, in_shardings=(by_arch, batch, batch, batch, by_arch), out_shardings=by_arch)

    @property
    def trace_counts(self) -> dict[str, int]:
        """Programs compiled so far per step (jit's cache)."""
        return {"init": self._init._cache_size(), "train": self._train._cache_size(), "eval": self._eval._cache_size()}

    def init(self, key, encs, image_shape):
        return self._init(jax.random.key_data(key), jnp.asarray(encs, jnp.int32), tuple(image_shape))

    def train_step(self, state, x, y, encs, lr: float):
        """One step of all K cells on the batch ``(x, y)``; returns the state and ``{"loss": (K,)}``."""
        return self._train(state, x, y, jnp.asarray(encs, jnp.int32), np.float32(lr))

    def evaluate(self, state, images, labels, encs, batch_size: int, n_devices: int) -> tuple[np.ndarray, np.ndarray]:
        """Accuracy fractions and mean cross-entropies ``(K,)`` over all of ``images``.

        Batches of ``nax.train.Trainer.evaluate``'s size for ``n_devices`` (last one padded).
        """
        encs = jnp.asarray(encs, jnp.int32)
        totals = evaluate_batches(self._eval, state, images, labels, encs, batch_size, n_devices)
        return totals["correct"] / totals["count"], totals["loss_sum"] / totals["count"]


Callback = Callable[[RunRecord], bool]


def train_population(
    encs,
    dataset,
    cfg,
    *,
    callback: Callback | None = None,
    space: space_lib.CellSpace = space_lib.nb201,
    trainer: PopulationTrainer | None = None,
) -> list[RunRecord]:
    """Train the K cells ``encs`` on ``dataset`` (a ``nax.train.Splits``) in one program.

    Returns K ``RunRecord``s in the order of ``encs``, each what
    ``train_architecture(enc, dataset, cfg)`` returns within float tolerance. ``callback``
    runs per cell after every epoch as in ``train_architecture`` (True stops that cell);
    a cell whose training loss is not finite ends as ``diverged``. Stopped and diverged
    cells stay in the program (their results are no longer read) until every cell is
    done. ``epoch_s`` and ``wall_s`` are the population's wall time divided by K: each
    cell's share of the program, which is what it cost.
    """
    if isinstance(dataset, str):
        raise TypeError("train_population takes loaded splits; nax.train.train_population loads a dataset by name")
    encs = [space.validate(e) for e in encs]
    k = len(encs)
    if k < 1:
        raise ValueError("train_population needs at least one encoding")
    archs = [space.to_string(e) for e in encs]
    splits = dataset
    n_train = len(splits.train_labels)
    n_dev = jax.local_device_count()
    bs, steps = batch_plan(cfg.batch_size, n_train)  # train_architecture's: the same examples per step
    if trainer is None:
        trainer = PopulationTrainer(splits.num_classes, cfg, k)
    elif trainer.k != k or trainer.num_classes != splits.num_classes:
        raise ValueError(f"the trainer given was built for {trainer.k} cells of {trainer.num_classes} classes")
    rates = step_rates(cfg, steps)
    enc_arr = np.stack(encs).astype(np.int32)

    t_start = time.perf_counter()
    state = trainer.init(jax.random.fold_in(jax.random.key(cfg.seed), 0), enc_arr, splits.train_images.shape[1:])
    image_shape = splits.train_images.shape[1:]
    num_params = [
        int(models.analytic_size(e, splits.num_classes, cfg.channels, cfg.cells_per_stage, image_shape)[0])
        for e in encs
    ]

    def record(i, status, test_acc=None):
        return RunRecord(
            archs[i],
            splits.name,
            cfg.seed,
            status,
            cfg.epochs,
            tuple(curves[i]),
            test_acc,
            num_params[i],
            (time.perf_counter() - t_start) / k,
            cfg.to_dict(),
        )

    curves: list[list[EpochMetrics]] = [[] for _ in range(k)]
    status: list[str | None] = [None] * k  # None while the cell trains
    done: list[RunRecord | None] = [None] * k
    step = 0
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        order = epoch_order(cfg.seed, epoch, n_train)
        state, mean_loss, step = train_epoch(
            trainer.train_step, state, splits.train_images, splits.train_labels, order, bs, steps, enc_arr, rates,
            step,
        )  # fmt: skip
        train_loss = np.asarray(mean_loss)
        val_acc, val_loss = trainer.evaluate(
            state, splits.val_images, splits.val_labels, enc_arr, cfg.eval_batch_size, n_dev
        )
        epoch_s = (time.perf_counter() - t0) / k
        for i in range(k):
            if status[i] is not None:
                continue
            if not math.isfinite(float(train_loss[i])):
                curves[i].append(EpochMetrics(epoch, float(train_loss[i]), float("nan"), float("nan"), epoch_s))
                status[i] = "diverged"
                done[i] = record(i, "diverged")
                continue
            curves[i].append(EpochMetrics(epoch, float(train_loss[i]), float(val_acc[i]), float(val_loss[i]), epoch_s))
            if callback is not None and epoch < cfg.epochs and callback(record(i, "running")):
                status[i] = "stopped"
                done[i] = record(i, "stopped")
        if all(s is not None for s in status):
            break

    test_acc = [None] * k
    live = [i for i in range(k) if status[i] is None]
    if live and cfg.evaluate_test and splits.test_images is not None:
        acc, _ = trainer.evaluate(state, splits.test_images, splits.test_labels, enc_arr, cfg.eval_batch_size, n_dev)
        test_acc = [float(a) for a in acc]
    for i in live:
        done[i] = record(i, "completed", test_acc[i])
    return done
