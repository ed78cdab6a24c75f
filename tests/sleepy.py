"""A callback that slows training down, so a test can kill or interrupt a run mid-epoch."""
import time

import lightning as L


class SleepPerStep(L.Callback):
    def __init__(self, seconds: float = 0.05):
        self.seconds = seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        time.sleep(self.seconds)
