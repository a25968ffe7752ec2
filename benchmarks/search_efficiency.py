"""Search efficiency on real HAM10000: hamtune's search against the notebook recipe and random search.

    python benchmarks/search_efficiency.py [--data ../shared/data/ham10000-dev] [--seeds 0 1 2]
        [--epochs 4] [--tpe-trials 6] [--random-trials 3] [--patience 3] [--size 32] [--out DIR]

Everything is DenseNet121 trained from scratch (`training.weights: none`) at `--size` px on the
real development set, on one lesion-grouped split (split seed 0); each `--seeds` value seeds the
searches and the models. For each seed, side by side in one run on this machine:

  tpe_asha  a hamtune sweep: TPE (`search.sampler: tpe`) + phase-aware ASHA (grace 1, reduction
            factor 2, up to `--epochs` per trial), patience `--patience`;
  random    a hamtune sweep: uniform random search (`search.sampler: random`), no scheduler, no
            early stopping: every trial runs all `--epochs`;
  recipe    the notebook's recipe (Adam 1e-3, dropout 0.3, class-weight power 1, flips) as a
            one-trial hamtune sweep with patience `--patience`, allowed as many epochs as the
            tpe_asha sweep used in all;
  keras     the same recipe as a plain Keras `fit` on in-memory arrays (keras.applications
            DenseNet121, RandomFlip, balanced `class_weight`), scored on val after each epoch.

Then `hamtune refit` retrains tpe_asha's best configuration and the recipe on train+val for their
best epoch counts and scores the test split once. Three tables:

  (a) test macro F1 of the sweep's refit against the recipe's (target: +0.05 on average, and
      val macro F1 >= 0.50);
  (b) epochs TPE+ASHA needs to reach random search's final best (target: <= 50 % of random's);
  (c) wall time until hamtune's sweep first reaches the plain-Keras recipe's final val macro
      F1, against the time the plain-Keras run took to reach it (target: <= 0.5x).

Raw per-epoch curves and the tables go to `--out` (default benchmarks/results/search-<date>).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from machine import machine  # benchmarks/machine.py

REPO = Path(__file__).resolve().parents[1]
DEV_DATA = REPO.parent / "shared" / "data" / "ham10000-dev"
RECIPE = {"model": "densenet121", "learning_rate": 1.0e-3, "dropout": 0.3, "class_weight_power": 1.0}


def sweep_config(arm: str, seed: int, args: argparse.Namespace, storage: Path, epochs: int) -> Any:
    """The arm's sweep, built with hamtune's own validation (`parse_sweep`)."""
    from hamtune.config import parse_sweep

    search = {"seed": seed, "max_concurrent": 2, "points_to_evaluate": []}
    scheduler: Any = "none"
    patience = args.patience
    if arm == "tpe_asha":
        search.update(trials=args.tpe_trials, sampler="tpe")
        scheduler = {"type": "asha", "max_epochs": epochs, "reduction_factor": 2}
    elif arm == "random":
        search.update(trials=args.random_trials, sampler="random")
        patience = epochs  # no early stopping of any kind
    else:  # recipe: one trial, the notebook's settings
        search.update(trials=1, max_concurrent=1, points_to_evaluate=[RECIPE])
    return parse_sweep({
        "name": f"{arm}-{seed}",
        "data": {"dir": str(args.data), "image_size": args.size, "split_seed": 0, "cache_dir": str(args.cache)},
        "space": {"models": ["densenet121"], "learning_rate": {"low": 1.0e-4, "high": 1.0e-2, "log": True},
                  "dropout": {"low": 0.0, "high": 0.5}, "class_weight_power": {"low": 0.0, "high": 1.0}},
        "search": search,
        "scheduler": scheduler,
        "training": {"epochs": epochs, "patience": patience, "batch_size": 32, "weights": "none",
                     "mixed_precision": False},
        "resources": {"cpus_per_trial": 2 if arm == "recipe" else 1},
        "storage": str(storage),
        "failures": {"max_retries": 1},
    }, source=f"benchmark:{arm}")


def curve(experiment: Path, started: float) -> pd.DataFrame:
    """Every reported epoch of a sweep in report order: cumulative epochs, seconds since start, best F1."""
    rows = []
    for result in experiment.glob("trial_*/result.json"):
        for line in result.read_text().splitlines():
            row = json.loads(line) if line.strip() else {}
            if "epoch" in row:
                rows.append({"time": row["timestamp"], "trial": result.parent.name, "epoch": row["epoch"],
                             "f1": row["val_macro_f1"]})
    frame = pd.DataFrame(rows).sort_values(["time", "trial"], kind="stable").reset_index(drop=True)
    frame["epochs"] = range(1, len(frame) + 1)
    frame["seconds"] = frame["time"] - started
    frame["best"] = frame["f1"].cummax()
    return frame


def run_arm(arm: str, seed: int, args: argparse.Namespace, storage: Path, epochs: int) -> tuple[pd.DataFrame, Path]:
    import ray

    from hamtune.sweep.run import run_sweep

    sweep = sweep_config(arm, seed, args, storage, epochs)
    started = time.time()
    try:
        run_sweep(sweep, echo=lambda *_: None)
    finally:
        ray.shutdown()  # run_sweep leaves its local Ray instance up; the next arm starts its own
    frame = curve(storage / sweep.name, started)
    print(f"  {arm}: {len(frame)} epochs, best val macro F1 {frame['best'].iloc[-1]:.4f}, "
          f"{time.time() - started:.0f} s", flush=True)
    return frame, storage / sweep.name


def refit_test(experiment: Path) -> dict[str, float]:
    from hamtune.evaluation.refit import refit

    result = refit(str(experiment), cpus=2)
    return {"test_macro_f1": result.report["test"]["macro_f1"],
            "test_balanced_accuracy": result.report["test"]["balanced_accuracy"],
            "val_macro_f1": result.report["validation"]["val_macro_f1"], "epochs": result.epochs}


def plain_keras(args: argparse.Namespace, seed: int, epochs: int) -> pd.DataFrame:
    """The recipe as a notebook would run it: in-memory arrays, `fit`, val macro F1 after each epoch."""
    from hamtune.data.cache import open_cache
    from hamtune.data.prepared import prepare_data
    from hamtune.training.device import configure_tensorflow

    started = time.time()
    configure_tensorflow(2, False, False)
    import keras
    from sklearn.metrics import f1_score
    from sklearn.utils.class_weight import compute_class_weight

    config = sweep_config("recipe", seed, args, args.cache, epochs)
    data = prepare_data(config.data)
    images = np.asarray(open_cache(data.index, data.image_size, data.cache_dir).images)
    train, val = data.positions("train"), data.positions("val")
    x_train = keras.applications.densenet.preprocess_input(images[train].astype("float32"))
    x_val = keras.applications.densenet.preprocess_input(images[val].astype("float32"))
    y_train, y_val = data.labels(train), data.labels(val)
    classes = np.unique(y_train)
    weights = dict(zip(classes.tolist(), compute_class_weight("balanced", classes=classes, y=y_train)))

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((args.size, args.size, 3))
    x = keras.layers.RandomFlip("horizontal_and_vertical")(inputs)
    x = keras.applications.DenseNet121(include_top=False, weights=None, input_shape=(args.size, args.size, 3))(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(RECIPE["dropout"])(x)
    model = keras.Model(inputs, keras.layers.Dense(7, activation="softmax")(x))
    model.compile(keras.optimizers.Adam(RECIPE["learning_rate"]), "sparse_categorical_crossentropy")
    rows, best, waited = [], -1.0, 0
    for epoch in range(1, epochs + 1):
        model.fit(x_train, y_train, batch_size=32, epochs=1, class_weight=weights, verbose=0)
        f1 = f1_score(y_val, model.predict(x_val, verbose=0).argmax(1), average="macro")
        rows.append({"epoch": epoch, "f1": f1, "seconds": time.time() - started})
        best, waited = (f1, 0) if f1 > best else (best, waited + 1)
        if waited >= args.patience:
            break
    keras.backend.clear_session()
    frame = pd.DataFrame(rows)
    frame["best"] = frame["f1"].cummax()
    print(f"  keras: {len(frame)} epochs, best val macro F1 {best:.4f}, {time.time() - started:.0f} s", flush=True)
    return frame


def first_time(frame: pd.DataFrame, target: float) -> float:
    reached = frame[frame["f1"] >= target - 1e-12]
    return float(reached["seconds"].iloc[0]) if len(reached) else float("nan")


def run_seed(seed: int, args: argparse.Namespace, storage: Path, out: Path) -> dict[str, dict[str, float]]:
    print(f"seed {seed}", flush=True)

    def keep(name: str, frame: pd.DataFrame) -> pd.DataFrame:
        frame.to_csv(out / f"curve-{name}-seed{seed}.csv", index=False)
        return frame

    tpe, tpe_dir = run_arm("tpe_asha", seed, args, storage, args.epochs)
    keep("tpe_asha", tpe)
    sweep_test = refit_test(tpe_dir)
    keras_curve = keep("keras", plain_keras(args, seed, len(tpe)))
    random = keep("random", run_arm("random", seed, args, storage, args.epochs)[0])
    recipe, recipe_dir = run_arm("recipe", seed, args, storage, len(tpe))
    keep("recipe", recipe)
    recipe_test = refit_test(recipe_dir)

    target = random["best"].iloc[-1]
    reached = tpe[tpe["best"] >= target]
    quality = keras_curve["best"].iloc[-1]
    return {
        "a": {"sweep refit: test macro F1": sweep_test["test_macro_f1"],
              "recipe refit: test macro F1": recipe_test["test_macro_f1"],
              "difference": sweep_test["test_macro_f1"] - recipe_test["test_macro_f1"],
              "sweep best: val macro F1": sweep_test["val_macro_f1"],
              "recipe: val macro F1": recipe_test["val_macro_f1"],
              "sweep epochs (all trials)": len(tpe), "recipe epochs": len(recipe)},
        "b": {"random: epochs": len(random), "random: final best F1": target,
              "TPE+ASHA: epochs run": len(tpe),
              "TPE+ASHA: best F1 within random's epochs": tpe["best"].iloc[: len(random)].max(),
              "TPE+ASHA: epochs to reach random's best": reached["epochs"].iloc[0] if len(reached) else float("nan")},
        "c": {"keras recipe: final best val F1": quality,
              "keras: seconds to reach it": first_time(keras_curve, quality),
              "hamtune sweep: seconds to reach it": first_time(tpe, quality)},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEV_DATA)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=4, help="most epochs per search trial")
    parser.add_argument("--tpe-trials", type=int, default=6)
    parser.add_argument("--random-trials", type=int, default=3)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / f"search-{datetime.date.today()}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    args.out.mkdir(parents=True, exist_ok=True)

    tables: dict[str, dict[int, dict[str, float]]] = {"a": {}, "b": {}, "c": {}}
    loads, started = [os.getloadavg()[0]], time.time()
    with tempfile.TemporaryDirectory(prefix="hamtune-search-") as scratch:
        args.cache = Path(scratch) / "cache"
        for seed in args.seeds:
            for key, row in run_seed(seed, args, Path(scratch) / "runs", args.out).items():
                tables[key][seed] = row
            loads.append(os.getloadavg()[0])
    frames = {key: pd.DataFrame(rows).T.rename_axis("seed") for key, rows in tables.items()}
    frames["b"]["ratio (<= 0.5 meets the target)"] = (
        frames["b"]["TPE+ASHA: epochs to reach random's best"] / frames["b"]["random: epochs"])
    frames["c"]["ratio hamtune/keras (<= 0.5 meets the target)"] = (
        frames["c"]["hamtune sweep: seconds to reach it"] / frames["c"]["keras: seconds to reach it"])
    header = (f"densenet121 from scratch, {args.size} px, {args.data.name}, seeds {args.seeds}, up to {args.epochs} "
              f"epochs per search trial, {args.tpe_trials} TPE+ASHA / {args.random_trials} random trials, patience "
              f"{args.patience}; {machine()}; load average (1 min) {min(loads):.2f}-{max(loads):.2f}; "
              f"{(time.time() - started) / 60:.0f} min in all")
    text = [header, ""]
    for key, title in (("a", "(a) search vs recipe, refit on train+val, scored on test"),
                       ("b", "(b) TPE+ASHA vs random search, epochs"), ("c", "(c) time to the recipe's quality")):
        frame = frames[key]
        text += [title, frame.round(4).to_string(), "mean: " + frame.mean().round(4).to_json(), ""]
    print("\n".join(text))
    (args.out / "tables.txt").write_text("\n".join(text) + "\n")


if __name__ == "__main__":
    main()
