"""nax vs PyTorch training the same NAS-Bench-201 network on this CPU (images per second).

Three contenders train the same cell (the 5-conv3x3 cell of ``bench_train.py``, 1,288,506
parameters at NAS-Bench-201 size) with the same SGD step (a ``nax.train.TrainConfig``'s
optimiser, learning rate, momentum, Nesterov, weight decay) on the same batches:

* ``nax-specialised``: ``nax.train.Trainer`` with ``form="specialised"`` (one program per cell),
* ``nax-compile-once``: ``Trainer`` with ``form="supernet"`` (the encoding is an input of the
  one program that every search and the meta-dataset builder use),
* ``torch``: ``benchmarks/peer_torch.py``, the network as NAS-Bench-201's own code trains it
  (channels-last; ``pip install -e .[peer]``).

A check process first asserts the parameter counts equal, copies nax's initial weights
into the PyTorch network and compares logits and three SGD steps' losses. Each (contender, threads) pair is one worker process whose CPU affinity is limited to
``threads`` cores before jax or torch is imported (XLA sizes its thread pool from the
affinity mask; torch also gets ``set_num_threads``). Workers compile and warm up once,
then the parent runs them in interleaved rounds (one at a time, order rotated each round),
so load from other processes falls on every contender alike. The ratios take the best
thread setting of each contender (median over rounds). Inputs are synthetic (normal
images, uniform labels, fixed seed): throughput does not depend on the pixels.

    python benchmarks/bench_peer.py --quick          # under 5 minutes on 2 cores; peer_quick.json
    python benchmarks/bench_peer.py                  # 5 rounds, longer rounds
    python benchmarks/bench_peer.py --presets cpu --xla-flags "--xla_cpu_..."   # an experiment

Writes ``benchmarks/results/peer.json`` (``rows``, ``ratios``, ``setup``, ``provenance``;
``peer_quick.json`` with ``--quick``, so a quick run never replaces the full one). On a shared machine read ``setup``'s load averages, and its images per CPU-second at 1 thread
(``img_per_cpu_s_median``, ``ratios_per_cpu_s_1_thread``), which other processes barely move.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(1, str(HERE.parent))  # benchmark the checkout this file is in
ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
NUM_CLASSES = 10
#: preset -> (nax.train preset, image shape HWC, batch); nb201 at batch 64 to keep rounds short
PRESETS = {
    "metadata": ("metadata", (8, 8, 1), 128),
    "cpu": ("cpu", (28, 28, 1), 128),
    "nb201": ("nb201", (32, 32, 3), 64),
}
CONTENDERS = ("nax-specialised", "nax-compile-once", "torch")
FORMS = {"nax-specialised": "specialised", "nax-compile-once": "supernet"}
N_BATCHES = 4


def _config(preset: str, form: str = "specialised"):
    from nax import train

    name, _, batch = PRESETS[preset]
    return train.preset(name, batch_size=batch, form=form, image_size=None)


def _batches(preset: str, seed: int = 0):
    _, shape, batch = PRESETS[preset]
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal((batch, *shape)).astype(np.float32) for _ in range(N_BATCHES)]
    ys = [rng.integers(0, NUM_CLASSES, batch).astype(np.int32) for _ in range(N_BATCHES)]
    return xs, ys


# ============================================================================ workers
def _nax_stepper(preset: str, contender: str):
    import jax

    from nax import space, train

    cfg = _config(preset, FORMS[contender])
    enc = space.nb201.from_string(ARCH)
    tr = train.Trainer(NUM_CLASSES, cfg, enc)
    xs, ys = _batches(preset)
    box = {"state": tr.init(jax.random.key(0), enc, xs[0].shape[1:])}

    def run(n: int):
        m = None
        for i in range(n):
            box["state"], m = tr.train_step(box["state"], xs[i % N_BATCHES], ys[i % N_BATCHES], enc, cfg.learning_rate)
        jax.block_until_ready(m)  # one host sync per round: nax's loop also dispatches ahead

    return run


def _torch_stepper(preset: str, threads: int):
    import torch

    sys.path.insert(0, str(HERE))
    import peer_torch as pt

    from nax import space

    torch.set_num_threads(threads)
    cfg = _config(preset)
    _, shape, _ = PRESETS[preset]
    model = pt.TinyNetwork(space.nb201.from_string(ARCH), NUM_CLASSES, cfg.channels, cfg.cells_per_stage, shape[-1])
    model = model.to(memory_format=torch.channels_last).train()
    opt = pt.make_optimizer(model, cfg)
    xs, ys = _batches(preset)
    xs = [pt.to_input(x) for x in xs]
    ys = [torch.from_numpy(y.astype("int64")) for y in ys]

    def run(n: int):
        for i in range(n):
            pt.train_step(model, opt, xs[i % N_BATCHES], ys[i % N_BATCHES])

    return run


def worker(preset: str, contender: str, threads: int, target_s: float, min_steps: int, cache_dir: str | None) -> None:
    """Compile and warm up; on a ``calibrate`` line set the steps per round to ``target_s`` (the
    parent sends it once every worker is ready, one worker at a time, so no compilation beside
    it skews the count); then time one round per ``run`` line."""
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:threads])  # before jax/torch start threads
    if contender == "torch":
        run = _torch_stepper(preset, threads)
    else:
        _use_cache(cache_dir)
        run = _nax_stepper(preset, contender)
    t0 = time.perf_counter()
    run(1)
    compile_s = time.perf_counter() - t0
    run(1)
    print(json.dumps({"ready": True, "first_step_s": compile_s}), flush=True)
    batch, steps = PRESETS[preset][2], min_steps
    for line in sys.stdin:
        if line.strip() == "calibrate":
            t0, n = time.perf_counter(), 0
            while time.perf_counter() - t0 < min(1.0, target_s):
                run(1)
                n += 1
            steps = max(min_steps, round(target_s * n / (time.perf_counter() - t0)))
            print(json.dumps({"steps": steps}), flush=True)
            continue
        if line.strip() != "run":
            break
        t0, c0 = time.perf_counter(), time.process_time()
        run(steps)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        # images per CPU-second of the process (all threads): blind to others' load; ~quiet img/s at 1 thread
        print(json.dumps({"img_s": steps * batch / wall, "img_cpu_s": steps * batch / cpu}), flush=True)


def _use_cache(cache_dir: str | None) -> None:
    """The 1- and 2-thread workers (and the check) compile the same programs: compile each once."""
    import jax

    if cache_dir:
        jax.config.update("jax_compilation_cache_dir", cache_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def check(preset: str, cache_dir: str | None = None) -> dict:
    """Parameter counts equal (asserted), logits and three SGD steps' losses after a weight copy."""
    import jax
    import torch

    sys.path.insert(0, str(HERE))
    import peer_torch as pt

    from nax import models, space, train

    _use_cache(cache_dir)
    cfg = _config(preset)
    _, shape, _ = PRESETS[preset]
    enc = space.nb201.from_string(ARCH)
    tm = pt.TinyNetwork(enc, NUM_CLASSES, cfg.channels, cfg.cells_per_stage, shape[-1])
    n_nax = models.param_count(models.build(enc, NUM_CLASSES, cfg.channels, cfg.cells_per_stage), shape)
    if pt.param_count(tm) != n_nax:
        raise AssertionError(f"{preset}: PyTorch has {pt.param_count(tm)} parameters, nax {n_nax}")
    tr = train.Trainer(NUM_CLASSES, cfg, enc)
    xs, ys = _batches(preset, seed=1)
    state = tr.init(jax.random.key(0), enc, shape)
    variables = jax.device_get({"params": state["params"], "batch_stats": state["batch_stats"]})
    pt.load_flax_variables(tm, variables)
    tm = tm.to(memory_format=torch.channels_last)
    logits = {}
    for mode in (False, True):
        tm.train(mode)
        with torch.no_grad():
            lt = tm(pt.to_input(xs[0])).numpy()
        # jitted: op-by-op Flax dispatches (and compiles) hundreds of small programs
        apply = jax.jit(
            lambda v, x, mode=mode: tr.model.apply(v, x, train=mode, mutable=["batch_stats"] if mode else False)
        )
        lj = apply(variables, xs[0])
        lj = np.asarray(lj[0] if mode else lj)
        logits["train" if mode else "eval"] = float(np.abs(lt - lj).max())
    tm = pt.TinyNetwork(enc, NUM_CLASSES, cfg.channels, cfg.cells_per_stage, shape[-1])
    tm = pt.load_flax_variables(tm, variables).to(memory_format=torch.channels_last).train()
    opt = pt.make_optimizer(tm, cfg)
    loss_diff = 0.0
    for x, y in zip(xs[:3], ys[:3]):
        state, m = tr.train_step(state, x, y, enc, cfg.learning_rate)
        lt = pt.train_step(tm, opt, pt.to_input(x), torch.from_numpy(y.astype("int64")))
        loss_diff = max(loss_diff, abs(float(m["loss"]) - float(lt)))
    return {
        "params": n_nax,
        "logits_max_abs_diff_eval": logits["eval"],
        "logits_max_abs_diff_train": logits["train"],
        "sgd_losses_max_abs_diff_3_steps": loss_diff,
    }


# ============================================================================ parent
def _worker_env(xla_flags: str) -> dict:
    pythonpath = os.pathsep.join(p for p in (str(HERE.parent), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=pythonpath)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "force_host_platform_device_count" not in f]
    env["XLA_FLAGS"] = " ".join(flags + xla_flags.split())  # one CPU device: the peer trains on one
    return env


class Worker:
    """One (contender, threads) process; it compiles as soon as it starts (``wait_ready``)."""

    def __init__(self, preset, contender, threads, target_s, cache_dir, env, min_steps=2):
        self.key = (contender, threads)
        cmd = [sys.executable, __file__, "--worker", preset, contender, str(threads), str(target_s), str(min_steps)]
        cmd += [cache_dir] if cache_dir else []
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.ready = None

    def wait_ready(self) -> dict:
        if self.ready is None:
            self.ready = self._read()
        return self.ready

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.key} ended (exit {self.proc.wait()}); see its stderr above")
        return json.loads(line)

    def round(self) -> dict:
        return self._send("run")

    def calibrate(self) -> None:
        self.ready.update(self._send("calibrate"))

    def _send(self, line: str) -> dict:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


def bench_preset(preset, threads_list, rounds, target_s, env, log, min_steps=2) -> tuple[list, dict]:
    """Rows of one preset and its setup record (checks, first-step times, per-round samples, load).

    Preparation runs in parallel, no timing depends on it: the check (which compiles the
    specialised step into the shared cache) beside the first compile-once and PyTorch workers,
    then every other worker, whose nax programs the cache already holds. Only the rounds are
    timed, one worker at a time."""
    workers = []
    with tempfile.TemporaryDirectory(prefix="nax_peer_cache_") as cache:
        load_before = os.getloadavg()
        cmd = [sys.executable, __file__, "--check", preset, cache]
        check = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        keys = [(c, t) for c in CONTENDERS for t in threads_list]
        first = [k for k in keys if k[0] != "nax-specialised" and k[1] == threads_list[0]]
        started = {}
        try:
            for k in first:
                started[k] = Worker(preset, *k, target_s, cache if k[0] != "torch" else None, env, min_steps)
            out, err = check.communicate()
            if check.returncode:
                sys.stderr.write(err)
                raise SystemExit(f"{preset}: the equivalence check failed")
            setup = {"check": json.loads(out.strip().splitlines()[-1]), "load_before": load_before}
            log(f"{preset}: check {setup['check']}")
            for k in first:
                started[k].wait_ready()
            rest = [k for k in keys if k not in started]
            for k in rest:
                started[k] = Worker(preset, *k, target_s, cache if k[0] != "torch" else None, env, min_steps)
            for k in keys:
                workers.append(started[k])
                started[k].wait_ready()
            for w in workers:
                w.calibrate()
                log(f"{preset}: {w.key[0]} x{w.key[1]} ready {w.ready}")
            samples = {w.key: [] for w in workers}
            loads = []
            for r in range(rounds):
                order = workers[r % len(workers) :] + workers[: r % len(workers)]  # nobody always first
                for w in order:
                    samples[w.key].append(w.round())
                    time.sleep(0.1)  # let the previous contender's spinning threads go idle
                loads.append(os.getloadavg()[0])
                log(
                    f"{preset}: round {r + 1}/{rounds}: "
                    + ", ".join(f"{k[0]}x{k[1]} {v[-1]['img_s']:.0f}" for k, v in samples.items())
                )
        finally:
            if check.poll() is None:
                check.kill()
            for w in started.values():
                w.close()
    med = lambda v, f: round(statistics.median(x[f] for x in v), 1)
    lo = lambda v: round(min(x["img_s"] for x in v), 1)
    rows = [
        dict(preset=preset, contender=c, threads=t, img_s_median=med(v, "img_s"), img_s_min=lo(v))
        for (c, t), v in samples.items()
    ]
    per_cpu_s = {f"{c}_x{t}": med(v, "img_cpu_s") for (c, t), v in samples.items()}
    setup.update(
        first_step_s={f"{w.key[0]}_x{w.key[1]}": round(w.ready["first_step_s"], 2) for w in workers},
        steps_per_round={f"{w.key[0]}_x{w.key[1]}": w.ready["steps"] for w in workers},
        samples_img_s={f"{c}_x{t}": [round(x["img_s"], 1) for x in v] for (c, t), v in samples.items()},
        img_per_cpu_s_median=per_cpu_s,
        load_1min_after_each_round=[round(x, 2) for x in loads],
    )
    return rows, setup


def ratios(rows) -> dict:
    out = {}
    for preset in dict.fromkeys(r["preset"] for r in rows):
        best = {
            c: max(r["img_s_median"] for r in rows if r["preset"] == preset and r["contender"] == c) for c in CONTENDERS
        }
        out[preset] = {
            "nax_over_torch": round(best["nax-specialised"] / best["torch"], 3),
            "supernet_over_specialised": round(best["nax-compile-once"] / best["nax-specialised"], 3),
        }
    return out


def cpu_ratios(setups) -> dict:
    """nax/torch and supernet/specialised from images per CPU-second at 1 thread (robust to load)."""
    out = {}
    for preset, st in setups.items():
        v = st["img_per_cpu_s_median"]
        if {"nax-specialised_x1", "nax-compile-once_x1", "torch_x1"} <= set(v):
            out[preset] = {
                "nax_over_torch": round(v["nax-specialised_x1"] / v["torch_x1"], 3),
                "supernet_over_specialised": round(v["nax-compile-once_x1"] / v["nax-specialised_x1"], 3),
            }
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--rounds", type=int, default=None, help="default 5 (3 with --quick)")
    ap.add_argument(
        "--round-s", type=float, default=None, help="seconds per contender per round (default 3, 0.5 quick)"
    )
    ap.add_argument(
        "--quick", action="store_true",
        help="3 short rounds (a round may be one step): the whole run in under 5 minutes; writes peer_quick.json",
    )  # fmt: skip
    ap.add_argument("--xla-flags", default="", help="extra XLA_FLAGS for the nax workers (experiments)")
    ap.add_argument("--json", type=pathlib.Path, default=None, help="default results/peer.json (peer_quick.json)")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--check", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        preset, contender, threads, target_s, min_steps, *cache = args.worker
        worker(preset, contender, int(threads), float(target_s), int(min_steps), cache[0] if cache else None)
        return 0
    if args.check:
        print(json.dumps(check(*args.check)))
        return 0
    try:
        import torch  # noqa: F401
    except ImportError:
        raise SystemExit("bench_peer needs PyTorch: pip install -e '.[peer]'") from None

    rounds = args.rounds or (3 if args.quick else 5)
    target_s = args.round_s or (0.5 if args.quick else 3.0)
    min_steps = 1 if args.quick else 2
    # a quick run never replaces the full one that README's table is read from
    args.json = args.json or HERE / "results" / ("peer_quick.json" if args.quick else "peer.json")
    threads_list = sorted({t for t in args.threads if 1 <= t <= len(os.sched_getaffinity(0))})
    env = _worker_env(args.xla_flags)
    t_start = time.perf_counter()
    log = lambda msg: print(f"[{time.perf_counter() - t_start:6.0f} s] {msg}", file=sys.stderr, flush=True)
    rows, setups = [], {}
    from nax import jsonio
    from nax.provenance import provenance

    for preset in args.presets:  # the JSON is rewritten after each preset: a cut-short run keeps what it measured
        r, setups[preset] = bench_preset(preset, threads_list, rounds, target_s, env, log, min_steps)
        rows += r
        result = {
            "rows": rows,
            "ratios": ratios(rows),
            "setup": {
                "arch": ARCH,
                "presets": {
                    p: {"train_preset": PRESETS[p][0], "image": PRESETS[p][1], "batch": PRESETS[p][2]}
                    for p in args.presets
                },
                "presets_done": list(setups),
                "rounds": rounds,
                "round_s": target_s,
                "min_steps_per_round": min_steps,
                "quick": args.quick,
                "xla_flags": env["XLA_FLAGS"],
                "torch": __import__("torch").__version__,
                "wall_s": round(time.perf_counter() - t_start, 1),
                # CPU seconds of all workers: a load-independent measure of the run's size
                "cpu_s": round(
                    sum(getattr(resource.getrusage(resource.RUSAGE_CHILDREN), f) for f in ("ru_utime", "ru_stime")), 1
                ),
                "ratios_per_cpu_s_1_thread": cpu_ratios(setups),
                **setups,
            },
            "provenance": provenance(paths=["nax", "benchmarks/bench_peer.py", "benchmarks/peer_torch.py"]),
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(jsonio.dumps(result, indent=1) + "\n")
    print(f"\n{'preset':<10}{'contender':<18}{'threads':>8}{'median img/s':>14}{'min img/s':>11}")
    for r in rows:
        print(
            f"{r['preset']:<10}{r['contender']:<18}{r['threads']:>8}{r['img_s_median']:>14.1f}{r['img_s_min']:>11.1f}"
        )
    for p, v in result["ratios"].items():
        print(f"{p}: nax/torch {v['nax_over_torch']:.2f}, supernet/specialised {v['supernet_over_specialised']:.2f}")
    print(
        f"wall {result['setup']['wall_s']:.0f} s, CPU {result['setup']['cpu_s']:.0f} s (workers), written {args.json}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
