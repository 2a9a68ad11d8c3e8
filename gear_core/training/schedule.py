"""Learning-rate and soft-label schedules (pure functions of the step, so they are easy to test)."""

from __future__ import annotations

import math


def learning_rate_at(
    step: int, total_steps: int, peak: float, warmup_steps: int, warmup_start: float, minimum: float
) -> float:
    """Linear warm-up from ``warmup_start`` to ``peak``, then cosine decay to ``minimum`` at ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return warmup_start + (peak - warmup_start) * step / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return minimum + 0.5 * (peak - minimum) * (1 + math.cos(math.pi * progress))


def soft_label_weight_at(epoch_progress: float, final_weight: float, ramp_epochs: float) -> float:
    """Soft-label weight ramped linearly from 0 to ``final_weight`` over the first ``ramp_epochs`` epochs."""
    if ramp_epochs <= 0:
        return final_weight
    return final_weight * min(1.0, epoch_progress / ramp_epochs)
