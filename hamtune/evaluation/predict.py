"""`hamtune predict`: new JPEGs through a final model directory.

Each image is decoded and resized exactly as hamtune's cache does for training (the whole
image squashed to the model's square input, antialiased bilinear), then the model gives
calibrated probabilities; the decision follows `model.json` (the melanoma threshold).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from hamtune.errors import DataError, ExperimentError
from hamtune.evaluation.files import CONTRACT_FILE, MODEL_FILE
from hamtune.labels import CLASSES, MELANOMA

BATCH = 32


def read_contract(model_dir: str | Path) -> dict:
    """`model.json` of a final model directory; refuses a directory `hamtune evaluate` did not write."""
    directory = Path(model_dir)
    contract_file, model_file = directory / CONTRACT_FILE, directory / MODEL_FILE
    if not directory.is_dir():
        raise ExperimentError(f"{directory} is not a directory: pass the directory `hamtune evaluate` wrote")
    if not contract_file.is_file() or not model_file.is_file():
        raise ExperimentError(f"{directory} is not a hamtune final model directory (it needs {CONTRACT_FILE} and "
                              f"{MODEL_FILE}, as `hamtune evaluate` writes them)")
    try:
        contract = json.loads(contract_file.read_text())
        size, threshold = contract["input"]["height"], contract["thresholds"][MELANOMA]
    except (ValueError, KeyError, TypeError) as error:
        raise ExperimentError(f"{contract_file} is not a hamtune model contract: {error!r}") from error
    if contract.get("classes") != list(CLASSES) or not isinstance(size, int) or not isinstance(threshold, float):
        raise ExperimentError(f"{contract_file} does not describe a hamtune model of the classes {', '.join(CLASSES)}")
    return contract


def load_images(paths: Sequence[str | Path], image_size: int) -> np.ndarray:
    """The images as one uint8 [N, S, S, 3] array, decoded as the cache decodes; names the first unreadable one."""
    from hamtune.data.cache import decode_image

    if not paths:
        raise DataError("no images given: pass one or more JPEG files")
    arrays = []
    for path in paths:
        if not Path(path).is_file():
            raise DataError(f"image {path} not found")
        try:
            arrays.append(decode_image(path, image_size))
        except DataError as error:
            raise DataError(f"cannot read image {path}: {error.__cause__ or error}") from error
    return np.stack(arrays)


def predict(model_dir: str | Path, paths: Sequence[str | Path]) -> pd.DataFrame:
    """One row per image: the decision (melanoma threshold), the argmax class and every probability."""
    from hamtune.evaluation.thresholds import decide
    from hamtune.training.models import load_model
    from hamtune.training.inference import make_predictor

    contract = read_contract(model_dir)
    images = load_images(paths, contract["input"]["height"])
    import hamtune.evaluation.calibration  # noqa: F401  registers the layers of the final model
    import hamtune.evaluation.tta  # noqa: F401

    model = load_model(Path(model_dir) / MODEL_FILE)
    batches = [(images[i:i + BATCH],) for i in range(0, len(images), BATCH)]
    proba = make_predictor(model)(batches)
    table = pd.DataFrame({"image": [str(p) for p in paths],
                          "prediction": [CLASSES[i] for i in decide(proba, contract["thresholds"][MELANOMA])],
                          "argmax": [CLASSES[i] for i in proba.argmax(axis=1)]})
    for i, name in enumerate(CLASSES):
        table[f"p_{name}"] = proba[:, i]
    return table
