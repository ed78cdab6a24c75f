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
from torchmetrics.classification import MulticlassAccuracy


class ClassificationTask(L.LightningModule):
    def __init__(self, net: nn.Module, num_classes: int, optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable | None = None, scheduler_interval: str = "epoch",
                 scheduler_monitor: str = "val/loss", hparams: dict[str, Any] | None = None):
        super().__init__()
        self.net, self.num_classes = net, num_classes
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.scheduler_interval, self.scheduler_monitor = scheduler_interval, scheduler_monitor
        if hparams is not None:
            self.save_hyperparameters(hparams)
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _shared_step(self, batch, stage: str, metric: MulticlassAccuracy):
        x, y = batch[0], batch[1]
        logits = self.net(x)
        loss = F.cross_entropy(logits, y)
        preds = logits.argmax(dim=1)
        metric.update(preds, y)
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=True, batch_size=len(y))
        self.log(f"{stage}/acc", metric, on_step=False, on_epoch=True, prog_bar=True)
        return loss, preds

    def training_step(self, batch, batch_idx):
        loss, _ = self._shared_step(batch, "train", self.train_acc)
        return loss

    def validation_step(self, batch, batch_idx):
        loss, preds = self._shared_step(batch, "val", self.val_acc)
        return {"loss": loss, "preds": preds}

    def test_step(self, batch, batch_idx):
        loss, preds = self._shared_step(batch, "test", self.test_acc)
        return {"loss": loss, "preds": preds}

    def predict_step(self, batch, batch_idx):
        return self.net(batch[0]).softmax(dim=1)

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        kwargs = {}
        if "total_steps" in inspect.signature(self.scheduler_factory).parameters:
            kwargs["total_steps"] = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer, **kwargs)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval,
                                 "monitor": self.scheduler_monitor}}
