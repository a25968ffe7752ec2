"""`hamtune evaluate`: from a finished sweep to one final model directory.

The path, each step fitted only on train+val and test scored once at the end:
1. the top K configurations cross-validated on F lesion-grouped folds of train+val; the final
   configuration is the one with the best mean CV macro F1 (`crossval`);
2. the chosen configuration (and the sweep's best, for comparison; every top configuration
   for an ensemble) refitted on all of train+val (`fitting`);
3. test-time augmentation over the dihedral views (`tta`), temperature scaling fitted on the
   out-of-fold predictions (`calibration`), the mean of the calibrated top-K refits
   (`ensemble`), and a melanoma threshold for the requested sensitivity (`thresholds`);
4. every variant scored on test with lesion-bootstrap intervals (`scoring`), and the final one
   written as `.keras` + SavedModel with its contract and model card (`artefact`, `card`).
"""

from __future__ import annotations

import json
import logging
import os


import numpy as np

from hamtune.results.analysis import load_results
from hamtune.training.device import use_backend
from hamtune.errors import ConfigError, ExperimentError
from hamtune.evaluation.calibration import apply_temperature, expected_calibration_error, fit_temperature
from hamtune.evaluation.crossval import CrossValidation, candidates, collect, fold_jobs, ranking_note
from hamtune.evaluation.ensemble import average
from hamtune.evaluation.fitting import check_cpus, Fit, FitJob, run_fits
from hamtune.evaluation.folds import check_fold_count, grouped_folds
from hamtune.evaluation.scoring import score_variant
from hamtune.evaluation.selection import check_top, new_or_empty_dir, resolve_experiment, top_trials
from hamtune.evaluation import DEFAULT_FOLDS, DEFAULT_SENSITIVITY, DEFAULT_TOP
from hamtune.evaluation.thresholds import check_sensitivity
from hamtune.keys import OBJECTIVE
from hamtune.evaluation.types import Evaluation, Variant

logger = logging.getLogger(__name__)


def _check(top: int, folds: int, mel_sensitivity: float, epochs: int | None, cpus: float | None,
           address: str | None) -> None:
    from hamtune.sweep.cluster import check_address

    check_sensitivity(mel_sensitivity)
    check_top(top)
    check_fold_count(folds)
    if epochs is not None and epochs < 1:
        raise ConfigError(f"--epochs must be >= 1, got {epochs}")
    check_cpus(cpus)
    check_address(address)


def variants(cv: CrossValidation, refits: dict[int, Fit], temperatures: list[float], tta: bool,
             ensemble: bool) -> list[Variant]:
    """The steps from the sweep's best refit to the final model, each one adding one thing."""
    best, chosen = refits[0], refits[cv.chosen]
    rows = [Variant("sweep's best, refit", best.proba, cv.oof_plain[0]),
            Variant("CV-chosen, refit", chosen.proba, cv.oof_plain[cv.chosen])]
    deployed = chosen.tta_proba if tta else chosen.proba
    if tta:
        rows.append(Variant("CV-chosen + TTA", deployed, cv.oof[cv.chosen]))
    temperature = temperatures[cv.chosen]
    rows.append(Variant(f"CV-chosen{' + TTA' if tta else ''} + calibration",
                        apply_temperature(deployed, temperature), apply_temperature(cv.oof[cv.chosen], temperature)))
    if ensemble:
        members = sorted(refits)
        test = [apply_temperature(refits[k].tta_proba if tta else refits[k].proba, temperatures[k]) for k in members]
        oof = [apply_temperature(cv.oof[k], temperatures[k]) for k in members]
        label = "TTA, calibrated" if tta else "calibrated"
        rows.append(Variant(f"ensemble of the top {len(members)} ({label})", average(test), average(oof)))
    return rows


def evaluate(location: str, top: int = DEFAULT_TOP, folds: int = DEFAULT_FOLDS, tta: bool = True,
             ensemble: bool = False, mel_sensitivity: float = DEFAULT_SENSITIVITY, epochs: int | None = None,
             out: str | None = None, cpus: float | None = None, address: str | None = None) -> Evaluation:
    """Cross-validate the top configurations, refit, calibrate, ensemble, choose the melanoma
    threshold, score every step on test and write the final model directory (see the module)."""
    from hamtune.evaluation.artefact import write_final
    from hamtune.evaluation.refit import saved_sweep

    _check(top, folds, mel_sensitivity, epochs, cpus, address)
    experiment = resolve_experiment(location)
    results = load_results([experiment.uri])
    top_table = top_trials(results.trials, top)
    if out is None and experiment.is_remote:
        raise ExperimentError(f"{experiment.uri} is remote: pass --out DIR for the final model")
    target = new_or_empty_dir(out or f"{experiment.uri}/final")
    sweep, data = saved_sweep(experiment, "evaluate needs the data the sweep chose on")
    if address is None:  # training runs in this process: on the sweep's backend, or refused before any run
        use_backend(sweep.training.backend)
    dev = np.sort(np.concatenate([data.positions("train"), data.positions("val")]))
    test = data.positions("test")
    table = data.index.table
    y_dev, y_test = data.labels(dev), data.labels(test)
    held_out = grouped_folds(y_dev, table["lesion_id"].to_numpy()[dev], folds, seed=sweep.search.seed)
    configs = candidates(top_table, sweep, epochs)
    cpus = cpus or len(os.sched_getaffinity(0))

    logger.info("cross-validating the top %d configuration(s) on %d lesion-grouped folds of %d train+val "
                "images: %d training runs", len(configs), folds, len(dev), len(configs) * folds)
    cv = collect(configs, held_out, run_fits(fold_jobs(configs, dev, held_out, tta), sweep, data, cpus, address),
                 y_dev)
    note = ranking_note(cv)
    logger.info("%s", note)

    deployed = list(range(len(configs))) if ensemble else [cv.chosen]  # the final model's members
    members = sorted({0, cv.chosen, *deployed})  # the sweep's best is refitted for comparison
    jobs = [FitJob(f"refit of config {k + 1} (trial {configs[k].trial_id})", configs[k].params, configs[k].epochs,
                   configs[k].seed, dev, test, tta=tta, keep_model=True) for k in members]
    logger.info("refitting %d configuration(s) on all %d train+val images", len(jobs), len(dev))
    refits = dict(zip(members, run_fits(jobs, sweep, data, cpus, address)))
    temperatures = [fit_temperature(oof, y_dev) for oof in cv.oof]

    lesions = table["lesion_id"].to_numpy()[test]
    rows = variants(cv, refits, temperatures, tta, ensemble)
    scored = [{"variant": row.name, **score_variant(y_test, row.test, lesions, y_dev, row.oof, mel_sensitivity,
                                                     sweep.search.seed)} for row in rows]
    report = {
        "experiment": experiment.uri, "top": len(configs), "folds": folds, "tta": tta, "ensemble": ensemble,
        "mel_sensitivity_target": mel_sensitivity, "epochs_from": "each trial's best epoch" if epochs is None
        else "--epochs", "train_val_images": len(dev), "test_images": len(test),
        "cv_ranking": note, "chosen_trial": configs[cv.chosen].trial_id,
        "cross_validation": json.loads(cv.summary.to_json(orient="records")),
        "members": [{**configs[k]._asdict(), "temperature": temperatures[k], "train_seconds": refits[k].seconds}
                    for k in deployed],
        "calibration": {
            "method": "temperature scaling fitted on out-of-fold predictions (never test)",
            "out_of_fold_ece_before": expected_calibration_error(y_dev, cv.oof[cv.chosen]),
            "out_of_fold_ece_after": expected_calibration_error(
                y_dev, apply_temperature(cv.oof[cv.chosen], temperatures[cv.chosen])),
        },
        "variants": scored, "final_variant": scored[-1]["variant"],
    }
    calibration_step = rows[-3:-1] if ensemble else rows[-2:]  # the chosen model before and after
    return write_final(target, report, cv, [(refits[k], temperatures[k]) for k in deployed], rows,
                       [*calibration_step, *rows[-1:] * ensemble], sweep, data)


def summary(result: Evaluation) -> str:
    """What `hamtune evaluate` prints: the choice, then each step's test scores with intervals."""
    from hamtune.evaluation.artefact import FINAL_FILES

    report = result.report
    lines = ["cross-validation of the top configurations (macro F1 over folds: mean ± std [min, max]):"]
    for row in report["cross_validation"]:
        lines.append(f"  #{row['cv_rank']} trial {row['trial_id']} (sweep rank {row['sweep_rank']}, "
                     f"{OBJECTIVE.name} {row[OBJECTIVE.name]:.4f}): {row['cv_macro_f1_mean']:.4f} ± "
                     f"{row['cv_macro_f1_std']:.4f} [{row['cv_macro_f1_min']:.4f}, {row['cv_macro_f1_max']:.4f}], "
                     f"balanced accuracy {row['cv_balanced_accuracy_mean']:.4f}")
    lines += [f"{report['cv_ranking']}.",
              f"test ({report['test_images']} images, 95% lesion-bootstrap intervals; melanoma threshold chosen out "
              f"of fold for sensitivity {report['mel_sensitivity_target']:.2f}):"]
    for row in report["variants"]:
        scores = row["scores"]
        shown = ", ".join(f"{name.replace('_', ' ')} {scores[name]['value']:.4f} "
                          f"[{scores[name]['low']:.4f}, {scores[name]['high']:.4f}]"
                          for name in ("macro_f1", "balanced_accuracy", "mel_sensitivity", "ece"))
        lines.append(f"  {row['variant']}: {shown}")
    lines.append(f"final model: {report['final_variant']}; wrote {result.out}/: {', '.join(FINAL_FILES)}")
    return "\n".join(lines)
