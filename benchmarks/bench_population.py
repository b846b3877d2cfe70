"""Images per second of K cells per program (``nax.population``) vs one cell per program.

Contenders per preset, timed in interleaved rounds on the same synthetic batches (the
step's cost does not depend on pixel values; real data is not needed to time it):

- ``specialised``: ``nax.train.Trainer`` for one cell, one program per architecture;
- ``single``: ``nax.train.Trainer`` in the compile-once form ``train_architecture`` uses;
- ``population K``: ``nax.population.PopulationTrainer`` stepping K different cells at once
  (one-hot mix under vmap), images counted as K x batch per step.

Each contender is compiled and warmed up first (its compile time is recorded); a round
then runs steps until ``--min-seconds`` have passed (at least 2). Medians and minima over
rounds, img/s. ``population.json`` holds the CPU numbers, ``bench_gpu.py`` the GPU run.

    python benchmarks/bench_population.py                       # metadata + cpu presets, K = 1, 2, 4
    python benchmarks/bench_population.py --presets metadata --ks 1 2 --rounds 1 --out /tmp/p.json
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import time

sys.path.insert(1, str(pathlib.Path(__file__).resolve().parents[1]))  # benchmark the checkout this file is in

#: one fixed cell for the one-cell contenders (NAS-Bench-201's best on CIFAR-10)
ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
#: image shape per preset: metadata's 8x8 and cpu's 28x28 greyscale; nb201's 32x32 RGB
IMAGE = {"tiny": (8, 8, 1), "metadata": (8, 8, 1), "cpu": (28, 28, 1), "nb201": (32, 32, 3)}


def _contenders(preset: str, ks, batch: int | None, specialised: bool, single: bool):
    """(name, K, init() -> state, step(state) -> (state, loss), compile seconds) per contender."""
    import jax
    import numpy as np

    from nax import population, space, train

    cfg = train.PRESETS[preset]
    if batch is not None:
        cfg = cfg.replace(batch_size=batch)
    shape = IMAGE[preset]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((cfg.batch_size, *shape), dtype=np.float32)
    y = rng.integers(0, 10, cfg.batch_size).astype(np.int32)
    enc = space.nb201.from_string(ARCH)
    out = []
    forms = (["specialised"] if specialised else []) + (["single"] if single else [])
    for form in forms:
        c = cfg.replace(form="specialised" if form == "specialised" else train.TrainConfig().form)
        tr = train.Trainer(10, c, enc)
        out.append((form, 1, tr, lambda tr=tr: tr.init(jax.random.key(0), enc, shape),
                    lambda st, tr=tr: tr.train_step(st, x, y, enc, 0.01)))  # fmt: skip
    for k in ks:
        encs = space.nb201.sample(jax.random.key(k), k)
        tr = population.PopulationTrainer(10, cfg, k)
        out.append((f"population {k}", k, tr, lambda tr=tr, encs=encs: tr.init(jax.random.key(0), encs, shape),
                    lambda st, tr=tr, encs=encs: tr.train_step(st, x, y, encs, 0.01)))  # fmt: skip
    return cfg, out


def measure(
    preset: str, ks, *, batch=None, rounds=3, min_seconds=2.0, specialised=True, single=True, log=print, save=None
):
    """Rows ``{preset, contender, k, batch, compile_s, img_s_median, img_s_min, img_s_rounds}``.

    ``save(rows)`` is called after every compile and round, so a run cut short keeps what it measured.
    """
    import jax

    cfg, contenders = _contenders(preset, ks, batch, specialised, single)
    states, rows = {}, {}
    for name, k, _, init, step in contenders:
        t0 = time.perf_counter()
        try:
            st = init()
            st, m = step(st)
            jax.block_until_ready(m)
        except Exception as e:  # out of device memory at large K is a result, not a crash
            log(f"{preset} {name}: failed ({type(e).__name__}: {str(e)[:200]})")
            rows[name] = {"preset": preset, "contender": name, "k": k, "error": f"{type(e).__name__}: {str(e)[:300]}"}
            continue
        compile_s = time.perf_counter() - t0
        st, m = step(st)  # one warm step after the compile
        jax.block_until_ready(m)
        states[name] = st
        rows[name] = {"preset": preset, "contender": name, "k": k, "batch": cfg.batch_size,
                      "compile_s": round(compile_s, 2), "img_s_rounds": []}  # fmt: skip
        log(f"{preset} {name}: compiled in {compile_s:.1f} s")
        save and save(_summarise(rows))
    for r in range(rounds):
        for name, k, _, _, step in contenders:
            if name not in states:
                continue
            st, n, t0 = states[name], 0, time.perf_counter()
            while n < 2 or time.perf_counter() - t0 < min_seconds:
                st, m = step(st)
                n += 1
                jax.block_until_ready(m)  # one step at a time: the loop's clock reads real work
            dt = time.perf_counter() - t0
            states[name] = st
            rows[name]["img_s_rounds"].append(round(n * k * cfg.batch_size / dt, 1))
            log(f"{preset} round {r} {name}: {rows[name]['img_s_rounds'][-1]} img/s ({n} steps)")
        save and save(_summarise(rows))
    return _summarise(rows)


def _summarise(rows: dict) -> list[dict]:
    for row in rows.values():
        if row.get("img_s_rounds"):
            row["img_s_median"] = statistics.median(row["img_s_rounds"])
            row["img_s_min"] = min(row["img_s_rounds"])
    return [dict(r) for r in rows.values()]


def ratios(rows) -> dict:
    """Per preset: population K / population 1, K / single, single / specialised (medians)."""
    out = {}
    for preset in dict.fromkeys(r["preset"] for r in rows):
        med = {r["contender"]: r.get("img_s_median") for r in rows if r["preset"] == preset}
        d = {}
        for name, v in med.items():
            if name.startswith("population ") and v and med.get("population 1"):
                d[f"{name.replace(' ', '_')}_over_population_1"] = round(v / med["population 1"], 3)
            if name.startswith("population ") and v and med.get("single"):
                d[f"{name.replace(' ', '_')}_over_single"] = round(v / med["single"], 3)
        if med.get("single") and med.get("specialised"):
            d["compile_once_over_specialised"] = round(med["single"] / med["specialised"], 3)
        out[preset] = d
    return out


def run(argv=None, *, defaults: dict | None = None, doc: str | None = None) -> dict:
    ap = argparse.ArgumentParser(description=(doc or __doc__).splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["metadata", "cpu"], choices=sorted(IMAGE))
    ap.add_argument("--ks", nargs="+", type=int, default=[1, 2, 4])
    ap.add_argument("--batch", type=int, default=None, help="batch per cell (default: the preset's)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--min-seconds", type=float, default=2.0, help="timed seconds per contender and round")
    ap.add_argument("--no-specialised", action="store_true")
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("benchmarks/results/population.json"))
    ap.add_argument("--smoke", action="store_true", help="tiny preset, K = 1 and 2, one short round (any machine)")
    ap.set_defaults(**(defaults or {}))
    args = ap.parse_args(argv)
    if args.smoke:
        args.presets, args.ks, args.rounds, args.min_seconds, args.batch = ["tiny"], [1, 2], 1, 0.2, 16

    import jax

    from nax import jsonio
    from nax.provenance import provenance

    load_before = os.getloadavg()
    t0 = time.perf_counter()
    prov = provenance(paths=("nax", "benchmarks/bench_population.py", "benchmarks/bench_gpu.py"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done: list[dict] = []

    def save(rows, complete=False):
        result = {
            "complete": complete,  # False: written part way (after a compile or a round)
            "rows": rows,
            "ratios": ratios([r for r in rows if r.get("img_s_median")]),
            "seconds": round(time.perf_counter() - t0, 1),
            "load_avg_before": [round(v, 2) for v in load_before],
            "load_avg_after": [round(v, 2) for v in os.getloadavg()],
            "devices": [d.device_kind for d in jax.local_devices()],
            "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
            "args": {k: (str(v) if isinstance(v, pathlib.Path) else v) for k, v in vars(args).items()},
            "provenance": prov,
        }
        args.out.write_text(jsonio.dumps(result, indent=1) + "\n")
        return result

    log = lambda s: print(s, file=sys.stderr, flush=True)
    for p in args.presets:
        done += measure(p, args.ks, batch=args.batch, rounds=args.rounds, min_seconds=args.min_seconds,
                        specialised=not args.no_specialised, log=log, save=lambda rows, prev=list(done): save(prev + rows))  # fmt: skip
    result = save(done, complete=True)
    print(jsonio.dumps({"ratios": result["ratios"], "seconds": result["seconds"]}, indent=1))
    return result


if __name__ == "__main__":
    run()
