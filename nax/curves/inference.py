"""One inference routine for the three curve models: SVI (fast path) or NUTS.

Both return latent samples with a leading sample axis and a diagnostics dict. NUTS fits
record R-hat and effective sample size (``numpyro.diagnostics.summary``) and divergences;
SVI fits record the final ELBO and the number of non-finite steps. Failures are reported
in ``diagnostics["ok"]`` / ``diagnostics["problems"]``, never raised.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import optax
from numpyro.diagnostics import summary
from numpyro.infer import MCMC, NUTS, SVI, Predictive, Trace_ELBO, init_to_median

from nax.curves import models

#: a NUTS fit counts as converged when every latent has R-hat below this and ESS above the next
RHAT_MAX = 1.1
ESS_MIN = 50.0


@dataclasses.dataclass(frozen=True)
class InferenceConfig:
    """How a curve model is fitted: ``method`` "svi" (fast) or "nuts"; SVI runs
    ``num_steps`` Adam steps from learning rate ``lr`` and draws ``num_samples`` from the
    guide; NUTS runs ``num_chains`` chains of ``num_warmup`` + ``num_samples / num_chains``
    iterations. One value travels from the caller (a benchmark, a stopping rule) to
    :func:`fit`, instead of loose keywords through every layer."""

    method: str = "svi"
    num_samples: int = 400
    num_steps: int = 1000
    num_warmup: int = 400
    lr: float = 0.05
    num_chains: int = 2

    def __post_init__(self):
        if self.method not in ("svi", "nuts"):
            raise ValueError(f"unknown inference method {self.method!r}; use 'svi' or 'nuts'")

    def replace(self, **changes) -> InferenceConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Fit:
    """Result of :func:`fit`: ``latents`` maps site name -> array [S, ...]."""

    model: str
    method: str
    latents: dict
    diagnostics: dict
    seconds: float


def _optimizer(lr: float, num_steps: int):
    schedule = optax.cosine_decay_schedule(lr, num_steps, alpha=0.1)
    return numpyro.optim.optax_to_numpyro(optax.chain(optax.clip_by_global_norm(10.0), optax.adam(schedule)))


def _svi_run(model: str, num_steps: int, num_samples: int, lr: float, static: tuple):
    kwargs = dict(static)
    fn, guide = models.MODELS[model], models.GUIDES[model]

    def run(key, *args):
        svi = SVI(fn, guide, _optimizer(lr, num_steps), Trace_ELBO())
        k_init, _k_fit, k_draw = jax.random.split(key, 3)
        state = svi.init(k_init, *args, **kwargs)

        def step(state, _):
            state, loss = svi.stable_update(state, *args, **kwargs)
            return state, loss

        state, losses = jax.lax.scan(step, state, None, length=num_steps)
        params = svi.get_params(state)
        latents = Predictive(guide, params=params, num_samples=num_samples)(k_draw, *args, **kwargs)
        return losses, {k: v for k, v in latents.items() if k != "y"}

    return run


@functools.lru_cache(maxsize=64)
def _svi_program(model: str, num_steps: int, num_samples: int, lr: float, static: tuple):
    # one jitted program per configuration; jax.jit then caches it per input shape, so
    # repeated fits on same-sized batches (cutoffs, epochs of a replay) compile once
    return jax.jit(_svi_run(model, num_steps, num_samples, lr, static))


@functools.lru_cache(maxsize=64)
def _svi_many_program(model: str, num_steps: int, num_samples: int, lr: float, static: tuple, in_axes: tuple):
    # many independent fits (datasets, candidate priors) as ONE program: vmapped over the
    # leading axis of the batched arguments, every fit with the same key (so each equals
    # the single fit of the same shape)
    return jax.jit(jax.vmap(_svi_run(model, num_steps, num_samples, lr, static), in_axes=(None,) + in_axes))


def clear_programs() -> None:
    """Forget the jitted SVI programs (with :func:`jax.clear_caches`: the next fit compiles
    afresh, as in a new process; a benchmark's cold call)."""
    _svi_program.cache_clear()
    _svi_many_program.cache_clear()


def _svi_diagnostics(losses: np.ndarray, latents: dict, num_steps: int) -> tuple[dict, list]:
    finite = np.isfinite(losses)
    tail = losses[-max(1, num_steps // 10) :]
    diag = {
        "final_loss": float(np.mean(tail)) if np.isfinite(tail).all() else None,
        "nonfinite_steps": int((~finite).sum()),
    }
    problems = []
    # a few skipped steps (stable_update) are harmless; many mean the fit went astray
    if (~finite).mean() > 0.01 or not np.isfinite(tail).all():
        problems.append(f"{int((~finite).sum())} of {num_steps} ELBO steps non-finite")
    if not all(np.isfinite(np.asarray(v)).all() for v in latents.values()):
        problems.append("non-finite posterior draws")
    return diag, problems


def fit_many(
    model: str,
    args: tuple,
    in_axes: tuple,
    kwargs: dict,
    config: InferenceConfig = InferenceConfig(),
    *,
    seed: int = 0,
) -> list[Fit]:
    """``G`` independent SVI fits of ``model`` in one compiled program: ``args`` with
    ``in_axes[i] = 0`` carry a leading axis of length ``G`` (``None``: shared). Fit ``g``
    equals :func:`fit` on the ``g``-th slice with the same ``seed``; ``seconds`` of each is
    its share of the batch (the batch's own is in ``diagnostics["batch_seconds"]``)."""
    if config.method != "svi":
        raise ValueError("fit_many batches SVI fits only; fit NUTS one dataset at a time")
    program = _svi_many_program(
        model, config.num_steps, config.num_samples, float(config.lr), tuple(sorted(kwargs.items())), tuple(in_axes)
    )
    start = time.perf_counter()
    losses, latents = program(jax.random.key(seed), *args)
    jax.block_until_ready(latents)
    seconds = time.perf_counter() - start
    losses = np.asarray(losses)
    fits = []
    for g in range(losses.shape[0]):
        lat = {k: v[g] for k, v in latents.items()}
        diag, problems = _svi_diagnostics(losses[g], lat, config.num_steps)
        diag.update(ok=not problems, problems=problems, batch_seconds=seconds, batch_size=int(losses.shape[0]))
        fits.append(Fit(model=model, method="svi", latents=lat, diagnostics=diag, seconds=seconds / losses.shape[0]))
    return fits


def fit(
    model: str,
    args: tuple,
    kwargs: dict,
    config: InferenceConfig = InferenceConfig(),
    *,
    seed: int = 0,
) -> Fit:
    """Fit ``models.MODELS[model](*args, **kwargs)`` as ``config`` says.

    SVI: ``num_steps`` Adam steps (cosine-decayed from ``lr``) on the ELBO with the model's
    structured guide, then ``num_samples`` draws from the guide. NUTS: ``num_chains``
    vectorised chains of ``num_warmup`` + ``num_samples`` iterations; samples of all
    chains are pooled.
    """
    method, num_steps, lr = config.method, config.num_steps, config.lr
    num_samples, num_warmup, num_chains = config.num_samples, config.num_warmup, config.num_chains
    key = jax.random.key(seed)
    fn = models.MODELS[model]
    start = time.perf_counter()
    if method == "svi":
        program = _svi_program(model, num_steps, num_samples, float(lr), tuple(sorted(kwargs.items())))
        losses, latents = program(key, *args)
        diag, problems = _svi_diagnostics(np.asarray(losses), latents, num_steps)
    elif method == "nuts":
        kernel = NUTS(
            fn,
            target_accept_prob=0.9,
            max_tree_depth=8,
            init_strategy=init_to_median(num_samples=15),
        )
        mcmc = MCMC(
            kernel,
            num_warmup=num_warmup,
            num_samples=num_samples // num_chains,
            num_chains=num_chains,
            chain_method="vectorized",
            progress_bar=False,
        )
        mcmc.run(key, *args, extra_fields=("diverging",), **kwargs)
        grouped = mcmc.get_samples(group_by_chain=True)
        divergences = int(np.asarray(mcmc.get_extra_fields()["diverging"]).sum())
        stats = summary({k: np.asarray(v) for k, v in grouped.items()}, group_by_chain=True)
        r_hat = max(float(np.nanmax(s["r_hat"])) for s in stats.values())
        ess = min(float(np.nanmin(s["n_eff"])) for s in stats.values())
        latents = {k: v.reshape((-1,) + v.shape[2:]) for k, v in grouped.items()}
        diag = {
            "r_hat_max": r_hat,
            "ess_min": ess,
            "divergences": divergences,
            "num_chains": num_chains,
        }
        problems = []
        if not np.isfinite(r_hat) or r_hat > RHAT_MAX or ess < ESS_MIN:
            problems.append(f"not converged: max R-hat {r_hat:.3f}, min ESS {ess:.0f}")
        if divergences:
            problems.append(f"{divergences} divergent transitions")
        if not all(np.isfinite(np.asarray(v)).all() for v in latents.values()):
            problems.append("non-finite posterior draws")
    else:
        raise ValueError(f"unknown inference method {method!r}; use 'svi' or 'nuts'")
    latents = jax.tree.map(jnp.asarray, latents)
    jax.block_until_ready(latents)
    diag["ok"] = not problems
    diag["problems"] = problems
    return Fit(
        model=model,
        method=method,
        latents=latents,
        diagnostics=diag,
        seconds=time.perf_counter() - start,
    )
