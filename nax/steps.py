"""The pure train / eval step functions of one network and optimiser (big_vision style),
and the optimiser and learning-rate schedule of a training config.

Each is a function of explicit state: ``train(state, batch..., lr) -> (state, metrics)``.
They close over the (immutable) Flax module and optax transformation only, so ``jax.jit``
can trace them once per argument shape and no Python state changes while tracing.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax


class Steps(NamedTuple):
    """The pure functions of one network shape and optimiser (jitted by ``Trainer``).

    ``init(key, enc, image_shape) -> state``; ``train(state, x, y, enc, lr) -> (state,
    {"loss"})``; ``eval(state, x, y, w, enc) -> {"loss_sum", "correct", "count"}``. The
    state is a dict of ``params``, ``batch_stats`` and ``opt``; nothing else is read or
    written, so a step's result depends on its arguments only.
    """

    init: Callable
    train: Callable
    eval: Callable


def init_compiler_options() -> dict[str, Any] | None:
    """XLA options for the jitted init step: LLVM optimisation level 1 on the CPU, else None.

    Why: XLA:CPU's LLVM spends most of an init program's compile (random bits and truncated
    normals for every parameter) optimising it: 5-8 s at its default level and 1.6-3 s at
    level 1 on the quiet 2-core machine (`metadata`, `cpu`), several times that under load,
    with bitwise the same variables (``tests/test_train.py``; NOTES §2). The init program runs once
    per run, so its own speed does not matter. Other backends keep their defaults (not measured).
    """
    return {"xla_backend_optimization_level": 1} if jax.default_backend() == "cpu" else None


def make_steps(model, tx: optax.GradientTransformation, supernet: bool) -> Steps:
    """The init / train / eval functions of ``model`` (a supernet takes the encoding as input)."""

    def apply(variables, x, enc, train):
        mutable = ["batch_stats"] if train else False
        if supernet:
            return model.apply(variables, x, enc, train=train, mutable=mutable)
        return model.apply(variables, x, train=train, mutable=mutable)

    def init(key, enc, image_shape):
        x = jnp.zeros((1, *image_shape), jnp.float32)
        variables = model.init(key, x, enc, train=False) if supernet else model.init(key, x, train=False)
        params = variables["params"]
        return {"params": params, "batch_stats": variables["batch_stats"], "opt": tx.init(params)}

    def train_step(state, x_BxHxWxC, y_B, enc, lr):
        def loss_fn(params):
            logits, new_vars = apply({"params": params, "batch_stats": state["batch_stats"]}, x_BxHxWxC, enc, True)
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, y_B).mean()
            return loss, new_vars["batch_stats"]

        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        # the learning rate is an input, so one program serves every schedule and length
        decay_state, inject_state = state["opt"]
        opt = (decay_state, inject_state._replace(hyperparams={**inject_state.hyperparams, "learning_rate": lr}))
        updates, opt = tx.update(grads, opt, state["params"])
        params = optax.apply_updates(state["params"], updates)
        return {"params": params, "batch_stats": batch_stats, "opt": opt}, {"loss": loss}

    def eval_step(state, x_BxHxWxC, y_B, w_B, enc):
        logits = apply({"params": state["params"], "batch_stats": state["batch_stats"]}, x_BxHxWxC, enc, False)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y_B)
        correct = (jnp.argmax(logits, -1) == y_B).astype(jnp.float32)
        return {"loss_sum": jnp.sum(loss * w_B), "correct": jnp.sum(correct * w_B), "count": jnp.sum(w_B)}

    return Steps(init, train_step, eval_step)


def make_schedule(cfg: Any, steps_per_epoch: int) -> optax.Schedule:
    """Learning rate per step of a ``nax.train.TrainConfig``: linear warm-up, then cosine decay to 0 (or constant)."""
    if cfg.schedule == "constant":
        return optax.constant_schedule(cfg.learning_rate)
    return optax.warmup_cosine_decay_schedule(
        0.0 if cfg.warmup_epochs else cfg.learning_rate,
        cfg.learning_rate,
        warmup_steps=cfg.warmup_epochs * steps_per_epoch,
        decay_steps=max(1, cfg.epochs * steps_per_epoch),
    )


def step_rates(cfg: Any, steps_per_epoch: int) -> tuple[float, ...]:
    """The learning rate of every step of a run, ``float(make_schedule(...)(step))`` each:
    one eager schedule call per step costs 0.2-0.7 ms of host time, so the values are computed
    once per schedule and shared by every run with it (the meta-dataset builder's thousands).
    Evaluated step by step, not as one array: a vectorised evaluation differs in the last bit
    at some steps, which would move every recorded curve."""
    return _rates(cfg.schedule, cfg.learning_rate, cfg.warmup_epochs, cfg.epochs, steps_per_epoch)


@functools.lru_cache(maxsize=16)
def _rates(schedule: str, learning_rate: float, warmup_epochs: int, epochs: int, steps_per_epoch: int):
    fields = {"schedule": schedule, "learning_rate": learning_rate, "warmup_epochs": warmup_epochs, "epochs": epochs}
    sched = make_schedule(types.SimpleNamespace(**fields), steps_per_epoch)
    return tuple(float(sched(s)) for s in range(epochs * steps_per_epoch))


def make_optimizer(cfg: Any) -> optax.GradientTransformation:
    """Decoupled weight decay then SGD with Nesterov momentum (or Adam).

    The learning rate is an injected hyperparameter that the train step sets from the
    host-side schedule, so the compiled program does not depend on it.
    """
    if cfg.optimizer == "sgd":
        opt = optax.inject_hyperparams(optax.sgd)(
            learning_rate=cfg.learning_rate, momentum=cfg.momentum, nesterov=cfg.nesterov
        )
    else:
        opt = optax.inject_hyperparams(optax.adam)(learning_rate=cfg.learning_rate)
    return optax.chain(optax.add_decayed_weights(cfg.weight_decay), opt)


def batch_plan(batch_size: int, n_train: int) -> tuple[int, int]:
    """(examples per step, steps per epoch) of a run on ``n_train`` examples: ``batch_size``
    rounded down to the local devices, so a run, a population and a resumed run agree."""
    n_dev = jax.local_device_count()
    bs = (min(batch_size, n_train) // n_dev) * n_dev
    if bs < 1:
        raise ValueError(f"batch size {batch_size} with {n_train} examples leaves no batch for {n_dev} devices")
    return bs, n_train // bs


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The training examples' order in ``epoch`` of a run seeded ``seed`` (every trainer's:
    a run, a population of runs and a resumed run see the same batches)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def evaluate_batches(eval_step: Callable, state, images, labels, enc, batch_size: int, n_devices: int) -> dict:
    """Sums of ``eval_step``'s outputs (``correct``, ``loss_sum``, ``count``) over all of
    ``images`` in batches of ``batch_size`` rounded to ``n_devices``; the last batch is padded
    with zero-weight examples so one compiled eval program serves every batch."""
    bs = max(n_devices, (batch_size // n_devices) * n_devices)
    totals = None
    for start in range(0, len(labels), bs):
        xb, yb = images[start : start + bs], labels[start : start + bs]
        w = np.ones(len(yb), np.float32)
        if len(yb) < bs:
            pad = bs - len(yb)
            xb = np.concatenate([xb, np.zeros((pad, *xb.shape[1:]), xb.dtype)])
            yb = np.concatenate([yb, np.zeros(pad, yb.dtype)])
            w = np.concatenate([w, np.zeros(pad, np.float32)])
        out = eval_step(state, xb, yb, w, enc)
        totals = out if totals is None else jax.tree.map(jnp.add, totals, out)
    return jax.device_get(totals)


def train_epoch(train_step: Callable, state, images, labels, order, batch_size: int, n_steps: int, enc,
                rates: Sequence[float], step: int):  # fmt: skip
    """``n_steps`` steps over ``images[order]`` in batches of ``batch_size``, step ``i``'s
    learning rate ``rates[i]`` (:func:`step_rates`); returns the state, the mean training loss
    over the steps (per cell for a population) and the next step's index."""
    losses = []
    for b in range(n_steps):
        idx = order[b * batch_size : (b + 1) * batch_size]
        state, meas = train_step(state, images[idx], labels[idx], enc, rates[step])
        losses.append(meas["loss"])
        step += 1
    return state, jnp.mean(jnp.stack(losses), axis=0), step
