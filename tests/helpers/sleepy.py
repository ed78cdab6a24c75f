"""A callback that slows training down, so a test can kill or interrupt a run mid-epoch; it can also
touch a marker file once a given step is done, so the test knows where the run is."""

import time
from pathlib import Path

import lightning as L


class SleepPerStep(L.Callback):
    def __init__(self, seconds: float = 0.05, mark: str | None = None, mark_at_step: int = 7):
        self.seconds, self.mark, self.mark_at_step = seconds, mark, mark_at_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.mark and trainer.global_step >= self.mark_at_step:
            Path(self.mark).touch()
        time.sleep(self.seconds)
