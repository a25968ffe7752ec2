"""The names of the files `refit`, `evaluate` and `export` write, one name for each kind of file.

The three commands write overlapping sets (each a model, most a card and test predictions); naming
each kind once keeps their directories alike, and `hamtune predict` reads a final model by them.
"""

from __future__ import annotations

#: The Keras model (uint8 RGB in, class probabilities out).
MODEL_FILE = "model.keras"
#: The same model as a TensorFlow SavedModel directory.
SAVED_MODEL_DIR = "saved_model"
#: What the model takes and gives (input size, class order; for a final model also the decision rule).
CONTRACT_FILE = "model.json"
#: A refit's test scores and provenance.
METRICS_FILE = "test_metrics.json"
#: The final model's scores, every step and interval, and provenance.
EVALUATION_FILE = "evaluation.json"
#: One row per (configuration, fold) of the final model's cross-validation.
CV_FILE = "cv_folds.parquet"
#: One row per test image: ids, true and predicted label, every class probability.
PREDICTIONS_FILE = "test_predictions.parquet"
RELIABILITY_FILE = "reliability.png"
CONFUSION_FILE = "confusion_matrix.png"
CARD_FILE = "MODEL_CARD.md"
