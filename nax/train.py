"""Train and evaluate one architecture; record its learning curve.

Reads top to bottom like big_vision's ``train.py``:

1. config (``TrainConfig``, frozen; presets for CPU work),
2. a ``Trainer``: the pure init / train-step / eval-step functions of ``nax.steps`` (explicit
   state in, new state and metrics out), jitted for one network shape, data parallel over
   all local devices (batch split over a ``data`` mesh axis, parameters replicated). With
   ``form="supernet"`` the encoding is an *argument* of the compiled step, so one
   ``Trainer`` serves every architecture of the space (compile once),
3. ``train_architecture``: the epoch loop; per epoch train loss, validation accuracy
   and loss, wall time; a callback may stop the run; a non-finite loss ends it as
   ``diverged`` with its partial curve; with ``nax.checkpoints`` a run pauses and resumes.

Results are ``RunRecord``s (``nax.records``): small, immutable, JSON-serialisable.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from nax import models
from nax import space as space_lib
from nax.checkpoints import Progress, RunCheckpoints
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

# ============================================================================ config


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train one architecture. Units: epochs, examples, learning rate per step."""

    epochs: int = 12
    batch_size: int = 128
    eval_batch_size: int = 512
    optimizer: str = "sgd"  # "sgd" (Nesterov momentum) or "adam"
    learning_rate: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # "cosine" or "constant"
    warmup_epochs: int = 0
    channels: int = 8
    cells_per_stage: int = 1
    #: pad/resize every image to (H, W); None keeps the dataset's size
    image_size: tuple[int, int] | None = None
    #: stratified subsets for CPU presets (None = whole split)
    train_limit: int | None = None
    val_limit: int | None = None
    #: "supernet": encoding is an input of one compiled program; "specialised": one program per architecture
    form: str = "supernet"
    #: evaluate on the test split after the last epoch
    evaluate_test: bool = True
    seed: int = 0

    def __post_init__(self):
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("batch sizes must be >= 1")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"unknown optimizer {self.optimizer!r}; accepted: sgd, adam")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"unknown schedule {self.schedule!r}; accepted: cosine, constant")
        if self.form not in ("supernet", "specialised"):
            raise ValueError(f"unknown form {self.form!r}; accepted: supernet, specialised")
        if self.image_size is not None:
            object.__setattr__(self, "image_size", tuple(int(s) for s in self.image_size))

    def replace(self, **kw) -> TrainConfig:
        return dataclasses.replace(self, **kw)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


#: Named presets. "cpu" trains in seconds per epoch on 2 cores; "nb201" is the paper's size.
PRESETS: dict[str, TrainConfig] = {
    "tiny": TrainConfig(epochs=2, channels=4, cells_per_stage=1, batch_size=64, train_limit=512, val_limit=256),
    "cpu": TrainConfig(epochs=12, channels=8, cells_per_stage=1, batch_size=128),
    "nb201": TrainConfig(epochs=200, channels=16, cells_per_stage=5, batch_size=256, learning_rate=0.1),
    # how the shipped meta-dataset (nax/metadata) was trained: a search that transfers from it
    # should train the same way, so its curves and accuracies are on the prior's scale
    "metadata": TrainConfig(
        epochs=12,
        channels=4,
        cells_per_stage=1,
        batch_size=128,
        learning_rate=0.1,
        image_size=(8, 8),
        train_limit=1280,
        val_limit=500,
        evaluate_test=True,
        eval_batch_size=500,
    ),
}


def preset(name: str, **overrides) -> TrainConfig:
    """A named preset with fields overridden."""
    if name not in PRESETS:
        raise ValueError(f"unknown training preset {name!r}; accepted: {', '.join(PRESETS)}")
    return PRESETS[name].replace(**overrides)


# ============================================================================ trainer


def data_mesh() -> Mesh:
    """A 1-D mesh over all local devices, axis ``data``."""
    return Mesh(np.array(jax.local_devices()), ("data",))


class Trainer:
    """The jitted ``Steps`` of one network shape and optimiser, data parallel over local devices.

    For ``form="supernet"`` every step takes the encoding as an argument; compiled programs
    are shared by all encodings. ``wrap`` is applied to each pure step before it is jitted
    (tests pass ``chex.assert_max_traces(n=1)``).
    """

    def __init__(self, num_classes: int, cfg: TrainConfig, encoding=None, *, wrap: Callable | None = None):
        self.cfg = cfg
        self.num_classes = num_classes
        self.supernet = cfg.form == "supernet"
        #: the one architecture a specialised trainer runs (None: any, for the supernet)
        self.encoding = None if self.supernet else tuple(int(v) for v in encoding)
        if self.supernet:
            self.model = models.build_supernet(num_classes, cfg.channels, cfg.cells_per_stage)
        else:
            self.model = models.build(encoding, num_classes, cfg.channels, cfg.cells_per_stage)
        self.tx = make_optimizer(cfg)
        self.mesh = data_mesh()
        self.n_devices = self.mesh.size
        self.repl = NamedSharding(self.mesh, P())
        self.batch = NamedSharding(self.mesh, P("data"))

        steps = make_steps(self.model, self.tx, self.supernet)
        wrap = wrap or (lambda f: f)
        self._init = jax.jit(
            wrap(steps.init), out_shardings=self.repl, static_argnums=(2,), compiler_options=init_compiler_options()
        )
        self._train = jax.jit(
            wrap(steps.train),
            in_shardings=(self.repl, self.batch, self.batch, self.repl, self.repl),
            out_shardings=(self.repl, self.repl),
            donate_argnums=(0,),  # the old state is never read again
        )
        self._eval = jax.jit(
            wrap(steps.eval),
            in_shardings=(self.repl, self.batch, self.batch, self.batch, self.repl),
            out_shardings=self.repl,
        )

    @property
    def trace_counts(self) -> dict[str, int]:
        """Programs compiled so far per step (jit's cache; read outside any trace)."""
        return {"init": self._init._cache_size(), "train": self._train._cache_size(), "eval": self._eval._cache_size()}

    # -- host-side wrappers ---------------------------------------------------------
    def init(self, key, enc, image_shape):
        return self._init(key, jnp.asarray(enc, jnp.int32), tuple(image_shape))

    def train_step(self, state, x, y, enc, lr: float):
        return self._train(state, x, y, jnp.asarray(enc, jnp.int32), np.float32(lr))

    def evaluate(self, state, images, labels, enc, batch_size: int) -> tuple[float, float]:
        """(accuracy fraction, mean cross-entropy) over all of ``images``; pads the last batch."""
        enc = jnp.asarray(enc, jnp.int32)
        totals = evaluate_batches(self._eval, state, images, labels, enc, batch_size, self.n_devices)
        return float(totals["correct"] / totals["count"]), float(totals["loss_sum"] / totals["count"])


@functools.lru_cache(maxsize=8)
def _shared_trainer(num_classes: int, cfg_key: TrainConfig) -> Trainer:
    return Trainer(num_classes, cfg_key)


def program_key(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with every field that does not change the compiled programs normalised away.

    Batch and image sizes only change argument shapes, for which ``jit`` keeps one
    executable each inside the same ``Trainer``.
    """
    base = TrainConfig()
    return cfg.replace(**{f: getattr(base, f) for f in _RUN_ONLY_FIELDS})


#: fields of a run that its compiled programs do not depend on (the schedule is an input)
_RUN_ONLY_FIELDS = ("seed", "epochs", "learning_rate", "schedule", "warmup_epochs", "evaluate_test", "train_limit")
_RUN_ONLY_FIELDS += ("val_limit", "eval_batch_size", "batch_size", "image_size")


def get_trainer(num_classes: int, cfg: TrainConfig, encoding=None) -> Trainer:
    """The trainer for ``cfg``: shared across encodings, seeds and schedules for the supernet form."""
    if cfg.form == "supernet":
        return _shared_trainer(num_classes, program_key(cfg))
    return Trainer(num_classes, cfg, encoding)


# ============================================================================ loop


@dataclasses.dataclass(frozen=True)
class Splits:
    """Arrays to train on: float32 NHWC images (normalised), int32 labels."""

    name: str
    num_classes: int
    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray
    test_images: np.ndarray | None = None
    test_labels: np.ndarray | None = None


def load_splits(dataset: str, cfg: TrainConfig, data_dir=None) -> Splits:
    """Load a bundled dataset's train/validation/test splits as normalised float arrays."""
    from nax import data

    tr = data.load(dataset, "train", data_dir=data_dir, limit=cfg.train_limit, seed=0)
    va = data.load(dataset, "validation", data_dir=data_dir, limit=cfg.val_limit, seed=0)
    te = data.load(dataset, "test", data_dir=data_dir) if cfg.evaluate_test else None

    def whole(arrays):
        ((x, y),) = data.batches(
            arrays, len(arrays.labels), seed=0, shuffle=False, image_size=cfg.image_size, drop_remainder=False
        )
        return np.asarray(x, np.float32), np.asarray(y, np.int32)

    xtr, ytr = whole(tr)
    xva, yva = whole(va)
    xte, yte = whole(te) if te is not None else (None, None)
    return Splits(dataset, tr.num_classes, xtr, ytr, xva, yva, xte, yte)


Callback = Callable[[RunRecord], bool]


def train_architecture(
    enc,
    dataset: str | Splits,
    cfg: TrainConfig = TrainConfig(),
    *,
    callback: Callback | None = None,
    data_dir=None,
    progress: bool = False,
    space: space_lib.CellSpace = space_lib.nb201,
    trainer: Trainer | None = None,
    checkpoints: RunCheckpoints | None = None,
    resume: bool = False,
    until_epoch: int | None = None,
) -> RunRecord:
    """Train ``enc`` on ``dataset`` for ``cfg.epochs`` epochs and return its record.

    ``callback(record_so_far)`` runs after every epoch; returning True stops the run
    (status ``stopped``). A non-finite training loss ends the run as ``diverged``; the
    partial curve is kept and no exception escapes. ``trainer`` defaults to
    ``get_trainer``'s; one given must compile the same programs as ``cfg`` (``program_key``).

    Pause and resume (``nax.checkpoints``): ``checkpoints`` saves the state after every epoch
    but the last; ``until_epoch=e < cfg.epochs`` pauses after epoch e (``cfg.epochs`` stays the
    schedule's horizon); ``resume=True`` continues from the checkpoint, with the whole curve
    in the record, the uninterrupted run's. Only a paused run keeps its checkpoint.
    """
    enc = space.validate(enc)
    arch = space.to_string(enc)
    splits = dataset if isinstance(dataset, Splits) else load_splits(dataset, cfg, data_dir)
    n_train = len(splits.train_labels)
    bs, steps = batch_plan(cfg.batch_size, n_train)
    if trainer is None:
        trainer = get_trainer(splits.num_classes, cfg, enc)
    elif (program_key(trainer.cfg), trainer.num_classes) != (program_key(cfg), splits.num_classes) or (
        trainer.encoding is not None and trainer.encoding != tuple(int(v) for v in enc)
    ):
        raise ValueError("the trainer given was built for another network or optimiser than cfg")
    rates = step_rates(cfg, steps)
    until = cfg.epochs if until_epoch is None else int(until_epoch)
    if not 1 <= until <= cfg.epochs:
        raise ValueError(f"until_epoch must be in 1..{cfg.epochs} (cfg.epochs), got {until_epoch}")

    # ---------------------------------------------------------------- init
    t_start = time.perf_counter()
    key = jax.random.key(cfg.seed)
    shape = splits.train_images.shape[1:]
    state = trainer.init(jax.random.fold_in(key, 0), enc, shape)
    num_params = int(models.analytic_size(enc, splits.num_classes, cfg.channels, cfg.cells_per_stage, shape)[0])
    step, done, elapsed, curve = 0, 0, 0.0, []
    if checkpoints is not None:  # the run's identity: a checkpoint of another run is refused
        rng = tuple(int(v) for v in np.asarray(jax.random.key_data(key)).ravel())
        ident = dict(arch=arch, dataset=splits.name, n_train=n_train, batch=bs, rng=rng, config=cfg.to_dict())
        got = checkpoints.resume(jax.tree.leaves(state), ident) if resume else checkpoints.start_fresh()
        if got is not None:
            leaves, (done, step, old_curve, elapsed, _) = got
            if done > until:
                raise ValueError(f"checkpoint {checkpoints.path} is at epoch {done}, past until_epoch={until}")
            state = jax.tree.unflatten(jax.tree.structure(state), [jax.device_put(x, trainer.repl) for x in leaves])
            curve = list(old_curve)

    def record(curve, status, test_acc=None):
        wall = elapsed + time.perf_counter() - t_start  # a resumed run's includes its earlier segments
        return RunRecord(
            arch, splits.name, cfg.seed, status, cfg.epochs, tuple(curve), test_acc, num_params, wall, cfg.to_dict()
        )

    bar, status = None, None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.epochs, initial=done, desc=f"{splits.name} {arch}", unit="epoch", leave=True)
    for epoch in range(done + 1, until + 1):
        t0 = time.perf_counter()
        # ------------------------------------------------------------ train epoch
        order = epoch_order(cfg.seed, epoch, n_train)
        state, mean_loss, step = train_epoch(
            trainer.train_step, state, splits.train_images, splits.train_labels, order, bs, steps, enc, rates, step
        )
        train_loss = float(mean_loss)
        if not math.isfinite(train_loss):
            status = "diverged"
            curve.append(EpochMetrics(epoch, train_loss, float("nan"), float("nan"), time.perf_counter() - t0))
            break
        # ------------------------------------------------------------ validate
        val_acc, val_loss = trainer.evaluate(state, splits.val_images, splits.val_labels, enc, cfg.eval_batch_size)
        curve.append(EpochMetrics(epoch, train_loss, val_acc, val_loss, time.perf_counter() - t0))
        if bar is not None:
            bar.set_postfix(loss=f"{train_loss:.3f}", val_acc=f"{val_acc:.4f}")
            bar.update(1)
        if callback is not None and epoch < cfg.epochs and callback(record(curve, "running")):
            status = "stopped"
            break
        if checkpoints is not None and epoch < cfg.epochs:
            prog = Progress(epoch, step, tuple(curve), elapsed + time.perf_counter() - t_start, rng)
            checkpoints.save(jax.tree.leaves(state), prog, ident)
    if bar is not None:
        bar.close()
    status = status or ("completed" if len(curve) == cfg.epochs else "paused")
    if checkpoints is not None:  # only a paused run can resume: the others' checkpoints go
        checkpoints.wait() if status == "paused" else checkpoints.delete()

    test_acc = None
    if status == "completed" and cfg.evaluate_test and splits.test_images is not None:
        test_acc, _ = trainer.evaluate(state, splits.test_images, splits.test_labels, enc, cfg.eval_batch_size)
    return record(curve, status, test_acc)


def train_many(encs: Iterable, dataset: str | Splits, cfg: TrainConfig = TrainConfig(), **kw) -> list[RunRecord]:
    """Train several architectures one after the other (sharing one program in supernet form)."""
    splits = dataset if isinstance(dataset, Splits) else load_splits(dataset, cfg, kw.pop("data_dir", None))
    return [train_architecture(e, splits, cfg, **kw) for e in encs]


def train_population(
    encs, dataset: str | Splits, cfg: TrainConfig = TrainConfig(), *, data_dir=None, **kw
) -> list[RunRecord]:
    """Train K cells in one compiled program (``nax.population``): K records, each what
    ``train_architecture(enc, dataset, cfg)`` returns within float tolerance."""
    from nax import population

    splits = dataset if isinstance(dataset, Splits) else load_splits(dataset, cfg, data_dir)
    return population.train_population(encs, splits, cfg, **kw)
