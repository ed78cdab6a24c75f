"""Learning-rate schedules that follow the run's budget, which only the Trainer knows.

A run's budget is its step budget (``trainer.max_epochs`` or ``trainer.max_steps``: the Trainer's
``estimated_stepping_batches``), its time budget (``trainer.max_time``), or both; the run stops at
whichever it reaches first. ``Budget`` says how far through it a run is, from 0 to 1, and a schedule
built on it reaches its end exactly when the run does: a 5-minute run is a finished, annealed run,
not the first 5 minutes of a 20-epoch one. This is how models are compared fairly in the same time
(docs/guide/comparing.md, "Comparing models in the same time").

A scheduler factory asks for the budget by taking a ``budget`` argument (or for the step count alone
by taking ``total_steps``); the tasks pass it (``schedule_arguments``). Any task and any optimizer:
the schedule multiplies each parameter group's own learning rate.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import torch


class Budget:
    """How far a run is through its budget: ``progress(step)`` is the larger of ``step / total_steps``
    and, with a time budget, the fraction of it spent (``time_spent``: a function giving that fraction,
    e.g. from Lightning's ``Timer``). Both are capped at 1."""

    def __init__(self, total_steps: int, time_spent: Callable[[], float] | None = None):
        self.total_steps = max(1, int(total_steps))
        self.time_spent = time_spent

    def progress(self, step: int) -> float:
        done = step / self.total_steps
        if self.time_spent is not None:
            done = max(done, self.time_spent())
        return min(1.0, max(0.0, done))


def timer_fraction(timer) -> Callable[[], float]:
    """The fraction of a Lightning ``Timer``'s duration spent training (validation inside the fit
    counts: it is time the budget pays for)."""

    def spent() -> float:
        elapsed = timer.time_elapsed("train")
        remaining = timer.time_remaining("train")
        total = elapsed + (remaining if remaining is not None else math.inf)
        return elapsed / total if total > 0 else 1.0

    return spent


def trainer_budget(trainer, total_steps: int | None = None) -> Budget:
    """The budget of ``trainer``'s fit: its estimated steps (or ``total_steps``, for a task that counts
    its own) and its ``max_time``, read from the Timer callback Lightning adds for it."""
    from lightning.pytorch.callbacks import Timer

    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    steps = total_steps if total_steps is not None else _estimated_steps(trainer)
    return Budget(steps, timer_fraction(timer) if timer is not None else None)


def _estimated_steps(trainer) -> int:
    steps = trainer.estimated_stepping_batches
    # With only a time budget (max_epochs=-1, max_steps=-1) the step count is unbounded: time decides.
    return int(steps) if math.isfinite(steps) else 2**62


def schedule_arguments(factory: Callable, trainer_of: Callable, total_steps: int | None = None) -> dict:
    """What a scheduler factory asks for of the run: ``budget`` (a ``Budget``) and/or ``total_steps``.
    ``trainer_of()`` gives the run's Trainer, asked for only by a factory that needs one (a
    ReduceLROnPlateau does not, and can be set up before the task is attached to a Trainer)."""
    parameters = inspect.signature(factory).parameters
    kwargs: dict = {}
    if "budget" in parameters:
        kwargs["budget"] = trainer_budget(trainer_of(), total_steps)
    if "total_steps" in parameters:
        kwargs["total_steps"] = total_steps if total_steps is not None else _estimated_steps(trainer_of())
    return kwargs


def budget_schedule(optimizer, budget: Budget, shape: Callable[[int, float], float]):
    """A LambdaLR whose factor is ``shape(step, progress)``, ``progress`` from ``budget``. The factor is
    a closure (a plain function), so the scheduler's state dict holds no objects: checkpoints stay
    loadable with weights_only=True."""

    def factor(step: int) -> float:
        return shape(step, budget.progress(step))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def warmup_cosine(optimizer, budget: Budget, warmup: float = 0.05, min_lr_ratio: float = 0.0):
    """Linear warm-up for ``warmup`` of the budget (a fraction, or a count of steps if >= 1), then cosine
    decay to ``min_lr_ratio`` x the base learning rate, reached when the budget ends."""
    # The part of the budget the warm-up takes (a count of steps: that share of the step budget).
    share = warmup if warmup < 1 else min(1.0, warmup / budget.total_steps)

    def shape(step: int, progress: float) -> float:
        if warmup >= 1 and step < warmup:
            return (step + 1) / warmup
        if warmup < 1 and progress < share:
            return min(1.0, max(progress, (step + 1) / budget.total_steps) / share)
        rest = (progress - share) / max(1e-12, 1 - share)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, rest))))

    return budget_schedule(optimizer, budget, shape)


def one_cycle(
    optimizer, budget: Budget, pct_start: float = 0.3, div_factor: float = 25.0, final_div_factor: float = 1e4
):
    """The one-cycle policy (Smith & Topin) over the budget, peaking at the optimizer's own lr so that
    ``optimizer.lr`` stays the one knob: cosine from lr / div_factor up to lr over ``pct_start`` of the
    budget, then cosine down to lr / (div_factor x final_div_factor) when it ends (the learning-rate
    curve of torch's OneCycleLR with its cosine annealing; momentum is left as the optimizer has it)."""
    start, end = 1.0 / div_factor, 1.0 / (div_factor * final_div_factor)

    def cosine(a: float, b: float, t: float) -> float:
        return b + (a - b) * 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, t))))

    def shape(step: int, progress: float) -> float:
        if progress < pct_start:
            return cosine(start, 1.0, progress / pct_start)
        return cosine(1.0, end, (progress - pct_start) / max(1e-12, 1 - pct_start))

    return budget_schedule(optimizer, budget, shape)
