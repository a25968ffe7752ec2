"""`hamtune data`: write a synthetic dataset, check one image by image, split one by lesion."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="create, check and split datasets").add_subparsers(
        dest="data_command", required=True, metavar="ACTION")
    synth = data.add_parser("synth", help="write a synthetic HAM10000-shaped dataset (Kaggle layout)")
    synth.add_argument("out_dir", metavar="OUT_DIR", help="directory to write HAM10000_metadata.csv and the images into")
    synth.add_argument("--images", type=int, default=1000, help="number of images (default: %(default)s)")
    synth.add_argument("--seed", type=int, default=0, help="random seed of labels, lesions and pixels (default: %(default)s)")
    synth.add_argument("--size", type=int, nargs=2, default=(600, 450), metavar=("W", "H"),
                       help="image width and height in pixels (default: 600 450, as HAM10000)")
    synth.set_defaults(run=_synth)

    check = data.add_parser("check", help="validate a dataset, decoding every image")
    check.add_argument("data_dir", metavar="DATA_DIR", help="dataset directory (Kaggle or ISIC 2018 layout)")
    check.add_argument("--format", default="auto", help="auto (default), kaggle or isic2018")
    check.add_argument("--workers", type=int, default=None, help="decoding threads (default: all cores)")
    check.set_defaults(run=_check)

    split = data.add_parser("split", help="lesion-grouped, dx-stratified train/val/test split")
    split.add_argument("source", metavar="DATA_DIR_OR_METADATA_CSV", help="a dataset directory, or its metadata CSV alone")
    split.add_argument("--out", required=True, metavar="FILE.csv", help="CSV to write: image_id, lesion_id, dx, split (required)")
    split.add_argument("--val", type=float, default=0.15, help="validation fraction of lesions (default: %(default)s)")
    split.add_argument("--test", type=float, default=0.15, help="test fraction of lesions (default: %(default)s)")
    split.add_argument("--seed", type=int, default=0, help="split seed (default: %(default)s)")
    split.add_argument("--rare", default="error", help="a class too small for every split: error (default) or train")
    split.add_argument("--format", default="auto", help="auto (default), kaggle or isic2018")
    split.set_defaults(run=_split)


def _synth(args: argparse.Namespace) -> int:
    from hamtune.data.synth import write_synthetic

    out = write_synthetic(Path(args.out_dir), images=args.images, seed=args.seed, size=tuple(args.size))
    print(f"wrote {args.images} synthetic images (Kaggle layout) to {out}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from hamtune.data.check import check_dataset, format_report

    report = check_dataset(Path(args.data_dir), format=args.format, workers=args.workers)
    print(format_report(report))
    return 0 if report.ok else 1


def _split(args: argparse.Namespace) -> int:
    from hamtune.data.layout import read_labels
    from hamtune.data.split import split_dataset, split_summary, write_split

    labels = read_labels(Path(args.source), format=args.format)
    split = split_dataset(labels, val=args.val, test=args.test, seed=args.seed, rare=args.rare)
    write_split(split, Path(args.out))
    print(split_summary(split).to_string())
    print(f"wrote {len(split)} rows to {args.out}")
    return 0
