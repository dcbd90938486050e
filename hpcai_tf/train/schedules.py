"""Learning rate as Horovod users expect it: scaled with the number of workers, warmed up, then decayed.

The LR is a pure function of the global step, so a resumed run sets exactly the LR the uninterrupted run had.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def scaled_lr(optimizer: Mapping[str, Any], batch_per_rank: int, ranks: int) -> float:
    """The target LR: ``lr x ranks`` (per-worker LR) or ``lr x global batch / reference`` (e.g. per 256)."""
    reference = optimizer["lr_reference_batch"]
    if reference > 0:
        return optimizer["lr"] * batch_per_rank * ranks / reference
    return optimizer["lr"] * ranks


def lr_at_epoch(
    epoch: float, optimizer: Mapping[str, Any], *, batch_per_rank: int, ranks: int, total_epochs: int
) -> float:
    """The LR at fractional epoch ``epoch``: linear warm-up from the single-worker LR, then the schedule."""
    target = scaled_lr(optimizer, batch_per_rank, ranks)
    warmup = optimizer["warmup_epochs"]
    if warmup > 0 and epoch < warmup:
        start = target / ranks
        return start + (target - start) * epoch / warmup
    schedule = optimizer["schedule"]
    if schedule == "step":
        passed = sum(1 for boundary in optimizer["decay_epochs"] if epoch >= boundary)
        return target * optimizer["decay_factor"] ** passed
    if schedule == "cosine":
        span = max(total_epochs - warmup, 1e-9)
        progress = min(max((epoch - warmup) / span, 0.0), 1.0)
        return target * 0.5 * (1.0 + math.cos(math.pi * progress))
    return target
