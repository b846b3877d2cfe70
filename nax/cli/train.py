"""``nax train``: train one architecture on a bundled dataset and write its record."""

from __future__ import annotations

import argparse
import json
import pathlib

#: a strong NAS-Bench-201 cell (top 1% on all three NB201 datasets)
DEFAULT_ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
#: the names of nax.train.PRESETS, restated so `nax train --help` imports no jax
#: (tests/test_cli_fast.py checks they match)
PRESET_NAMES = ("tiny", "cpu", "nb201", "metadata")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train one architecture and record its learning curve",
        description="Train one NAS-Bench-201 cell on a bundled dataset; print the curve and write it as JSON.",
    )
    p.add_argument("--arch", default=DEFAULT_ARCH, help="NAS-Bench-201 string (default: a strong conv cell)")
    p.add_argument("--dataset", default="digits", help="bundled dataset name (see `nax data list`)")
    p.add_argument("--preset", default="cpu", choices=sorted(PRESET_NAMES), help="network size and schedule")
    p.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=None, help="override the preset's learning rate")
    p.add_argument("--train-limit", type=int, default=None, help="stratified subset of the training split")
    p.add_argument("--image-size", type=int, nargs=2, default=None, metavar=("H", "W"))
    p.add_argument(
        "--form",
        choices=("supernet", "specialised"),
        default=None,
        help="compile-once supernet (default) or a network specialised to the architecture",
    )
    p.add_argument("--data-dir", type=pathlib.Path, default=None)
    p.add_argument(
        "--out",
        type=pathlib.Path,
        default=pathlib.Path("runs/train"),
        help="directory for record.json (default runs/train)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nax import space, train

    enc = space.nb201.from_string(args.arch)
    overrides = {"seed": args.seed}
    for field, value in (
        ("epochs", args.epochs),
        ("learning_rate", args.lr),
        ("train_limit", args.train_limit),
        ("image_size", tuple(args.image_size) if args.image_size else None),
        ("form", args.form),
    ):
        if value is not None:
            overrides[field] = value
    cfg = train.preset(args.preset, **overrides)
    rec = train.train_architecture(enc, args.dataset, cfg, data_dir=args.data_dir, progress=True)

    print(f"\n{rec.dataset}  {rec.arch}  status={rec.status}  params={rec.num_params:,}  {rec.wall_s:.1f} s")
    print(f"{'epoch':>5} {'train_loss':>10} {'val_acc':>8} {'val_loss':>9} {'sec':>6}")
    for m in rec.curve:
        print(f"{m.epoch:>5} {m.train_loss:>10.4f} {m.val_accuracy:>8.4f} {m.val_loss:>9.4f} {m.epoch_s:>6.2f}")
    if rec.test_accuracy is not None:
        print(f"test accuracy {rec.test_accuracy:.4f}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "record.json"
    path.write_text(json.dumps(json.loads(rec.to_json()), indent=1) + "\n")
    print(f"wrote {path}")
    return 0 if rec.status != "diverged" else 1
