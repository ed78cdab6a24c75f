"""ForecastTask: trains any network that maps a lookback window (B, L, C) to the next ``horizon``
steps of the target channels (B, H, targets).

The loss is the mean squared error on the normalised scale (z-scores of the training split), the
scale the published benchmarks report MSE and MAE on. The same errors are also reported on the
data's original scale (``*_orig``), and the test split gets the naive forecast's errors (the last
observed value, repeated) as the floor any forecaster has to beat.
"""
from __future__ import annotations

from typing import Any, Callable

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError

from zoo.tasks.classify import ClassificationTask
from zoo.tasks.execution import StepsPerExecution


def _errors() -> nn.ModuleDict:
    return nn.ModuleDict({"mse": MeanSquaredError(), "mae": MeanAbsoluteError()})


class ForecastTask(StepsPerExecution, L.LightningModule):
    # Every metric this task logs: what checkpoints, early stopping and schedulers can watch.
    logged_metrics = ("val/loss", "val/mse", "val/mae", "val/mse_orig", "val/mae_orig", "train/loss", "train/loss_epoch")

    def __init__(self, net: nn.Module, optimizer: Callable[..., torch.optim.Optimizer], scheduler: Callable | None = None,
                 scheduler_interval: str = "epoch", scheduler_monitor: str = "val/loss",
                 hparams: dict[str, Any] | None = None, target_mean: list[float] | None = None,
                 target_std: list[float] | None = None, steps_per_execution: int = 1):
        super().__init__()
        self.steps_per_execution = steps_per_execution
        self.net = net
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.scheduler_interval, self.scheduler_monitor = scheduler_interval, scheduler_monitor
        self.lr: float | None = None  # set by Lightning's learning-rate finder (configure_optimizers reads it)
        if hparams is not None:
            self.save_hyperparameters(hparams)
        # The training split's scaler of the target channels: errors on the original scale.
        self.register_buffer("target_mean", torch.tensor(target_mean or [0.0]), persistent=False)
        self.register_buffer("target_std", torch.tensor(target_std or [1.0]), persistent=False)
        self.errors = nn.ModuleDict({name: _errors() for name in ("val", "val_orig", "test", "test_orig", "test_naive")})
        self.register_buffer("train_sums", torch.zeros(2), persistent=False)  # squared error sum, elements

    @classmethod
    def from_parts(cls, spec, net, optimizer, scheduler: dict, hparams: dict, **options):
        k = spec.target_channels
        mean = list(spec.channel_mean[-k:]) if spec.channel_mean else None
        std = list(spec.channel_std[-k:]) if spec.channel_std else None
        return cls(net, optimizer, scheduler.get("factory"), scheduler.get("interval", "epoch"),
                   scheduler.get("monitor", "val/loss"), hparams=hparams, target_mean=mean, target_std=std, **options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def on_fit_start(self) -> None:
        self.check_steps_per_execution()

    def _train_loss(self, batch) -> torch.Tensor:
        x, y = batch[0], batch[1]
        loss = F.mse_loss(self.net(x), y)
        with torch.no_grad():
            self.train_sums[0] += loss.detach() * y.numel()
            self.train_sums[1] += y.numel()
        return loss

    def on_train_epoch_end(self) -> None:
        self.log("train/loss_epoch", self.train_sums[0] / self.train_sums[1].clamp_min(1), sync_dist=True)
        self.train_sums.zero_()

    def original_scale(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.target_std + self.target_mean

    def _eval_step(self, batch, stage: str) -> dict:
        x, y = batch[0], batch[1]
        pred = self.net(x)
        loss = F.mse_loss(pred, y)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y), sync_dist=True)
        groups = [(stage, pred, y), (f"{stage}_orig", self.original_scale(pred), self.original_scale(y))]
        if stage == "test":
            groups.append(("test_naive", x[:, -1:, -y.shape[2]:].expand_as(y), y))
        for group, p, t in groups:
            for name, metric in self.errors[group].items():
                metric.update(p.reshape(-1), t.reshape(-1))  # the targets are strided views of the series
                suffix = group.removeprefix(stage)
                key = f"{stage}/naive_{name}" if suffix == "_naive" else f"{stage}/{name}{suffix}"
                self.log(key, metric, on_step=False, on_epoch=True)
        # "forecast", not "preds": the classification callbacks read "preds" as class indices.
        return {"loss": loss, "forecast": pred.detach()}

    def validation_step(self, batch, batch_idx):
        return self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx):
        return self._eval_step(batch, "test")

    def predict_step(self, batch, batch_idx):
        return self.net(batch[0])

    configure_optimizers = ClassificationTask.configure_optimizers
