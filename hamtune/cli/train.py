"""`hamtune train`: one configuration in this process, a line per epoch (`hamtune.train`)."""

from __future__ import annotations

import argparse
from inspect import signature

from hamtune.config.types import LR_SCHEDULES
from hamtune.keys import HYPERPARAMETERS

#: How the command spells `hamtune.train`'s settings in its messages: as the flags the user typed.
FLAGS = {name: f"--{name.replace('_', '-')}"
         for name in (*HYPERPARAMETERS, "warmup_epochs", "weights", "lr_schedule", "weight_decay")}


def register(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser("train", help="run one trial in-process (no Ray), a line per epoch")
    train.add_argument("--data", default=None, metavar="DIR", help="dataset directory (default: a synthetic dataset)")
    train.add_argument("--format", default="auto", help="dataset layout: auto (default), kaggle or isic2018")
    train.add_argument("--model", default="densenet121", help="densenet121 (default) or convnext_small")
    train.add_argument("--learning-rate", type=float, default=1e-3, help="Adam learning rate (default: %(default)s)")
    train.add_argument("--dropout", type=float, default=0.3, help="dropout before the classifier (default: %(default)s)")
    train.add_argument("--unfreeze-depth", type=int, default=None,
                       help="transfer mode: top blocks fine-tuned after the warm-up (default: 0, head only)")
    train.add_argument("--class-weight-power", type=float, default=0.5,
                       help="class weights (N / (K n_c)) ** power: 0 none, 1 balanced (default: %(default)s)")
    train.add_argument("--epochs", type=int, default=5, help="training epochs (default: %(default)s)")
    train.add_argument("--warmup-epochs", type=int, default=None,
                       help="transfer mode: head-only epochs before fine-tuning (default: 2)")
    train.add_argument("--batch-size", type=int, default=32, help="images per batch (default: %(default)s)")
    train.add_argument("--patience", type=int, default=5,
                       help="stop after this many epochs without a better val macro F1 (default: %(default)s)")
    train.add_argument("--fine-tune-lr-scale", type=float, default=0.1,
                       help="transfer mode: learning rate factor once blocks unfreeze (default: %(default)s)")
    train.add_argument("--lr-schedule", default=None, choices=LR_SCHEDULES,
                       help="constant, or cosine: a warm-up epoch then a cosine decay to zero (default: the sweep "
                            "file's default, see README)")
    train.add_argument("--weight-decay", type=float, default=None,
                       help="decoupled weight decay, as AdamW (default: the sweep file's default)")
    train.add_argument("--weight-averaging", default=None, action=argparse.BooleanOptionalAction,
                       help="score the moving average of the weights (default: the sweep file's default)")
    train.add_argument("--image-size", type=int, default=224, help="square input side in pixels (default: %(default)s)")
    train.add_argument("--weights", default="imagenet",
                       help="imagenet (default), a local weights file (transfer learning), or none (train from scratch)")
    train.add_argument("--augmentation", default="auto",
                       help="auto (default: flips from scratch, full for transfer), none, flips or full")
    train.add_argument("--backend", default="tensorflow", choices=("tensorflow", "jax"),
                       help="Keras backend: tensorflow (default) or jax (no TensorFlow needed, one XLA program per step)")
    train.add_argument("--mixed-precision", default="float16", choices=("float16", "bfloat16"),
                       help="compute type on GPUs: float16 (default, loss-scaled) or bfloat16 (Ampere/Hopper)")
    train.add_argument("--no-mixed-precision", action="store_true",
                       help="train in float32 on a GPU too (default: mixed float16 on GPUs, float32 on CPUs)")
    train.add_argument("--val", type=float, default=0.15, help="validation fraction of lesions (default: %(default)s)")
    train.add_argument("--test", type=float, default=0.15, help="test fraction of lesions, held out (default: %(default)s)")
    train.add_argument("--split-seed", type=int, default=0, help="split seed (default: %(default)s)")
    train.add_argument("--cache-dir", default=None, metavar="DIR",
                       help="decoded-image cache (default: $HAMTUNE_CACHE_DIR or ~/.cache/hamtune)")
    train.add_argument("--cpus", type=float, default=2, help="TensorFlow CPU threads (default: %(default)s)")
    train.add_argument("--seed", type=int, default=0, help="training seed (default: %(default)s)")
    train.set_defaults(run=_train)


def _train(args: argparse.Namespace) -> int:
    from hamtune.api import train

    settings = {name: value for name, value in vars(args).items() if name in signature(train).parameters}
    if args.no_mixed_precision:
        settings["mixed_precision"] = False
    state = train(**settings, source="command line", names=FLAGS)
    print(f"best epoch {state.best_epoch}: val_macro_f1 {state.best_score:.4f}, "
          f"val_balanced_accuracy {state.best.get('val_balanced_accuracy', float('nan')):.4f}")
    return 0
