"""ClassificationTask: trains any network that maps a batch to class logits.

The task owns the loss (cross-entropy), the metrics (torchmetrics accuracy) and what is logged;
networks stay plain PyTorch. The run's config is stored as plain data in the checkpoint's
hyper-parameters, so a checkpoint loads with ``torch.load(..., weights_only=True)`` and rebuilds
its network without any pickled objects.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from zoo.tasks.execution import StepsPerExecution


class ClassificationTask(StepsPerExecution, L.LightningModule):
    # Every metric this task logs: what checkpoints, early stopping and schedulers can watch.
    logged_metrics = ("val/loss", "val/acc", "val/macro_f1", "train/loss", "train/loss_epoch", "train/acc")

    def __init__(self, net: nn.Module, num_classes: int, optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable | None = None, scheduler_interval: str = "epoch",
                 scheduler_monitor: str = "val/loss", hparams: dict[str, Any] | None = None,
                 steps_per_execution: int = 1):
        super().__init__()
        self.steps_per_execution = steps_per_execution
        self.net, self.num_classes = net, num_classes
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.scheduler_interval, self.scheduler_monitor = scheduler_interval, scheduler_monitor
        # The learning rate to start from instead of the optimizer config's; Lightning's
        # learning-rate finder (tuner.lr_find=true) sets it.
        self.lr: float | None = None
        if hparams is not None:
            self.save_hyperparameters(hparams)
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        # Macro F1: every class counts the same, whatever its size (val/macro_f1, test/macro_f1).
        self.f1 = nn.ModuleDict({s: MulticlassF1Score(num_classes, average="macro") for s in ("val", "test")})
        # Training loss and accuracy are summed on the device and logged once per epoch: a
        # `self.log` call costs about as much as a whole step of a small model (Lightning moves its
        # whole result collection on each call), so the per-step loss is logged only on the
        # steps the loggers write (trainer.log_every_n_steps).
        self.register_buffer("train_sums", torch.zeros(3), persistent=False)  # loss*n, correct, n

    @classmethod
    def from_parts(cls, spec, net, optimizer, scheduler: dict, hparams: dict, **options):
        """The uniform constructor zoo.tasks.build_task calls for every task."""
        return cls(net, spec.num_classes, optimizer, scheduler.get("factory"), scheduler.get("interval", "epoch"),
                   scheduler.get("monitor", "val/loss"), hparams=hparams, **options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _shared_step(self, batch, stage: str, metric: MulticlassAccuracy):
        x, y = batch[0], batch[1]
        logits = self.net(x)
        loss = F.cross_entropy(logits, y)
        preds = logits.argmax(dim=1)
        metric.update(preds, y)
        self.f1[stage].update(preds, y)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y),
                 sync_dist=True)  # under DDP: the mean over every process's batches
        self.log(f"{stage}/acc", metric, on_step=False, on_epoch=True, prog_bar=True)
        self.log(f"{stage}/macro_f1", self.f1[stage], on_step=False, on_epoch=True)
        return loss, preds

    def on_fit_start(self) -> None:
        self.check_steps_per_execution()

    def _train_loss(self, batch) -> torch.Tensor:
        x, y = batch[0], batch[1]
        logits = self.net(x)
        loss = F.cross_entropy(logits, y)
        with torch.no_grad():
            self.train_sums[0].add_(loss.detach(), alpha=len(y))  # in place on views: no copies back
            self.train_sums[1].add_((logits.argmax(dim=1) == y).sum())
            self.train_sums[2].add_(len(y))
        return loss

    def on_train_epoch_end(self) -> None:
        loss_sum, correct, n = self.train_sums
        self.log("train/loss_epoch", loss_sum / n.clamp_min(1), sync_dist=True)
        self.log("train/acc", correct / n.clamp_min(1), sync_dist=True, prog_bar=True)
        self.train_sums.zero_()

    def validation_step(self, batch, batch_idx):
        loss, preds = self._shared_step(batch, "val", self.val_acc)
        return {"loss": loss, "preds": preds}

    def test_step(self, batch, batch_idx):
        loss, preds = self._shared_step(batch, "test", self.test_acc)
        return {"loss": loss, "preds": preds}

    def predict_step(self, batch, batch_idx):
        return self.net(batch[0]).softmax(dim=1)

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters(), **({"lr": self.lr} if self.lr else {}))
        if self.scheduler_factory is None:
            return optimizer
        kwargs = {}
        if "total_steps" in inspect.signature(self.scheduler_factory).parameters:
            kwargs["total_steps"] = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer, **kwargs)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval,
                                 "monitor": self.scheduler_monitor}}
