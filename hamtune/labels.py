"""The seven HAM10000 diagnosis classes and their integer labels.

Labels are the alphabetical position of `dx`, fixed here once so that every table, metric
and model output uses the same order (the Kaggle `hmnist_*` files use another order; hamtune
never reads them).
"""

CLASSES: tuple[str, ...] = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
NUM_CLASSES: int = len(CLASSES)
LABEL_OF: dict[str, int] = {name: i for i, name in enumerate(CLASSES)}
MELANOMA: str = "mel"
