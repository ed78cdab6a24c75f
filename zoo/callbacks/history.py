"""What the run itself needs to know: each epoch's validation metrics and the time to the first step."""

from __future__ import annotations

import os
import time

import lightning as L
from typing_extensions import override


class ValidationHistory(L.Callback):
    """The validation metrics of every epoch as plain floats, so the run can report the validation
    metrics of the epoch its best checkpoint comes from."""

    def __init__(self):
        self.epochs: list[dict[str, float]] = []

    @override
    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        row = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        self.epochs.append({"epoch": trainer.current_epoch, **row})

    @override
    def state_dict(self) -> dict:  # kept in checkpoints, so a resumed run knows its earlier epochs
        return {"epochs": self.epochs}

    @override
    def load_state_dict(self, state: dict) -> None:
        self.epochs = list(state.get("epochs", []))

    def best(self, monitor: str, mode: str) -> dict[str, float]:
        rows = [r for r in self.epochs if monitor in r]
        if not rows:
            return self.epochs[-1] if self.epochs else {}
        pick = min if mode == "min" else max
        return pick(rows, key=lambda r: r[monitor])  # the first best, as ModelCheckpoint keeps it


def process_age() -> float:
    """Seconds since this process started (from /proc on Linux; elsewhere since this module loaded)."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            return float(f.read().split()[0]) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return time.perf_counter() - _LOADED


_LOADED = time.perf_counter()


class StartupTimer(L.Callback):
    """The time from the command to the first training step (interpreter, imports, data, model,
    sanity check): ``first_step_s`` in metrics.json. Only the process's first run starts at the
    command; a later run in the same process (a multirun's jobs in Hydra's basic launcher,
    benchmarks/results.py) counts from its own start, not from the runs before it."""

    _process_had_a_run = False

    def __init__(self):
        self.first_step_s: float | None = None
        first = not StartupTimer._process_had_a_run
        StartupTimer._process_had_a_run = True
        self._origin = time.perf_counter() - (process_age() if first else 0.0)

    @override
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.first_step_s is None:
            self.first_step_s = round(time.perf_counter() - self._origin, 2)
