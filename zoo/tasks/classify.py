"""ClassificationTask: trains any network that maps a batch to class logits.

The loss is the cross-entropy; the metrics are the accuracy and the macro F1 (torchmetrics)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score
from typing_extensions import override

from zoo.tasks.base import Task


class ClassificationTask(Task):
    # Every metric this task logs: what checkpoints, early stopping and schedulers can watch.
    logged_metrics = ("val/loss", "val/acc", "val/macro_f1", "train/loss_step", "train/loss", "train/acc")
    train_sum_names = ("loss * n", "correct", "n")

    def __init__(self, *args, num_classes: int, **kwargs):
        """``args`` and ``kwargs``: those of ``Task``."""
        super().__init__(*args, **kwargs)
        self.num_classes = num_classes
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        # Macro F1: every class counts the same, whatever its size (val/macro_f1, test/macro_f1).
        self.f1 = nn.ModuleDict({s: MulticlassF1Score(num_classes, average="macro") for s in ("val", "test")})

    @classmethod
    @override
    def options_from(cls, spec, net, hparams) -> dict:
        return {"num_classes": spec.num_classes}

    @override
    def _train_loss(self, batch) -> torch.Tensor:
        x, y = batch[0], batch[1]
        logits = self.net(x)
        loss = F.cross_entropy(logits, y)
        with torch.no_grad():
            self.train_sums[0].add_(loss.detach(), alpha=len(y))  # in place on views: no copies back
            self.train_sums[1].add_((logits.argmax(dim=1) == y).sum())
            self.train_sums[2].add_(len(y))
        return loss

    @override
    def log_train_sums(self, loss_sum, correct, n) -> None:
        self.log("train/loss", loss_sum / n.clamp_min(1), sync_dist=True)
        self.log("train/acc", correct / n.clamp_min(1), sync_dist=True, prog_bar=True)

    @override
    def evaluate(self, batch, stage: str) -> dict:
        x, y = batch[0], batch[1]
        logits = self.net(x)
        loss = F.cross_entropy(logits, y)
        preds = logits.argmax(dim=1)
        accuracy = self.val_acc if stage == "val" else self.test_acc
        accuracy.update(preds, y)
        self.f1[stage].update(preds, y)
        self.log(
            f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y), sync_dist=True
        )  # under DDP: the mean over every process's batches
        self.log(f"{stage}/acc", accuracy, on_step=False, on_epoch=True, prog_bar=True)
        self.log(f"{stage}/macro_f1", self.f1[stage], on_step=False, on_epoch=True)
        # logits: for the per-class precision/recall, PR curves and top losses (zoo/callbacks/classification.py)
        return {"loss": loss, "preds": preds, "logits": logits.detach()}

    @override
    def predict_step(self, batch, batch_idx):
        return self.net(batch[0]).softmax(dim=1)
