"""The suite's hooks (slow tiers with reasons, the time budget line) and its shared fixtures.

Helpers that tests import live in `tests/support/`; this file holds only what pytest itself
must find here: hooks and fixtures.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.shared import shared_data

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: Why a slow test is slow (pyproject.toml's markers); `-m ray` etc. runs the part a change touches.
SLOW_REASONS = ("ray", "backbone", "real_data", "jax")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tiers stay honest: every slow test names why, and a test with a reason is in the slow tier."""
    wrong = []
    for item in items:
        slow = item.get_closest_marker("slow") is not None
        reasons = [name for name in SLOW_REASONS if item.get_closest_marker(name) is not None]
        if slow != bool(reasons):
            wrong.append(f"{item.nodeid}: " + ("marked slow without a reason" if slow else
                                              f"marked {', '.join(reasons)} but not slow"))
    if wrong:
        raise pytest.UsageError("slow markers (see tests/README.md):\n" + "\n".join(wrong))


#: The time budgets of tests/README.md on a 2-core machine, in minutes: the inner loop and the whole suite.
BUDGET_MINUTES = {"not slow": 5, "": 30}
_STARTED = time.monotonic()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """One line comparing this run's time with its tier's budget, when the run is a whole tier."""
    tier = config.option.markexpr.strip()
    whole = config.args == list(config.getini("testpaths")) and not config.option.keyword
    if config.option.collectonly or tier not in BUDGET_MINUTES or not whole:
        return
    minutes, budget = (time.monotonic() - _STARTED) / 60, BUDGET_MINUTES[tier]
    verdict = "within" if minutes <= budget else "OVER"
    terminalreporter.write_line(f"suite time: {minutes:.1f} min for {'the inner loop' if tier else 'the whole suite'}, "
                                f"{verdict} its {budget}-minute budget on 2 cores (tests/README.md)")


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The real 124-image HAM10000 sample in the Kaggle layout."""
    return shared_data("ham10000-sample", "real HAM10000 sample")


@pytest.fixture(scope="session")
def dev_dir() -> Path:
    """The real HAM10000 dev set: 4,992 images of 3,706 lesions, all seven classes, Kaggle layout."""
    return shared_data("ham10000-dev", "real HAM10000 dev set")


@pytest.fixture(scope="session")
def full_metadata() -> Path:
    """The full original metadata CSV (10,015 rows; its images are not available)."""
    return shared_data("HAM10000_metadata_full.csv", "full HAM10000 metadata")


@pytest.fixture(scope="session")
def hamtune_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One image/synthetic-data cache for the whole session, so synthetic data is generated once."""
    return tmp_path_factory.mktemp("hamtune-cache")



