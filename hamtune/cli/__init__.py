"""The `hamtune` command line: thin wrappers that parse arguments and print; the work is elsewhere.

Every user-fixable problem is a HamtuneError, printed as `hamtune: error: ...` with exit
status 2 (1 for a data check that found problems); `--debug` shows the traceback instead.
Heavy packages (TensorFlow, Ray) are imported only by the subcommands that need them.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import hamtune
from hamtune.version import __version__
from hamtune.errors import HamtuneError, SweepInterrupted
from hamtune.evaluation import DEFAULT_FOLDS, DEFAULT_SENSITIVITY, DEFAULT_TOP

DEFAULT_SWEEP = Path(__file__).resolve().parents[2] / "sweeps" / "smoke.yaml"  # hamtune/cli/ -> the repository


def _data_synth(args: argparse.Namespace) -> int:
    from hamtune.data.synth import write_synthetic

    out = write_synthetic(Path(args.out_dir), images=args.images, seed=args.seed, size=tuple(args.size))
    print(f"wrote {args.images} synthetic images (Kaggle layout) to {out}")
    return 0


def _data_check(args: argparse.Namespace) -> int:
    from hamtune.data.check import check_dataset, format_report

    report = check_dataset(Path(args.data_dir), format=args.format, workers=args.workers)
    print(format_report(report))
    return 0 if report.ok else 1


def _data_split(args: argparse.Namespace) -> int:
    from hamtune.data.layout import read_labels
    from hamtune.data.split import split_dataset, split_summary, write_split

    labels = read_labels(Path(args.source), format=args.format)
    split = split_dataset(labels, val=args.val, test=args.test, seed=args.seed, rare=args.rare)
    write_split(split, Path(args.out))
    print(split_summary(split).to_string())
    print(f"wrote {len(split)} rows to {args.out}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from hamtune.config import parse_sweep
    from hamtune.data.prepared import prepare_data
    from hamtune.training.trial import run_trial

    sweep = parse_sweep({
        "name": "train",
        "data": {
            "dir": args.data, "format": args.format, "image_size": args.image_size,
            "val_fraction": args.val, "test_fraction": args.test, "split_seed": args.split_seed,
            "cache_dir": args.cache_dir,
        },
        "space": {"models": [args.model]},
        "search": {"seed": args.seed},
        "scheduler": "none",  # one trial: nothing to compare it with
        "training": {
            "epochs": args.epochs, "warmup_epochs": 2 if args.warmup_epochs is None else args.warmup_epochs,
            "batch_size": args.batch_size,
            "patience": args.patience, "fine_tune_lr_scale": args.fine_tune_lr_scale,
            "weights": args.weights, "augmentation": args.augmentation, "backend": args.backend,
            "mixed_precision": False if args.no_mixed_precision else args.mixed_precision,
        },
        "resources": {"cpus_per_trial": args.cpus},
    }, source="command line")
    mode = sweep.training.mode_for(args.model)
    params = {
        "model": args.model, "learning_rate": args.learning_rate, "dropout": args.dropout,
        "unfreeze_depth": _unfreeze_depth(args, mode), "class_weight_power": args.class_weight_power,
    }
    _check_params(params, sweep)
    data = prepare_data(sweep.data)
    print(f"training {args.model} {_MODE_TEXT[mode]} on {data.index.root} ({len(data.index)} images) at "
          f"{args.image_size}px, augmentation {sweep.training.augmentation_for(args.model)}")
    state = run_trial(params, sweep.training, data, ConsoleReporter(), cpus=sweep.resources.cpus_per_trial,
                      use_gpu=None, seed=sweep.search.seed)
    print(f"best epoch {state.best_epoch}: val_macro_f1 {state.best_score:.4f}, "
          f"val_balanced_accuracy {state.best.get('val_balanced_accuracy', float('nan')):.4f}")
    return 0


_MODE_TEXT = {"scratch": "from scratch", "transfer": "by transfer learning"}


def _unfreeze_depth(args: argparse.Namespace, mode: str) -> int:
    """The depth a trial gets: given (transfer), or every block (from scratch, where it cannot be given)."""
    from hamtune.errors import ConfigError
    from hamtune.backbones import max_unfreeze_depth

    if mode == "transfer":
        return 0 if args.unfreeze_depth is None else args.unfreeze_depth
    if args.unfreeze_depth is not None or args.warmup_epochs is not None:
        flag = "--unfreeze-depth" if args.unfreeze_depth is not None else "--warmup-epochs"
        raise ConfigError(f"{flag} does not apply with --weights none: training from scratch trains every "
                          "block from the first epoch; drop it, or give --weights to fine-tune")
    return max_unfreeze_depth(args.model)


def _check_params(params: dict, sweep) -> None:  # noqa: ANN001 - SweepConfig imported lazily
    """Validate `hamtune train`'s hyperparameters with the same rules as a sweep file's space."""
    from hamtune.errors import ConfigError
    from hamtune.backbones import max_unfreeze_depth

    top = max_unfreeze_depth(params["model"])
    if not 0 <= params["unfreeze_depth"] <= top:
        raise ConfigError(f"--unfreeze-depth must be in [0, {top}] for {params['model']}, got {params['unfreeze_depth']}")
    if not params["learning_rate"] > 0:
        raise ConfigError(f"--learning-rate must be > 0, got {params['learning_rate']}")
    if not 0 <= params["dropout"] < 1:
        raise ConfigError(f"--dropout must be in [0, 1), got {params['dropout']}")
    if not params["class_weight_power"] >= 0:
        raise ConfigError(f"--class-weight-power must be >= 0, got {params['class_weight_power']}")


class ConsoleReporter:
    """`hamtune train`'s reporter: one line of metrics per epoch, no checkpoints."""

    wants_checkpoints = False

    def report(self, metrics: dict, checkpoint_dir: Path | None) -> None:
        print(
            f"epoch {metrics['epoch']:>3} (phase {metrics['phase']})  train_loss {metrics['train_loss']:.4f}  "
            f"val_loss {metrics['val_loss']:.4f}  val_macro_f1 {metrics['val_macro_f1']:.4f}  "
            f"val_balanced_accuracy {metrics['val_balanced_accuracy']:.4f}  "
            f"val_mel_recall {metrics['val_mel_recall']:.4f}  ({metrics['train_seconds']:.1f}s training)",
            flush=True,
        )


def resume_command(args: argparse.Namespace) -> str:
    """The `hamtune sweep` command that continues this one: same file and locating flags, `--resume`."""
    words = ["hamtune", "sweep", args.sweep_file]
    for flag in ("data", "address", "storage", "name"):
        if getattr(args, flag) is not None:
            words += [f"--{flag}", getattr(args, flag)]
    return shlex.join([*words, "--resume"])


def _sweep(args: argparse.Namespace) -> int:
    import optuna

    from hamtune.sweep.cluster import check_address
    from hamtune.config import load_sweep, with_overrides
    from hamtune.sweep.run import run_sweep

    # Optuna's INFO lines ("A new study created in memory") repeat what the sweep's header says.
    optuna.logging.set_verbosity(optuna.logging.DEBUG if args.debug else optuna.logging.WARNING)
    check_address(args.address)
    sweep = load_sweep(Path(args.sweep_file))
    sweep = with_overrides(sweep, data_dir=args.data, storage=args.storage, name=args.name, trials=args.trials)
    try:
        result = run_sweep(sweep, address=args.address, resume=args.resume, dry_run=args.dry_run, verbose=args.verbose)
    except SweepInterrupted as stop:
        print(f"hamtune: {stop}; continue it with: {resume_command(args)}", file=sys.stderr)
        return 130
    if result is not None:
        from hamtune.store.experiment import experiment_for
        from hamtune.store.tables import TRIALS_FILE, EPOCHS_FILE, read_table

        experiment = experiment_for(sweep.storage, sweep.name)
        trials, _ = read_table(f"{experiment.uri}/{TRIALS_FILE}")
        columns = ["trial_id", "status", "model", "learning_rate", "dropout", "unfreeze_depth",
                   "class_weight_power", "best_epoch", "val_macro_f1", "val_balanced_accuracy", "val_mel_recall"]
        print("\ntop trials by val_macro_f1:")
        print(trials[columns].head(5).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        print(f"\ntables: {experiment.uri}/{TRIALS_FILE}\n        {experiment.uri}/{EPOCHS_FILE}")
    return 0


def _analyze(args: argparse.Namespace) -> int:
    from hamtune.results.analysis import analyze
    from hamtune.results.report import format_analysis, write_report

    analysis = analyze(args.paths, metric=args.metric, top=args.top)
    print(format_analysis(analysis, args.format))
    if args.out:
        report, *images = write_report(analysis, Path(args.out))
        stream = sys.stdout if args.format in ("table", "markdown") else sys.stderr  # keep csv/json stdout clean
        print(f"\nreport: {report} (+ {len(images)} PNG plots in {report.parent})", file=stream)
    return 0


def _refit(args: argparse.Namespace) -> int:
    from hamtune.evaluation.refit import refit, summary

    result = refit(args.experiment, rank=args.rank, trial_id=args.trial, epochs=args.epochs,
                   out=args.out, cpus=args.cpus, address=args.address)
    print(summary(result))
    return 0


def _export(args: argparse.Namespace) -> int:
    from hamtune.evaluation.export import export, summary

    print(summary(export(args.experiment, args.out, rank=args.rank, trial_id=args.trial)))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from hamtune.evaluation.evaluate import evaluate, summary

    print(summary(evaluate(args.experiment, top=args.top, folds=args.folds, tta=args.tta, ensemble=args.ensemble,
                           mel_sensitivity=args.mel_sensitivity, epochs=args.epochs, out=args.out, cpus=args.cpus,
                           address=args.address)))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from hamtune.evaluation.predict import predict

    table = predict(args.model_dir, args.images)
    print(table.to_csv(index=False, float_format="%.4f").rstrip("\n") if args.format == "csv"
          else table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hamtune", description=hamtune.__doc__)
    parser.add_argument("--version", action="version", version=f"hamtune {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = commands.add_parser("data", help="create, check and split datasets").add_subparsers(
        dest="data_command", required=True, metavar="ACTION")
    synth = data.add_parser("synth", help="write a synthetic HAM10000-shaped dataset (Kaggle layout)")
    synth.add_argument("out_dir", metavar="OUT_DIR", help="directory to write HAM10000_metadata.csv and the images into")
    synth.add_argument("--images", type=int, default=1000, help="number of images (default: %(default)s)")
    synth.add_argument("--seed", type=int, default=0, help="random seed of labels, lesions and pixels (default: %(default)s)")
    synth.add_argument("--size", type=int, nargs=2, default=(600, 450), metavar=("W", "H"),
                       help="image width and height in pixels (default: 600 450, as HAM10000)")
    synth.set_defaults(run=_data_synth)

    check = data.add_parser("check", help="validate a dataset, decoding every image")
    check.add_argument("data_dir", metavar="DATA_DIR", help="dataset directory (Kaggle or ISIC 2018 layout)")
    check.add_argument("--format", default="auto", help="auto (default), kaggle or isic2018")
    check.add_argument("--workers", type=int, default=None, help="decoding threads (default: all cores)")
    check.set_defaults(run=_data_check)

    split = data.add_parser("split", help="lesion-grouped, dx-stratified train/val/test split")
    split.add_argument("source", metavar="DATA_DIR_OR_METADATA_CSV", help="a dataset directory, or its metadata CSV alone")
    split.add_argument("--out", required=True, metavar="FILE.csv", help="CSV to write: image_id, lesion_id, dx, split (required)")
    split.add_argument("--val", type=float, default=0.15, help="validation fraction of lesions (default: %(default)s)")
    split.add_argument("--test", type=float, default=0.15, help="test fraction of lesions (default: %(default)s)")
    split.add_argument("--seed", type=int, default=0, help="split seed (default: %(default)s)")
    split.add_argument("--rare", default="error", help="a class too small for every split: error (default) or train")
    split.add_argument("--format", default="auto", help="auto (default), kaggle or isic2018")
    split.set_defaults(run=_data_split)

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

    sweep = commands.add_parser("sweep", help="run a hyperparameter sweep (Ray Tune + Optuna + ASHA)")
    sweep.add_argument("sweep_file", nargs="?", default=str(DEFAULT_SWEEP), metavar="SWEEP_FILE",
                       help="sweep file (default: sweeps/smoke.yaml, synthetic data)")
    sweep.add_argument("--data", default=None, metavar="DIR", help="override data.dir (default: the sweep file's)")
    sweep.add_argument("--address", default=None,
                       help="join a Ray cluster: auto or host:port (default: a private Ray instance on this machine)")
    sweep.add_argument("--storage", default=None, metavar="PATH_OR_URI", help="override storage (default: the sweep file's)")
    sweep.add_argument("--name", default=None, help="override the experiment name (default: the sweep file's)")
    sweep.add_argument("--trials", type=int, default=None,
                       help="override search.trials (default: the sweep file's); not with --resume")
    sweep.add_argument("--resume", action="store_true",
                       help="continue an interrupted sweep, with the settings it started with (default: start a new one)")
    sweep.add_argument("--dry-run", action="store_true", help="print the plan and exit, writing nothing")
    sweep.add_argument("--verbose", action="store_true",
                       help="also print Ray Tune's status tables (default: hamtune's progress display only)")
    sweep.set_defaults(run=_sweep)

    analyze = commands.add_parser("analyze", help="leaderboard, model comparison, importance, plots, HTML report")
    analyze.add_argument("paths", nargs="+", metavar="PATH",
                         help="a trials.parquet, an experiment directory or a URI; several merge (sweep column)")
    analyze.add_argument("--out", default=None, metavar="DIR", help="also write PNG plots and report.html here")
    analyze.add_argument("--top", type=int, default=10, help="leaderboard rows (default: 10)")
    analyze.add_argument("--metric", default="val_macro_f1", help="validation metric to rank by (default: val_macro_f1)")
    analyze.add_argument("--format", default="table", help="table (default), markdown, csv or json")
    analyze.set_defaults(run=_analyze)

    refit = commands.add_parser("refit", help="retrain a trial's configuration on train+val, evaluate once on test")
    refit.add_argument("experiment", metavar="EXPERIMENT", help="experiment directory or URI")
    choice = refit.add_mutually_exclusive_group()
    choice.add_argument("--rank", type=int, default=None, help="refit the trial at this rank by val_macro_f1 (default: 1)")
    choice.add_argument("--trial", default=None, metavar="ID", help="refit this trial id (or trial_<id>) instead")
    refit.add_argument("--epochs", type=int, default=None, help="epochs to train (default: the trial's best epoch)")
    refit.add_argument("--out", default=None, metavar="DIR", help="output directory (default: EXPERIMENT/refit_<trial>)")
    refit.add_argument("--cpus", type=float, default=None, help="TensorFlow CPU threads in-process (default: all)")
    refit.add_argument("--address", default=None,
                       help="run as a Ray task with the trial's resources: auto, host:port, or local")
    refit.set_defaults(run=_refit)

    exporting = commands.add_parser("export", help="write a trial's best-epoch model (.keras, SavedModel, model.json)")
    exporting.add_argument("experiment", metavar="EXPERIMENT", help="experiment directory or URI")
    choice = exporting.add_mutually_exclusive_group()
    choice.add_argument("--rank", type=int, default=None, help="export the trial at this rank by val_macro_f1 (default: 1)")
    choice.add_argument("--trial", default=None, metavar="ID", help="export this trial id (or trial_<id>) instead")
    exporting.add_argument("--out", required=True, metavar="DIR", help="output directory, new or empty (required)")
    exporting.set_defaults(run=_export)

    evaluating = commands.add_parser(
        "evaluate", help="cross-validate the top trials, refit, TTA, calibrate, ensemble, melanoma threshold: "
                         "one final model directory")
    evaluating.add_argument("experiment", metavar="EXPERIMENT", help="experiment directory or URI")
    evaluating.add_argument("--top", type=int, default=DEFAULT_TOP,
                            help="cross-validate this many of the best trials by val_macro_f1 (default: %(default)s)")
    evaluating.add_argument("--folds", type=int, default=DEFAULT_FOLDS,
                            help="lesion-grouped, dx-stratified folds of train+val (default: %(default)s)")
    evaluating.add_argument("--no-tta", dest="tta", action="store_false",
                            help="predict without test-time augmentation (default: average the 8 dihedral views)")
    evaluating.add_argument("--ensemble", action="store_true",
                            help="the final model averages the calibrated refits of all --top configurations "
                                 "(default: the CV-chosen configuration alone)")
    evaluating.add_argument("--mel-sensitivity", type=float, default=DEFAULT_SENSITIVITY,
                            help="melanoma sensitivity the threshold is chosen for, in (0, 1) (default: %(default)s)")
    evaluating.add_argument("--epochs", type=int, default=None,
                            help="train every run this many epochs (default: each trial's best epoch count)")
    evaluating.add_argument("--out", default=None, metavar="DIR",
                            help="final model directory, new or empty (default: EXPERIMENT/final)")
    evaluating.add_argument("--cpus", type=float, default=None, help="TensorFlow CPU threads in-process (default: all)")
    evaluating.add_argument("--address", default=None,
                            help="run the training as Ray tasks with a trial's resources each, as many at once as "
                                 "fit: auto, host:port, or local (default: one after another in this process)")
    evaluating.set_defaults(run=_evaluate)

    predicting = commands.add_parser("predict", help="classify JPEG images with a final model directory")
    predicting.add_argument("model_dir", metavar="MODEL_DIR", help="a directory written by `hamtune evaluate`")
    predicting.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG or anything Pillow reads)")
    predicting.add_argument("--format", choices=("table", "csv"), default="table",
                            help="output: table (default) or csv")
    predicting.set_defaults(run=_predict)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("hamtune").setLevel(logging.DEBUG if args.debug else logging.INFO)
    try:
        return args.run(args)
    except HamtuneError as error:
        if args.debug:
            raise
        print(f"hamtune: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hamtune: interrupted", file=sys.stderr)
        return 130

