"""Where nax's training step loses time against PyTorch's on this CPU: forward vs backward,
and the 3x3 convolution on its own, per formulation (issue 16, item 3).

Everything runs in one process pinned to one core (one XLA thread, ``torch.set_num_threads(1)``)
and is timed in CPU seconds of the process (``time.process_time``), which other processes'
load barely moves; each figure is the median of ``--samples`` samples of at least
``--sample-s`` CPU seconds, the contenders interleaved.

* ``step``: the network of ``bench_peer.py`` at a preset (nax specialised vs PyTorch), timed as
  the forward pass in training mode, forward + backward (``value_and_grad`` / ``backward()``)
  and the whole SGD step; ``nax_per_edge`` rows: the same with the cell as it was before its
  conv edges were grouped into shared convolutions (one ``ReLUConvBN`` per edge);
  ``nax_compile_once_<mix>`` rows (``--compile-once select onehot``): the compile-once network
  (``build_supernet(mix=...)``, the encoding an input) in the same ``Trainer`` step.
* ``conv``: ReLU then 3x3 convolution (stride 1, padding 1) at the shapes of each stage,
  forward and forward + backward (gradients of input and kernel): ``lax`` =
  ``lax.conv_general_dilated`` (what ``flax.linen.Conv`` emits), ``patches`` = the nine shifted
  inputs concatenated and one ``dot_general``, ``shifted_dots`` = nine dots summed; PyTorch's
  ``conv2d`` (channels-last) as reference; ``lax_in_cond`` = ``lax`` inside a ``lax.cond``,
  ``canonical_vjp[_in_cond]`` = the select form's ``cells._relu_conv`` (backward written as
  canonical convolutions), alone and inside a ``lax.cond`` (NOTES §2, K16d).
* ``--canonical-ab``: the specialised network also traced with ``cells.CANONICAL_BACKWARD``
  flipped, beside the ``nax`` rows (the module's default, recorded in ``setup``), interleaved:
  ``nax_canonical_bwd`` rows (the cell's convolutions with ``cells._relu_conv``'s backward) or,
  where that is the default, ``nax_jax_bwd`` rows (JAX's backward); NOTES §2, K16e. The K16e
  JSONs were measured while the default was the canonical backward (``nax`` = canonical).

    python benchmarks/bench_peer_gap.py [--presets cpu] [--json benchmarks/results/peer_gap.json]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import statistics
import sys
import time

os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:1])  # one core, before jax/torch start threads
_flags = os.environ.get("XLA_FLAGS", "").split()
os.environ["XLA_FLAGS"] = " ".join(f for f in _flags if "force_host_platform_device_count" not in f)  # one device
HERE = pathlib.Path(__file__).resolve().parent
sys.path[1:1] = [str(HERE.parent), str(HERE)]

import bench_peer as bp  # noqa: E402
import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import peer_torch as pt  # noqa: E402
import torch  # noqa: E402
from jax import lax  # noqa: E402

from nax import cells, models, space, train  # noqa: E402

torch.set_num_threads(1)


def cpu_ms(fns: dict, samples: int, sample_s: float) -> dict:
    """Median CPU milliseconds per call of each ``fn()`` (which must block), interleaved."""
    for f in fns.values():
        f()
    out = {k: [] for k in fns}
    for _ in range(samples):
        for k, f in fns.items():
            c0, n = time.process_time(), 0
            while time.process_time() - c0 < sample_s:
                f()
                n += 1
            out[k].append((time.process_time() - c0) / n * 1e3)
    return {k: round(statistics.median(v), 3) for k, v in out.items()}


# ---------------------------------------------------------------------------- conv formulations
def conv_lax(x, k):
    return lax.conv_general_dilated(x, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))


def conv_patches(x, k):
    h, w, c = x.shape[1:]
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = jnp.concatenate([xp[:, i : i + h, j : j + w] for i in range(3) for j in range(3)], -1)
    return jnp.einsum("bhwk,ko->bhwo", cols, k.reshape(9 * c, -1))


def conv_shifted_dots(x, k):
    h, w = x.shape[1:3]
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return sum(jnp.einsum("bhwc,co->bhwo", xp[:, i : i + h, j : j + w], k[i, j]) for i in range(3) for j in range(3))


def conv_lax_s2(x, k):
    return lax.conv_general_dilated(x, k, (2, 2), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))


def conv_s1_subsample(x, k):
    """Stride 2 as stride 1 then every other pixel: 4x the forward FLOPs, but the backward is two
    stride-1 convolutions (the stride-2 conv's input gradient is a conv with lhs dilation)."""
    return conv_lax(x, k)[:, ::2, ::2]


def _in_cond(f):
    """``f`` inside a ``lax.cond`` whose predicate XLA cannot fold (always true here)."""
    return lambda x, k: lax.cond(jnp.all(jnp.isfinite(k)), f, lambda x, k: jnp.zeros(x.shape[:-1] + k.shape[-1:]), x, k)


def conv_canonical_vjp(x, k):
    """``nax.cells._relu_conv`` (ReLU is idempotent): the backward as canonical convolutions."""
    from nax import cells

    return cells._relu_conv(x, k)


FORMS = {
    "lax_in_cond": _in_cond(conv_lax),
    "canonical_vjp": conv_canonical_vjp,
    "canonical_vjp_in_cond": _in_cond(conv_canonical_vjp),
    "lax": conv_lax,
    "patches": conv_patches,
    "shifted_dots": conv_shifted_dots,
    "lax_stride2": conv_lax_s2,
    "s1_subsample": conv_s1_subsample,
}


def bench_conv(shape, forms, samples, sample_s) -> dict:
    b, h, w, c = shape
    stride = 2 if "lax_stride2" in forms else 1  # stride 2: the reduction block's conv_a, C -> 2C
    co = 2 * c if stride == 2 else c
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal(shape).astype(np.float32)
    k_np = (rng.standard_normal((3, 3, c, co)) * 0.1).astype(np.float32)
    out_shape = (b, (h - 1) // stride + 1, (w - 1) // stride + 1, co)
    x, k, g = jnp.asarray(x_np), jnp.asarray(k_np), jnp.asarray(rng.standard_normal(out_shape).astype(np.float32))
    fns, ref = {}, None
    for name in forms:
        f = FORMS[name]
        fwd = jax.jit(lambda x, k, f=f: f(jax.nn.relu(x), k))
        bwd = jax.jit(jax.grad(lambda x, k, g, f=f: jnp.sum(f(jax.nn.relu(x), k) * g), argnums=(0, 1)))
        y = np.asarray(fwd(x, k))
        ref = y if ref is None else ref
        assert np.allclose(y, ref, atol=1e-3), f"{name} disagrees with lax.conv"
        fns[f"{name}_fwd"] = lambda fwd=fwd: fwd(x, k).block_until_ready()
        fns[f"{name}_fwd_bwd"] = lambda bwd=bwd: jax.block_until_ready(bwd(x, k, g))
    tx = pt.to_input(x_np).requires_grad_(True)
    tg = pt.to_input(np.asarray(g))
    conv = torch.nn.Conv2d(c, co, 3, stride=stride, padding=1, bias=False).to(memory_format=torch.channels_last)

    def torch_fwd():
        with torch.no_grad():
            conv(torch.relu(tx))

    def torch_fwd_bwd():
        tx.grad = conv.weight.grad = None
        (conv(torch.relu(tx)) * tg).sum().backward()

    fns.update(torch_fwd=torch_fwd, torch_fwd_bwd=torch_fwd_bwd)
    ms = cpu_ms(fns, samples, sample_s)
    gflop = 2 * b * out_shape[1] * out_shape[2] * 9 * c * co / 1e9
    return {
        "shape_BHWC": list(shape),
        "stride": stride,
        "ms": ms,
        "gflop_s": {n: round(gflop * (3 if "bwd" in n else 1) / v * 1e3, 2) for n, v in ms.items()},
    }


# ---------------------------------------------------------------------------- whole step, split
class PerEdgeCell(nn.Module):
    """``models.Cell`` before its conv edges were grouped (one ``ReLUConvBN`` per edge): the
    reference of the ``nax_per_edge`` rows (NOTES §2, item 8)."""

    ops: tuple
    features: int

    @nn.compact
    def __call__(self, x, train: bool):
        return models._dag(
            x, lambda k, h: models._edge_op(self.ops[k], self.features, f"edge{k}_{self.ops[k]}")(h, train)
        )


@contextlib.contextmanager
def _cell(cls):
    """``Network`` looks ``Cell`` up when it is traced: patch it around the first (tracing) calls."""
    old, models.Cell = models.Cell, cls or models.Cell
    try:
        yield
    finally:
        models.Cell = old


@contextlib.contextmanager
def _canonical(flag):
    """``cells.CANONICAL_BACKWARD`` set to ``flag`` (None: unchanged) while the step is traced."""
    old = cells.CANONICAL_BACKWARD
    cells.CANONICAL_BACKWARD = old if flag is None else flag
    try:
        yield
    finally:
        cells.CANONICAL_BACKWARD = old


@contextlib.contextmanager
def _build_supernet(mix):
    """``Trainer`` builds ``models.build_supernet(...)``'s default form: ``mix`` instead, if set."""
    old = models.build_supernet
    if mix:
        models.build_supernet = lambda *a, **kw: old(*a, **kw, mix=mix)
    try:
        yield
    finally:
        models.build_supernet = old


def _nax_fns(prefix, preset, cell=None, mix=None, arch=None, canonical=None) -> dict:
    """Forward, forward + backward and SGD step of the specialised network (``mix`` None) or of
    the compile-once network ``build_supernet(mix=mix)`` with the encoding as an input."""
    cfg = bp._config(preset, "supernet" if mix else "specialised")
    _, shape, _ = bp.PRESETS[preset]
    enc = space.nb201.from_string(arch or bp.ARCH)
    xs, ys = bp._batches(preset)
    with _build_supernet(mix):
        tr = train.Trainer(bp.NUM_CLASSES, cfg, enc)
    box = {"st": tr.init(jax.random.key(0), enc, shape)}
    model = tr.model
    x, y, enc_in = jnp.asarray(xs[0]), jnp.asarray(ys[0]), (jnp.asarray(enc),) if mix else ()

    def fwd(st, x):
        v = {"params": st["params"], "batch_stats": st["batch_stats"]}
        return model.apply(v, x, *enc_in, train=True, mutable=["batch_stats"])

    def loss_grad(st, x, y):
        def loss(p):
            logits, nv = model.apply(
                {"params": p, "batch_stats": st["batch_stats"]}, x, *enc_in, train=True, mutable=["batch_stats"]
            )
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), nv

        return jax.value_and_grad(loss, has_aux=True)(st["params"])

    fwd_j, grad_j = jax.jit(fwd), jax.jit(loss_grad)

    def step():
        box["st"], m = tr.train_step(box["st"], xs[0], ys[0], enc, cfg.learning_rate)
        jax.block_until_ready(m)

    fns = {
        f"{prefix}_fwd": lambda: jax.block_until_ready(fwd_j(box["st"], x)),
        f"{prefix}_fwd_bwd": lambda: jax.block_until_ready(grad_j(box["st"], x, y)),
        f"{prefix}_step": step,
    }
    with _cell(cell), _canonical(canonical):
        for f in fns.values():
            f()
    return fns


def bench_step(preset, samples, sample_s, per_edge: bool, mixes=(), arch=None, canonical_ab=False) -> dict:
    cfg = bp._config(preset)
    _, shape, batch = bp.PRESETS[preset]
    enc = space.nb201.from_string(arch or bp.ARCH)
    xs, ys = bp._batches(preset)
    fns = _nax_fns("nax", preset, arch=arch)
    if canonical_ab:
        other = not cells.CANONICAL_BACKWARD
        fns.update(_nax_fns("nax_canonical_bwd" if other else "nax_jax_bwd", preset, arch=arch, canonical=other))
    if per_edge:
        fns.update(_nax_fns("nax_per_edge", preset, PerEdgeCell, arch=arch))
    for mix in mixes:  # compile-once forms: the encoding is an input of the program
        fns.update(_nax_fns(f"nax_compile_once_{mix}", preset, mix=mix, arch=arch))
    tm = pt.TinyNetwork(enc, bp.NUM_CLASSES, cfg.channels, cfg.cells_per_stage, shape[-1])
    tm = tm.to(memory_format=torch.channels_last).train()
    opt = pt.make_optimizer(tm, cfg)
    tx, ty = pt.to_input(xs[0]), torch.from_numpy(ys[0].astype(np.int64))

    def torch_fwd():
        with torch.no_grad():
            tm(tx)

    def torch_fwd_bwd():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(tm(tx), ty).backward()

    fns.update(torch_fwd=torch_fwd, torch_fwd_bwd=torch_fwd_bwd, torch_step=lambda: pt.train_step(tm, opt, tx, ty))
    ms = cpu_ms(fns, samples, sample_s)
    return {
        "preset": preset,
        "arch": arch or bp.ARCH,
        "batch": batch,
        "ms": ms,
        "img_per_cpu_s": {k: round(batch / v * 1e3, 1) for k, v in ms.items()},
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="*", default=["cpu"], choices=list(bp.PRESETS))
    ap.add_argument("--conv-shapes", default="128x28x28x8,64x32x32x16,64x16x16x32,64x8x8x64")
    ap.add_argument("--forms", nargs="+", default=["lax", "patches", "shifted_dots"], choices=list(FORMS))
    ap.add_argument("--strided-shapes", default="128x28x28x8,128x14x14x16", help="stride-2 convs, C -> 2C")
    ap.add_argument("--no-per-edge", action="store_true", help="leave out the ungrouped-cell reference rows")
    ap.add_argument(
        "--compile-once",
        nargs="*",
        default=[],
        choices=list(models.MIXES),
        metavar="MIX",
        help="also time build_supernet(mix=MIX) in the Trainer (nax_compile_once_MIX rows)",
    )
    ap.add_argument("--canonical-ab", action="store_true", help="also time the cell with CANONICAL_BACKWARD flipped")
    ap.add_argument("--arch", default=None, help="the cell (NAS-Bench-201 string; default bench_peer's)")
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--sample-s", type=float, default=0.3)
    ap.add_argument("--json", type=pathlib.Path, default=HERE / "results" / "peer_gap.json")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    out = {"steps": [], "conv": [], "setup": {"threads": 1, "timer": "process CPU time", "samples": args.samples}}
    out["setup"]["canonical_backward_default"] = cells.CANONICAL_BACKWARD
    for p in args.presets:
        out["steps"].append(
            bench_step(
                p, args.samples, args.sample_s, not args.no_per_edge, args.compile_once, args.arch, args.canonical_ab
            )
        )
        print(out["steps"][-1], flush=True)
    for s in filter(None, args.conv_shapes.split(",")):
        out["conv"].append(bench_conv(tuple(int(v) for v in s.split("x")), args.forms, args.samples, args.sample_s))
        print(out["conv"][-1], flush=True)
    for s in filter(None, args.strided_shapes.split(",")):
        shape = tuple(int(v) for v in s.split("x"))
        out["conv"].append(bench_conv(shape, ["lax_stride2", "s1_subsample"], args.samples, args.sample_s))
        print(out["conv"][-1], flush=True)
    from nax import jsonio
    from nax.provenance import provenance

    out["setup"].update(load_avg=os.getloadavg(), wall_s=round(time.perf_counter() - t0, 1), torch=torch.__version__)
    out["provenance"] = provenance(paths=["nax", "benchmarks/bench_peer_gap.py", "benchmarks/peer_torch.py"])
    args.json.write_text(jsonio.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
