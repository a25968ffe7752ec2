"""From a finished sweep to a model a paper or a clinic pilot can use.

What no tuner offers, one concept per module: lesion-grouped cross-validation of the top
configurations (`folds`, `crossval`), test-time augmentation over the views training covered
(`tta`), temperature scaling and calibration error (`calibration`), ensembles (`ensemble`),
which of those steps the final model keeps (`steps`), a melanoma operating point
(`thresholds`), lesion-bootstrap intervals (`intervals`) and the test scores of each step
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
#: `--tta`: the views of each member follow its training augmentation (`tta.views_for`), or are
#: forced: none, the 4 flips, or the 8 dihedral views.
TTA_CHOICES = ("auto", "none", "flips", "dihedral")
DEFAULT_TTA = "auto"
#: The steps `--force-STEP` keeps whatever their out-of-fold score (`steps`).
STEPS = ("tta", "calibration", "ensemble")
