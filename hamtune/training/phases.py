"""A trial's training phases, per epoch.

From scratch the whole network trains from the first epoch; in transfer mode the head trains
alone for the warm-up epochs, then the top `unfreeze_depth` blocks join it. The phase decides
what is compiled, what a checkpoint holds and when the optimizer starts afresh.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Training phases, per epoch: from scratch the whole network trains from the first epoch; in
#: transfer mode the head trains alone first, then the top `unfreeze_depth` blocks join it.
PHASE_SCRATCH, PHASE_HEAD, PHASE_FINE_TUNE = 0, 1, 2


def phase_of(epoch: int, warmup_epochs: int, unfreeze_depth: int, from_scratch: bool = False) -> int:
    """Phase of a 1-based epoch: 0 = from scratch (the whole network), 1 = head only (transfer
    warm-up), 2 = fine-tuning the top `unfreeze_depth` blocks."""
    if from_scratch:
        return PHASE_SCRATCH
    return PHASE_FINE_TUNE if unfreeze_depth > 0 and epoch > warmup_epochs else PHASE_HEAD


def phase_epochs(phase: int, epochs: int, warmup_epochs: int, unfreeze_depth: int) -> int:
    """How many of a trial's `epochs` fall in `phase` (what its learning-rate schedule spans)."""
    if phase == PHASE_SCRATCH:
        return epochs
    if phase == PHASE_FINE_TUNE:
        return max(epochs - warmup_epochs, 0)
    return min(warmup_epochs, epochs) if unfreeze_depth > 0 else epochs


@dataclass(frozen=True)
class Schedule:
    """What a phase's optimizer steps with (`hamtune.training.optimizer.TrialAdam`): the peak
    learning rate, the warm-up and cosine-decay lengths in steps (0 and 0: a constant rate) and
    the decoupled weight decay."""

    learning_rate: float
    warmup_steps: int = 0
    decay_steps: int = 0
    weight_decay: float = 0.0
