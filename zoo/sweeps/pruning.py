"""Pruning of Optuna trials from their intermediate validation metric.

``OptunaPruning`` reports ``monitor`` after every validation epoch to the Optuna trial the run
belongs to and stops the run when the study's pruner gives up on it: the run raises
``optuna.TrialPruned``, its job ends as "pruned", and the sweeper records the trial as PRUNED.
Outside an Optuna search (a single run, a grid sweep) it does nothing, so the hparams_search
configs can simply switch it on (``callbacks.optuna_pruning``).

Under DDP rank zero asks the study and tells the other ranks, so they all stop at the same epoch.
"""

from __future__ import annotations

import lightning as L
from typing_extensions import override


class OptunaPruning(L.Callback):
    def __init__(self, monitor: str = "val/acc"):
        self.monitor = monitor
        self.trial = None

    @override
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.trial = None
        if trainer.is_global_zero:
            from zoo.sweeps.optuna import current_trial

            self.trial = current_trial()

    @override
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        prune, message = False, ""
        if self.trial is not None:
            value = trainer.callback_metrics.get(self.monitor)
            if value is not None:
                value, epoch = float(value), trainer.current_epoch
                self.trial.report(value, step=epoch)
                prune = self.trial.should_prune()
                message = f"pruned after epoch {epoch} with {self.monitor}={value:.4f}"
        if trainer.world_size > 1:
            prune, message = trainer.strategy.broadcast((prune, message))
        if prune:
            import optuna

            raise optuna.TrialPruned(message)
