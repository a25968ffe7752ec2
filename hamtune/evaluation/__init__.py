"""From a finished sweep to a model a paper or a clinic pilot can use.

What no tuner offers, one concept per module: lesion-grouped cross-validation of the top
configurations (`folds`, `crossval`), dihedral test-time augmentation (`tta`), temperature
scaling and calibration error (`calibration`), ensembles (`ensemble`), a melanoma operating
point (`thresholds`), lesion-bootstrap intervals (`intervals`) and the test scores of each step
(`scoring`). Underneath: which experiment and trials (`selection`) and training runs here or as
Ray tasks (`fitting`). The commands: `refit` (one configuration), `export` (a trial's
checkpoint), `evaluate` (`hamtune evaluate`: the whole path into one final model directory, its
outcome typed in `types` and written by `artefact` with its `card` and `figures`) and `predict`
(new images through that directory).
"""

#: The defaults of `hamtune evaluate`, importable without TensorFlow (the CLI's help shows them).
DEFAULT_TOP = 3
DEFAULT_FOLDS = 3
DEFAULT_SENSITIVITY = 0.90
