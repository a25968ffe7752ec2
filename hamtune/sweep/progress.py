"""Where a running sweep stands, as one live display instead of Ray Tune's periodic status tables.

On a terminal it is one tqdm bar: trials ended out of the sweep's total (tqdm adds the elapsed
time and an estimate of the time left), with the running and pending counts and the best val
macro F1 so far with its trial. Where output is not a terminal (CI, `ray job logs`, a file), a
bar's carriage returns would garble the log, so the same facts come as one plain line whenever
a trial ends.
"""

from __future__ import annotations

import math
import sys
import time
from typing import IO, Any

from ray.tune import Callback

from hamtune.keys import OBJECTIVE, SEARCH_METRIC

ENDED = ("TERMINATED", "ERROR")


def standing(trials: list[Any], total: int, ending: Any = None) -> tuple[int, int, int, tuple[float, str] | None]:
    """(ended, running, pending, (best score so far, its trial id) or None) of a sweep of `total` trials.

    Pending counts the trials not created yet too: the searcher creates them as slots free up.
    `ending` is a trial that ends now: Tune sets its status only after the callbacks have run.
    """
    ended = sum(trial.status in ENDED or trial is ending for trial in trials)
    running = sum(trial.status == "RUNNING" and trial is not ending for trial in trials)
    scores = [(float(trial.last_result[SEARCH_METRIC]), trial.trial_id) for trial in trials
              if math.isfinite(float((trial.last_result or {}).get(SEARCH_METRIC, math.nan)))]
    return ended, running, total - ended - running, max(scores, default=None)


def describe(ended: int, running: int, pending: int, best: tuple[float, str] | None, elapsed: float) -> str:
    """The plain line: counts, best so far, elapsed time and the time left at the pace so far."""
    total = ended + running + pending
    left = f", about {_duration(elapsed / ended * (total - ended))} left" if 0 < ended < total else ""
    score = f"best {OBJECTIVE.name} {best[0]:.4f} (trial {best[1]})" if best else "no score yet"
    return (f"{ended}/{total} trials ended, {running} running, {pending} pending | {score} | "
            f"{_duration(elapsed)} elapsed{left}")


def _duration(seconds: float) -> str:
    minutes, second = divmod(round(seconds), 60)
    hours, minute = divmod(minutes, 60)
    return f"{hours}h{minute:02d}m" if hours else f"{minute}m{second:02d}s"


class SweepProgress(Callback):
    """A Ray Tune callback on the driver that shows the sweep's standing (see the module docstring)."""

    def __init__(self, total: int, stream: IO[str] | None = None) -> None:
        self.total = total
        self.stream = stream
        self._bar: Any = None
        self._started = time.monotonic()
        self._shown: tuple[Any, ...] | None = None

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles its callbacks with the experiment
        return {**self.__dict__, "_bar": None, "stream": None}

    @property
    def _out(self) -> IO[str]:
        return self.stream or sys.stderr

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if not self._out.isatty():
            return
        state = standing(trials, self.total)
        if state == self._shown and self._bar is not None:
            self._bar.refresh()  # the elapsed time moves on
            return
        from tqdm import tqdm

        if self._bar is None:
            self._bar = tqdm(total=self.total, unit="trial", file=self._out, dynamic_ncols=True, desc="sweep")
        ended, running, pending, best = state
        self._bar.n = ended
        score = f"best {best[0]:.4f} ({best[1]})" if best else "no score yet"
        self._bar.set_postfix_str(f"{running} running, {pending} pending, {score}")
        self._shown = state

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(trials, trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(trials, trial)

    def _line(self, trials: list, trial: Any) -> None:
        if self._out.isatty():
            return
        print(f"sweep: {describe(*standing(trials, self.total, ending=trial), time.monotonic() - self._started)}",
              file=self._out, flush=True)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self._bar is not None:
            self._bar.close()
