"""Start-up time of the ``nax`` command: ``--help`` of every command and subcommand.

Each command runs ``--repeats`` times in a fresh process (``python -c "...nax.cli.main()"``:
the code the ``nax`` script runs, without the launcher a pyenv shim adds, and runnable on
checkouts older than ``python -m nax.cli``, for a before/after comparison); the
table gives the median and the worst wall time and the JSON keeps every time. The target
(issue 15): every ``--help`` under 1 s. The load average is recorded because other jobs on
the machine slow every start.

    python benchmarks/bench_cli.py [--repeats 5] [--json benchmarks/results/cli.json]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import time

TARGET_S = 1.0
RUN = "import sys; from nax.cli import main; sys.exit(main())"


def command_paths() -> list[tuple[str, ...]]:
    """Every command path of ``nax``: (), ("data",), ("data", "list"), ..."""
    from nax import cli

    def walk(parser, prefix):
        out = [prefix]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    out += walk(sub, (*prefix, name))
        return out

    return walk(cli.build_parser(), ())


def time_help(path: tuple[str, ...], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-c", RUN, *path, "--help"], capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if r.returncode != 0 or not r.stdout.startswith("usage: nax"):
            raise RuntimeError(f"nax {' '.join(path)} --help failed: {r.stderr}")
    return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=pathlib.Path, default=pathlib.Path("benchmarks/results/cli.json"))
    args = ap.parse_args(argv)

    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    rows = []
    for path in command_paths():
        times = time_help(path, args.repeats)
        rows.append(
            {
                "command": " ".join(("nax", *path, "--help")),
                "median_s": round(statistics.median(times), 3),
                "max_s": round(max(times), 3),
                "times_s": [round(t, 3) for t in times],
            }
        )
    wall = time.perf_counter() - t0

    width = max(len(r["command"]) for r in rows)
    print(f"{'command':<{width}}  {'median s':>8}  {'max s':>6}  under {TARGET_S:g} s")
    for r in rows:
        print(
            f"{r['command']:<{width}}  {r['median_s']:>8.3f}  {r['max_s']:>6.3f}  "
            f"{'yes' if r['median_s'] < TARGET_S else 'NO'}"
        )
    worst = max(r["median_s"] for r in rows)
    print(f"\n{len(rows)} commands, worst median {worst:.3f} s; load average {load_before:.1f} at the start")

    from nax import jsonio
    from nax.provenance import provenance

    out = {
        "benchmark": "cli_startup",
        "command": "python benchmarks/bench_cli.py " + " ".join(argv or sys.argv[1:]),
        "target_s": TARGET_S,
        "repeats": args.repeats,
        "load_average_1min": round(load_before, 2),
        "wall_s": round(wall, 1),
        "results": rows,
        **provenance(paths=["nax/cli", "nax/__init__.py", "benchmarks/bench_cli.py"]),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(jsonio.dumps(out, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0 if worst < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
