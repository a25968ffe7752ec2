"""The sweep's progress display: the standing it shows, as a bar on a terminal and as plain lines elsewhere.

The whole display runs in every real sweep of the suite (tests/sweep/test_sweep.py checks its lines in
the smoke sweep's output); these tests check its arithmetic by hand and its two modes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

from hamtune.sweep.progress import SweepProgress, describe, standing


@dataclass
class Trial:
    """What the display reads of a Ray Tune trial."""

    trial_id: str
    status: str
    last_result: dict[str, Any] = field(default_factory=dict)


TRIALS = [Trial("a", "TERMINATED", {"best_val_macro_f1": 0.31}), Trial("b", "ERROR"),
          Trial("c", "RUNNING", {"best_val_macro_f1": 0.42}), Trial("d", "PENDING")]


def test_standing_counts_trials_not_created_yet_as_pending_and_takes_the_best_score_of_any_trial() -> None:
    assert standing(TRIALS, total=10) == (2, 1, 7, (0.42, "c"))
    assert standing([Trial("x", "RUNNING", {"best_val_macro_f1": float("nan")})], total=2) == (0, 1, 1, None)


def test_the_time_left_is_the_pace_so_far_times_the_trials_left() -> None:
    # 2 of 10 trials ended in 5 minutes: 150 s each, 8 left -> 1200 s.
    assert describe(2, 1, 7, (0.42, "c"), elapsed=300) == (
        "2/10 trials ended, 1 running, 7 pending | best val_macro_f1 0.4200 (trial c) | 5m00s elapsed, about 20m00s left")
    assert describe(0, 2, 2, None, elapsed=3725) == "0/4 trials ended, 2 running, 2 pending | no score yet | 1h02m elapsed"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_one_bar_is_redrawn_in_place() -> None:
    out = Terminal()
    progress = SweepProgress(10, out)
    progress.on_step_end(1, TRIALS)
    progress.on_trial_complete(1, TRIALS, TRIALS[2])  # no extra line on a terminal
    progress.on_experiment_end(TRIALS)
    text = out.getvalue()
    assert "\r" in text and "\n" not in text.rstrip("\n")
    assert "2/10" in text and "1 running, 7 pending, best 0.4200 (c)" in text


def test_elsewhere_each_ended_trial_prints_one_plain_line() -> None:
    out = io.StringIO()
    progress = SweepProgress(10, out)
    progress.on_step_end(1, TRIALS)  # nothing between trial ends
    progress.on_trial_complete(1, TRIALS, TRIALS[2])  # c ends now; Tune sets its status afterwards
    [line] = out.getvalue().splitlines()
    assert line.startswith("sweep: 3/10 trials ended, 0 running, 7 pending | best val_macro_f1 0.4200 (trial c) | ")
    assert "\r" not in out.getvalue()
