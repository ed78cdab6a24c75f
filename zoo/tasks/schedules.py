"""Learning-rate schedules that need the run's total step count, which only the Trainer knows.

The classification task passes ``total_steps`` to any scheduler factory that asks for it.
"""

from __future__ import annotations

import math
from functools import partial

import torch


def _warmup_cosine_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_cosine(optimizer, total_steps: int, warmup: float = 0.05, min_lr_ratio: float = 0.0):
    """Linear warm-up for ``warmup`` of the steps (a fraction, or a count if >= 1), then cosine decay
    to ``min_lr_ratio`` x the base learning rate."""
    warmup_steps = int(warmup * total_steps) if warmup < 1 else int(warmup)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, partial(_warmup_cosine_factor, warmup=warmup_steps, total=total_steps, min_ratio=min_lr_ratio)
    )


def one_cycle(
    optimizer, total_steps: int, pct_start: float = 0.3, div_factor: float = 25.0, final_div_factor: float = 1e4
):
    """OneCycle peaking at the optimizer's own lr, so ``optimizer.lr`` stays the one knob."""
    max_lr = [g["lr"] for g in optimizer.param_groups]
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=max_lr,
        total_steps=total_steps,
        pct_start=pct_start,
        div_factor=div_factor,
        final_div_factor=final_div_factor,
    )
