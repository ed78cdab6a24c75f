"""ForecastTask: trains any network that maps a lookback window (B, L, C) to the next ``horizon``
steps of the target channels (B, H, targets).

The loss is the mean squared error on the normalised scale (z-scores of the training split), the
scale the published benchmarks report MSE and MAE on. The same errors are also reported on the
data's original scale (``*_orig``), and the test split gets the naive forecast's errors (the last
observed value, repeated) as the floor any forecaster has to beat.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError
from typing_extensions import override

from zoo.tasks.base import Task


def _errors() -> nn.ModuleDict:
    return nn.ModuleDict({"mse": MeanSquaredError(), "mae": MeanAbsoluteError()})


class ForecastTask(Task):
    # Every metric this task logs: what checkpoints, early stopping and schedulers can watch.
    logged_metrics = (
        "val/loss",
        "val/mse",
        "val/mae",
        "val/mse_orig",
        "val/mae_orig",
        "train/loss_step",
        "train/loss",
    )
    train_sum_names = ("squared error", "elements")

    def __init__(self, *args, target_mean: list[float] | None = None, target_std: list[float] | None = None, **kwargs):
        """``target_mean`` and ``target_std``: the training split's scaler of the target channels, for
        the errors on the original scale. ``args`` and ``kwargs``: those of ``Task``."""
        super().__init__(*args, **kwargs)
        self.register_buffer("target_mean", torch.tensor(target_mean or [0.0]), persistent=False)
        self.register_buffer("target_std", torch.tensor(target_std or [1.0]), persistent=False)
        self.errors = nn.ModuleDict(
            {name: _errors() for name in ("val", "val_orig", "test", "test_orig", "test_naive")}
        )

    @classmethod
    @override
    def options_from(cls, spec, net, hparams) -> dict:
        k = spec.target_channels
        return {
            "target_mean": list(spec.channel_mean[-k:]) if spec.channel_mean else None,
            "target_std": list(spec.channel_std[-k:]) if spec.channel_std else None,
        }

    @override
    def _train_loss(self, batch) -> torch.Tensor:
        x, y = batch[0], batch[1]
        loss = F.mse_loss(self.net(x), y)
        with torch.no_grad():
            self.train_sums[0] += loss.detach() * y.numel()
            self.train_sums[1] += y.numel()
        return loss

    @override
    def log_train_sums(self, squared_error, elements) -> None:
        self.log("train/loss", squared_error / elements.clamp_min(1), sync_dist=True)

    def original_scale(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.target_std + self.target_mean

    @override
    def evaluate(self, batch, stage: str) -> dict:
        x, y = batch[0], batch[1]
        pred = self.net(x)
        loss = F.mse_loss(pred, y)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y), sync_dist=True)
        groups = [(stage, pred, y), (f"{stage}_orig", self.original_scale(pred), self.original_scale(y))]
        if stage == "test":
            groups.append(("test_naive", x[:, -1:, -y.shape[2] :].expand_as(y), y))
        for group, p, t in groups:
            for name, metric in self.errors[group].items():
                metric.update(p.reshape(-1), t.reshape(-1))  # the targets are strided views of the series
                suffix = group.removeprefix(stage)
                key = f"{stage}/naive_{name}" if suffix == "_naive" else f"{stage}/{name}{suffix}"
                self.log(key, metric, on_step=False, on_epoch=True)
        # "forecast", not "preds": the classification callbacks read "preds" as class indices.
        return {"loss": loss, "forecast": pred.detach()}

    @override
    def predict_step(self, batch, batch_idx):
        """The forecast of each window in the data's own units (predict.py, zoo.load): the network's
        z-scores mapped back with the training split's scaler."""
        return self.original_scale(self.net(batch[0]))
