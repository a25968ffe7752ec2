"""hamtune from Python (a notebook): what the `hamtune` commands do, as functions and an `Experiment`.

    sweep = load_sweep("sweeps/smoke.yaml", trials=2)
    experiment = run_sweep(sweep)
    experiment.best(3)

Importing this imports neither TensorFlow, Keras nor Ray: each function imports what it needs.
"""

from hamtune.api.experiment import Experiment, open_experiment
from hamtune.api.sweeps import load_sweep, run_sweep
from hamtune.api.training import train

__all__ = ["Experiment", "load_sweep", "open_experiment", "run_sweep", "train"]
