"""An interrupted `hamtune evaluate` continues where it stopped.

An evaluation retrains K×F + 1 to K models (an hour in the final-model benchmark). Each finished
run (its predictions, and its model where the final model needs it) is written atomically into
`WORK_DIR` inside the output directory as it finishes, next to the arguments the evaluation
started with. Run again with the same arguments, the evaluation reuses every finished run and
trains only the others; with other arguments it is refused, naming each that differs. The work
directory is removed once the final model is written.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from hamtune.errors import ExperimentError
from hamtune.evaluation.fitting import Fit, FitJob
from hamtune.store.atomic import AtomicWrite

#: Inside the output directory while an evaluation runs: its arguments and its finished runs.
WORK_DIR = ".unfinished"
ARGUMENTS_FILE = "arguments.json"


def check_output(target: Path, arguments: dict[str, Any]) -> bool:
    """Whether `target` holds an unfinished evaluation with these `arguments` (to continue);
    False for a new or empty directory. Anything else is refused, before any training."""
    if not target.exists() or (target.is_dir() and not any(target.iterdir())):
        return False
    work = target / WORK_DIR
    if not target.is_dir() or not (work / ARGUMENTS_FILE).is_file() or any(p != work for p in target.iterdir()):
        raise ExperimentError(f"{target} already exists and is not an empty directory: choose another --out or "
                              "remove it")
    saved = json.loads((work / ARGUMENTS_FILE).read_text())
    differs = [f"{key} {saved.get(key)!r} then, {value!r} now" for key, value in arguments.items()
               if saved.get(key) != value]
    if differs:
        raise ExperimentError(f"{target} holds an unfinished evaluation started with other arguments "
                              f"({'; '.join(differs)}): rerun it with those to continue it, or choose another --out")
    return True


class FinishedRuns:
    """The finished training runs of one evaluation, kept in its output directory."""

    def __init__(self, target: Path, arguments: dict[str, Any]) -> None:
        self.work = target / WORK_DIR
        if not check_output(target, arguments):
            try:
                self.work.mkdir(parents=True)
                with AtomicWrite(self.work / ARGUMENTS_FILE, "w") as handle:
                    json.dump(arguments, handle, indent=2)
            except OSError as error:
                raise ExperimentError(f"cannot write into {target}: {error}") from error

    def _path(self, job: FitJob) -> Path:
        what = [job.name, job.params, job.epochs, job.seed, job.views, job.keep_model,
                hashlib.sha1(job.fit.tobytes() + b"|" + job.predict.tobytes()).hexdigest()]
        return self.work / f"{hashlib.sha1(json.dumps(what, default=str).encode()).hexdigest()[:16]}.npz"

    def get(self, job: FitJob) -> Fit | None:
        """The run's result when an earlier attempt finished it."""
        path = self._path(job)
        if not path.is_file():
            return None
        with np.load(path) as saved:
            return Fit(saved["proba"], saved["tta_proba"] if "tta_proba" in saved else None,
                       saved["model_file"].tobytes() if "model_file" in saved else None, float(saved["seconds"]))

    def put(self, job: FitJob, fit: Fit) -> None:
        """Keep a finished run, whole or not at all."""
        arrays = {"proba": fit.proba, "seconds": np.float64(fit.seconds)}
        if fit.tta_proba is not None:
            arrays["tta_proba"] = fit.tta_proba
        if fit.model_file is not None:
            arrays["model_file"] = np.frombuffer(fit.model_file, dtype=np.uint8)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        try:
            with AtomicWrite(self._path(job)) as handle:
                handle.write(buffer.getvalue())
        except OSError as error:
            raise ExperimentError(f"cannot keep the finished run {job.name} in {self.work}: {error}") from error

    def close(self) -> None:
        """The evaluation is written: its unfinished state goes."""
        shutil.rmtree(self.work, ignore_errors=True)
