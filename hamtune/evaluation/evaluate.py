"""`hamtune evaluate`: from a finished sweep to one final model directory.

The path, each step fitted only on train+val and test scored once at the end:
1. the top K configurations cross-validated on F lesion-grouped folds of train+val; the sweep's
   best stays the final configuration unless another beats it on the same folds by more than
   the paired difference's standard error (`crossval`);
2. test-time augmentation over the views the training augmentation covers (`tta`), temperature
   scaling fitted on the out-of-fold predictions (`calibration`) and, with `--ensemble`, the mean
   of the configurations within one standard error of the best (`ensemble`): each kept only
   where it improved its out-of-fold score, or when forced (`steps`);
3. the chosen configuration, the sweep's best (for comparison) and the ensemble's candidates
   refitted on all of train+val (`fitting`), and a melanoma threshold for the requested
   sensitivity (`thresholds`);
4. every variant scored on test with lesion-bootstrap intervals (`scoring`), and the final one
   written as `.keras` + SavedModel with its contract and model card (`artefact`, `card`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Collection
from pathlib import Path

import numpy as np

from hamtune.results.analysis import load_results
from hamtune.training.device import use_backend
from hamtune.errors import ConfigError, ExperimentError
from hamtune.evaluation.crossval import candidates, collect, fold_jobs, ranking_note
from hamtune.evaluation.fitting import check_cpus, FitJob, run_fits
from hamtune.evaluation.folds import check_fold_count, grouped_folds
from hamtune.evaluation.resume import FinishedRuns, check_output
from hamtune.evaluation.selection import check_top, resolve_experiment, top_trials
from hamtune.evaluation import DEFAULT_FOLDS, DEFAULT_SENSITIVITY, DEFAULT_TOP, DEFAULT_TTA, STEPS, TTA_CHOICES
from hamtune.evaluation.steps import ensemble_members, judge
from hamtune.metrics import macro_f1
from hamtune.evaluation.thresholds import check_sensitivity
from hamtune.keys import OBJECTIVE
from hamtune.evaluation.types import Evaluation, Variant

logger = logging.getLogger(__name__)


def _check(top: int, folds: int, mel_sensitivity: float, epochs: int | None, cpus: float | None,
           address: str | None, tta: str, force: Collection[str]) -> None:
    from hamtune.sweep.cluster import check_address

    if tta not in TTA_CHOICES:
        raise ConfigError(f"--tta must be one of {', '.join(TTA_CHOICES)}, got {tta!r}")
    unknown = sorted(set(force) - set(STEPS))
    if unknown:
        raise ConfigError(f"cannot force {', '.join(unknown)}: the steps are {', '.join(STEPS)}")
    check_sensitivity(mel_sensitivity)
    check_top(top)
    check_fold_count(folds)
    if epochs is not None and epochs < 1:
        raise ConfigError(f"--epochs must be >= 1, got {epochs}")
    check_cpus(cpus)
    check_address(address)


def _macro_f1(y_true: np.ndarray, proba: np.ndarray) -> float:
    return float(macro_f1(y_true, proba.argmax(axis=1)))


def evaluate(location: str, top: int = DEFAULT_TOP, folds: int = DEFAULT_FOLDS, tta: str = DEFAULT_TTA,
             ensemble: bool = False, mel_sensitivity: float = DEFAULT_SENSITIVITY, epochs: int | None = None,
             out: str | None = None, cpus: float | None = None, address: str | None = None,
             force: Collection[str] = ()) -> Evaluation:
    """Cross-validate the top configurations, refit, then keep each of TTA, calibration and the
    ensemble only where it helped out of fold (or is in `force`), choose the melanoma threshold,
    score every variant on test and write the final model directory (see the module)."""
    from hamtune.evaluation.refit import saved_sweep

    _check(top, folds, mel_sensitivity, epochs, cpus, address, tta, force)
    experiment = resolve_experiment(location)
    results = load_results([experiment.uri])
    top_table = top_trials(results.trials, top)
    if out is None and experiment.is_remote:
        raise ExperimentError(f"{experiment.uri} is remote: pass --out DIR for the final model")
    target = Path(out or f"{experiment.uri}/final").expanduser().resolve()
    arguments = {"experiment": experiment.uri, "top": top, "folds": folds, "tta": tta, "ensemble": ensemble,
                 "mel_sensitivity": mel_sensitivity, "epochs": epochs, "force": sorted(force)}
    resuming = check_output(target, arguments)  # refused here, before any training, if it cannot be used
    sweep, data = saved_sweep(experiment, "evaluate needs the data the sweep chose on")
    if address is None:  # training runs in this process: on the sweep's backend, or refused before any run
        use_backend(sweep.training.backend)
    # Keras is imported only now (these modules hold Keras layers), so that it starts on that backend.
    from hamtune.evaluation.artefact import write_final
    from hamtune.evaluation.calibration import apply_temperature, expected_calibration_error, fit_temperature
    from hamtune.evaluation.ensemble import average
    from hamtune.evaluation.scoring import score_variant
    from hamtune.evaluation.tta import VIEW_COUNTS, views_for

    dev = np.sort(np.concatenate([data.positions("train"), data.positions("val")]))
    test = data.positions("test")
    table = data.index.table
    y_dev, y_test = data.labels(dev), data.labels(test)
    held_out = grouped_folds(y_dev, table["lesion_id"].to_numpy()[dev], folds, seed=sweep.search.seed)
    configs = candidates(top_table, sweep, epochs)
    views = [views_for(tta, sweep.training.augmentation_for(config.params["model"])) for config in configs]
    cpus = cpus or len(os.sched_getaffinity(0))

    runs = FinishedRuns(target, arguments)
    if resuming:
        logger.info("continuing the unfinished evaluation in %s: its finished runs are reused", target)
    logger.info("cross-validating the top %d configuration(s) on %d lesion-grouped folds of %d train+val "
                "images: %d training runs", len(configs), folds, len(dev), len(configs) * folds)
    cv = collect(configs, held_out, run_fits(fold_jobs(configs, dev, held_out, views), sweep, data, cpus, address,
                                             runs), y_dev)
    note = ranking_note(cv)
    logger.info("%s", note)
    chosen = cv.chosen

    # Each step judged out of fold, on the chosen configuration, in the order the model applies them.
    decisions = []
    with_tta = False
    if views[chosen] != "none":
        decisions.append(judge("tta", f"TTA over the {VIEW_COUNTS[views[chosen]]} {views[chosen]} views", "macro F1",
                               _macro_f1(y_dev, cv.oof[chosen]), _macro_f1(y_dev, cv.oof_plain[chosen]),
                               "tta" in force))
        with_tta = decisions[-1].kept
    deployed_oof = cv.oof if with_tta else cv.oof_plain
    temperatures = [fit_temperature(oof, y_dev) for oof in deployed_oof]
    calibrated_oof = apply_temperature(deployed_oof[chosen], temperatures[chosen])
    ece = {"out_of_fold_ece_before": expected_calibration_error(y_dev, deployed_oof[chosen]),
           "out_of_fold_ece_after": expected_calibration_error(y_dev, calibrated_oof)}
    decisions.append(judge("calibration", "temperature scaling", "ECE", ece["out_of_fold_ece_after"],
                           ece["out_of_fold_ece_before"], "calibration" in force))
    used = temperatures if decisions[-1].kept else [1.0] * len(configs)
    candidates_ = [chosen]
    ensemble_notes: list[str] = []
    if ensemble:
        candidates_, ensemble_notes = ensemble_members(cv.summary, chosen, folds)
        if len(candidates_) == 1:
            ensemble_notes.append("the ensemble rule leaves one configuration: no ensemble")
    ensemble_oof = average([apply_temperature(deployed_oof[k], used[k]) for k in candidates_])
    if len(candidates_) > 1:
        decisions.append(judge("ensemble", f"ensemble of {len(candidates_)} configurations", "macro F1",
                               _macro_f1(y_dev, ensemble_oof),
                               _macro_f1(y_dev, apply_temperature(deployed_oof[chosen], used[chosen])),
                               "ensemble" in force))
    for line in [*ensemble_notes, *(decision.line() for decision in decisions)]:
        logger.info("%s", line)
    kept = {decision.step for decision in decisions if decision.kept}
    deployed = candidates_ if "ensemble" in kept else [chosen]  # the final model's members

    refitted = sorted({0, chosen, *candidates_})  # the sweep's best is refitted for comparison
    jobs = [FitJob(f"refit of config {k + 1} (trial {configs[k].trial_id})", configs[k].params, configs[k].epochs,
                   configs[k].seed, dev, test, views=views[k], keep_model=True) for k in refitted]
    logger.info("refitting %d configuration(s) on all %d train+val images", len(jobs), len(dev))
    refits = dict(zip(refitted, run_fits(jobs, sweep, data, cpus, address, runs)))

    def test_proba(k: int, temperature: float) -> np.ndarray:
        return apply_temperature(refits[k].tta_proba if with_tta else refits[k].proba, temperature)

    rows = [Variant("sweep's best, refit", refits[0].proba, cv.oof_plain[0]),
            Variant("CV-chosen, refit", refits[chosen].proba, cv.oof_plain[chosen])]
    final = 1
    if views[chosen] != "none":
        rows.append(Variant(f"CV-chosen + TTA ({views[chosen]})", refits[chosen].tta_proba, cv.oof[chosen]))
        final = len(rows) - 1 if with_tta else final
    base = rows[final]
    rows.append(Variant(f"{base.name.removesuffix(', refit')} + calibration",
                        test_proba(chosen, temperatures[chosen]), calibrated_oof))
    calibrated = len(rows) - 1
    final = calibrated if "calibration" in kept else final
    if len(candidates_) > 1:
        label = ", ".join([f"TTA ({views[chosen]})"] * with_tta + ["calibrated"] * ("calibration" in kept)) or "plain"
        rows.append(Variant(f"ensemble of {len(candidates_)} ({label})",
                            average([test_proba(k, used[k]) for k in candidates_]), ensemble_oof))
        final = len(rows) - 1 if "ensemble" in kept else final

    lesions = table["lesion_id"].to_numpy()[test]
    scored = [{"variant": row.name, **score_variant(y_test, row.test, lesions, y_dev, row.oof, mel_sensitivity,
                                                     sweep.search.seed)} for row in rows]
    report = {
        "experiment": experiment.uri, "top": len(configs), "folds": folds, "tta": views[chosen] if with_tta else "none",
        "tta_requested": tta, "ensemble": ensemble, "forced": sorted(force),
        "mel_sensitivity_target": mel_sensitivity, "epochs_from": "each trial's best epoch" if epochs is None
        else "--epochs", "train_val_images": len(dev), "test_images": len(test),
        "cv_ranking": note, "chosen_trial": configs[chosen].trial_id,
        "cross_validation": json.loads(cv.summary.to_json(orient="records")),
        "steps": [decision.record() for decision in decisions], "ensemble_notes": ensemble_notes,
        "members": [{**configs[k]._asdict(), "params": sweep.training.shown_params(configs[k].params),
                     "temperature": used[k], "tta": views[k] if with_tta else "none",
                     "train_seconds": refits[k].seconds} for k in deployed],
        "calibration": {"method": "temperature scaling fitted on out-of-fold predictions (never test)", **ece},
        "variants": scored, "final_variant": scored[final]["variant"],
    }
    reliability = [rows[calibrated - 1], rows[calibrated], *rows[calibrated + 1:]]  # before and after, the ensemble
    result = write_final(target, report, cv, [(refits[k], used[k]) for k in deployed], rows[final], reliability,
                         sweep, data)
    runs.close()
    return result


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
    lines += [f"{report['cv_ranking']}.", "steps, each kept only where it helped out of fold:",
              *(f"  {step['decision']}" for step in report["steps"]),
              *(f"  {note}" for note in report["ensemble_notes"]),
              f"test ({report['test_images']} images, 95% lesion-bootstrap intervals; melanoma threshold chosen out "
              f"of fold for sensitivity {report['mel_sensitivity_target']:.2f}):"]
    for row in report["variants"]:
        scores = row["scores"]
        shown = ", ".join(f"{name.replace('_', ' ')} {scores[name]['value']:.4f} "
                          f"[{scores[name]['low']:.4f}, {scores[name]['high']:.4f}]"
                          for name in ("macro_f1", "balanced_accuracy", "mel_sensitivity", "ece"))
        mark = "  <- final" if row["variant"] == report["final_variant"] else ""
        lines.append(f"  {row['variant']}: {shown}{mark}")
    lines.append(f"final model: {report['final_variant']}; wrote {result.out}/: {', '.join(FINAL_FILES)}")
    return "\n".join(lines)
