"""Task: what every Lightning task here shares, so that a task for one learning problem is its loss,
its metrics and what it logs.

A task holds a plain-PyTorch network (``net``), builds its optimizer and learning-rate schedule from
the run's factories, keeps the training loss (and the like) as sums on the device that are logged
once per epoch, runs several optimizer steps per Lightning step when asked (``StepsPerExecution``)
and sends validation and test batches to one ``evaluate``. The run's config is stored as plain data
in the checkpoint's hyper-parameters, so a checkpoint loads with ``torch.load(..., weights_only=True)``
and rebuilds its network without any pickled objects.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from typing_extensions import override

from zoo.tasks.execution import StepsPerExecution
from zoo.tasks.schedules import schedule_arguments


class Task(StepsPerExecution):
    """A subclass names its epoch sums (``train_sum_names``), writes ``_train_loss`` (one batch's
    loss, added to the sums), ``log_train_sums`` and ``evaluate``; it takes what it needs of the data
    spec in ``options_from``."""

    train_sum_names: tuple[str, ...] = ()
    default_monitor = "val/loss"  # what a plateau schedule watches unless the scheduler config says

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable | None = None,
        scheduler_interval: str = "epoch",
        scheduler_monitor: str = "val/loss",
        hparams: dict[str, Any] | None = None,
        steps_per_execution: int | str = 1,
        automatic_optimization: bool = True,
    ):
        super().__init__()
        self.automatic_optimization = automatic_optimization
        self.steps_per_execution = steps_per_execution
        self.net = net
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.scheduler_interval, self.scheduler_monitor = scheduler_interval, scheduler_monitor
        if automatic_optimization:
            # The learning rate to start from instead of the optimizer config's; Lightning's
            # learning-rate finder (tuner.lr_find=true) sets it. A task that steps several
            # optimizers itself has no one learning rate to find.
            self.lr: float | None = None
        if hparams is not None:
            self.save_hyperparameters(hparams)
        # Training losses (and the like) are summed on the device and logged once per epoch: a
        # `self.log` call costs about as much as a whole step of a small model (Lightning moves its
        # whole result collection on each call), so the per-step loss is logged only on the
        # steps the loggers write (trainer.log_every_n_steps).
        self.register_buffer("train_sums", torch.zeros(len(self.train_sum_names)), persistent=False)

    @classmethod
    def from_parts(cls, spec, net, optimizer, scheduler: dict, hparams: dict, **options):
        """The uniform constructor zoo.tasks.build_task calls for every task."""
        return cls(
            net,
            optimizer,
            scheduler.get("factory"),
            scheduler.get("interval", "epoch"),
            scheduler.get("monitor", cls.default_monitor),
            hparams=hparams,
            **cls.options_from(spec, net, hparams),
            **options,
        )

    @classmethod
    def options_from(cls, spec, net: nn.Module, hparams: dict) -> dict:
        """The task's own constructor arguments, from the data spec, the network and the run's config."""
        return {}

    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @override
    def on_fit_start(self) -> None:
        self.check_steps_per_execution()

    @override
    def on_fit_end(self) -> None:
        self.end_executions()

    @override
    def on_train_epoch_end(self) -> None:
        self.log_train_sums(*self.train_sums)
        self.train_sums.zero_()

    def log_train_sums(self, *sums: torch.Tensor) -> None:
        """Log the epoch's training metrics from the sums named by ``train_sum_names``."""
        raise NotImplementedError

    def evaluate(self, batch, stage: str) -> dict | None:
        """Update and log the metrics of ``stage`` ("val" or "test") on one batch."""
        raise NotImplementedError

    @override
    def validation_step(self, batch, batch_idx):
        return self.evaluate(batch, "val")

    @override
    def test_step(self, batch, batch_idx):
        return self.evaluate(batch, "test")

    @override
    def predict_step(self, batch, batch_idx):
        return self.net(batch[0])

    @override
    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters(), **({"lr": self.lr} if self.lr else {}))
        if self.scheduler_factory is None:
            return optimizer
        # A schedule over the run's budget (zoo/tasks/schedules.py): its steps and its max_time.
        scheduler = self.scheduler_factory(
            optimizer, **schedule_arguments(self.scheduler_factory, lambda: self.trainer)
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "interval": self.scheduler_interval,
                "monitor": self.scheduler_monitor,
            },
        }
