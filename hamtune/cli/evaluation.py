"""From an experiment to a model: `hamtune refit`, `export`, `evaluate` and `predict`."""

from __future__ import annotations

import argparse

from hamtune.evaluation import DEFAULT_FOLDS, DEFAULT_SENSITIVITY, DEFAULT_TOP, DEFAULT_TTA, STEPS, TTA_CHOICES


def register(commands: argparse._SubParsersAction) -> None:
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
    evaluating.add_argument("--tta", choices=TTA_CHOICES, default=DEFAULT_TTA,
                            help="test-time augmentation views: auto (default: the flips a model trained with "
                                 "flips saw, the 8 dihedral views after the full augmentation, none without), "
                                 "none, flips or dihedral; kept only where it helps out of fold")
    evaluating.add_argument("--no-tta", dest="tta", action="store_const", const="none", help="same as --tta none")
    evaluating.add_argument("--ensemble", action="store_true",
                            help="try an ensemble of the --top configurations within one standard error of the best "
                                 "CV macro F1, kept only where it helps out of fold (default: one configuration)")
    for step in STEPS:
        evaluating.add_argument(f"--force-{step}", dest="force", action="append_const", const=step,
                                help=f"keep {step} in the final model even where it did not help out of fold")
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


def _refit(args: argparse.Namespace) -> int:
    from hamtune.evaluation.refit import refit, summary

    result = refit(args.experiment, rank=args.rank, trial_id=args.trial, epochs=args.epochs,
                   out=args.out, cpus=args.cpus, address=args.address)
    print(summary(result))
    return 0


def _export(args: argparse.Namespace) -> int:
    from hamtune.api import open_experiment
    from hamtune.evaluation.export import summary

    print(summary(open_experiment(args.experiment).export(args.out, rank=args.rank, trial_id=args.trial)))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from hamtune.evaluation.evaluate import evaluate, summary

    print(summary(evaluate(args.experiment, top=args.top, folds=args.folds, tta=args.tta, ensemble=args.ensemble,
                           force=args.force or (), mel_sensitivity=args.mel_sensitivity, epochs=args.epochs,
                           out=args.out, cpus=args.cpus, address=args.address)))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from hamtune.evaluation.predict import predict

    table = predict(args.model_dir, args.images)
    print(table.to_csv(index=False, float_format="%.4f").rstrip("\n") if args.format == "csv"
          else table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0
