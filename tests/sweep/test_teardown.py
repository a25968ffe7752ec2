"""A trial worker's exit while Tune tears it down prints nothing; other finalizer errors still do."""

from __future__ import annotations

import subprocess
import sys

import pytest

FINALIZER_RAISES = """
import gc, weakref
from hamtune.sweep.tune import ignore_exit_at_teardown
import sys
sys.unraisablehook = ignore_exit_at_teardown
class Thing: pass
def callback(_):
    raise {error}
thing = Thing()
ref = weakref.ref(thing, callback)  # the callback runs when `thing` is collected, as in Ray's teardown
del thing
gc.collect()
print("still running")
"""


@pytest.mark.parametrize(("error", "printed"), [("SystemExit(1)", False), ("ValueError('a real bug')", True)])
def test_only_an_exit_raised_inside_a_finalizer_is_silenced(error: str, printed: bool) -> None:
    result = subprocess.run([sys.executable, "-c", FINALIZER_RAISES.format(error=error)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.stdout == "still running\n"
    assert ("Exception ignored" in result.stderr) is printed, result.stderr
    assert ("a real bug" in result.stderr) is printed
