"""A trial's training phases, per epoch.

From scratch the whole network trains from the first epoch; in transfer mode the head trains
alone for the warm-up epochs, then the top `unfreeze_depth` blocks join it. The phase decides
what is compiled, what a checkpoint holds and when the optimizer starts afresh.
"""

from __future__ import annotations

#: Training phases, per epoch: from scratch the whole network trains from the first epoch; in
#: transfer mode the head trains alone first, then the top `unfreeze_depth` blocks join it.
PHASE_SCRATCH, PHASE_HEAD, PHASE_FINE_TUNE = 0, 1, 2


def phase_of(epoch: int, warmup_epochs: int, unfreeze_depth: int, from_scratch: bool = False) -> int:
    """Phase of a 1-based epoch: 0 = from scratch (the whole network), 1 = head only (transfer
    warm-up), 2 = fine-tuning the top `unfreeze_depth` blocks."""
    if from_scratch:
        return PHASE_SCRATCH
    return PHASE_FINE_TUNE if unfreeze_depth > 0 and epoch > warmup_epochs else PHASE_HEAD
