"""RegressionTask: trains any network that maps a batch to one value per row (B, 1) or (B,).

The data gives the target standardised with the training split's mean and standard deviation
(``spec.target_mean``, ``spec.target_std``): the loss is the mean squared error on that scale
(``val/loss``), and the metrics are on the target's own scale, as a user reads them and as
scikit-learn reports them: MSE, MAE and R2 (torchmetrics; R2 = 1 - residual / total sum of squares
of the split, the same on either scale).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError, R2Score
from typing_extensions import override

from zoo.tasks.base import Task


def _metrics() -> nn.ModuleDict:
    return nn.ModuleDict({"mse": MeanSquaredError(), "mae": MeanAbsoluteError(), "r2": R2Score()})


class RegressionTask(Task):
    # Every metric this task logs: what checkpoints, early stopping and schedulers can watch.
    logged_metrics = ("val/loss", "val/mse", "val/mae", "val/r2", "train/loss_step", "train/loss")
    train_sum_names = ("squared error", "rows")

    def __init__(self, *args, target_mean: float = 0.0, target_std: float = 1.0, **kwargs):
        """``target_mean`` and ``target_std``: the training split's scaler of the target, to report the
        metrics on its own scale. ``args`` and ``kwargs``: those of ``Task``."""
        super().__init__(*args, **kwargs)
        self.target_mean, self.target_std = float(target_mean), float(target_std)
        self.metrics = nn.ModuleDict({stage: _metrics() for stage in ("val", "test")})

    @classmethod
    @override
    def options_from(cls, spec, net, hparams) -> dict:
        return {"target_mean": spec.target_mean, "target_std": spec.target_std}

    def predict_scaled(self, x: torch.Tensor) -> torch.Tensor:
        """The network's value for each row (B,), on the standardised scale."""
        out = self.net(x)
        return out.reshape(len(out), -1)[:, 0]

    def original_scale(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.target_std + self.target_mean

    @override
    def _train_loss(self, batch) -> torch.Tensor:
        x, y = batch[0], batch[1]
        loss = F.mse_loss(self.predict_scaled(x), y)
        with torch.no_grad():
            self.train_sums[0].add_(loss.detach(), alpha=len(y))
            self.train_sums[1].add_(len(y))
        return loss

    @override
    def log_train_sums(self, squared_error, rows) -> None:
        self.log("train/loss", squared_error / rows.clamp_min(1), sync_dist=True)

    @override
    def evaluate(self, batch, stage: str) -> dict:
        x, y = batch[0], batch[1]
        pred = self.predict_scaled(x)
        loss = F.mse_loss(pred, y)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y), sync_dist=True)
        value, truth = self.original_scale(pred.detach()), self.original_scale(y)
        for name, metric in self.metrics[stage].items():
            metric.update(value, truth)
            self.log(f"{stage}/{name}", metric, on_step=False, on_epoch=True, prog_bar=name == "r2")
        # "prediction" and "truth" on the target's own scale: the predicted-vs-true plot reads them
        # ("preds" would be read as class indices by the classification callbacks).
        return {"loss": loss, "prediction": value, "truth": truth}

    @override
    def predict_step(self, batch, batch_idx):
        return self.original_scale(self.predict_scaled(batch[0]))
