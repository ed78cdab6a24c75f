"""Forecasts against the truth, as pictures."""

from __future__ import annotations

import math

import lightning as L
import torch
from typing_extensions import override

from zoo.callbacks.common import FigureBudget, logging_step, tensorboards


class ForecastPlot(L.Callback):
    """Forecast against truth for ``windows`` validation windows spread evenly over the split, after
    every ``every_n_epochs`` epochs: one panel per window with the lookback, the true continuation
    and the forecast of one target channel (``channel``: an index among the targets; -1 the last),
    on the data's original scale: ``val/forecast`` in TensorBoard's Images tab. Reads
    ``outputs["forecast"]`` of the task's validation step. ``figure_budget``: the share of the run's
    time its per-epoch figures together may take (zoo.callbacks.common.FigureBudget, shared with the
    gradient-flow figure: short epochs get a figure only every few epochs, the last epoch's always);
    null draws every due epoch."""

    def __init__(
        self, every_n_epochs: int = 1, windows: int = 4, channel: int = -1, figure_budget: float | None = 0.05
    ):
        self.every_n_epochs, self.windows, self.channel = every_n_epochs, windows, channel
        self.budget = FigureBudget(figure_budget)
        self.picked: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.wanted: list[int] = []
        self.seen = 0

    def _due(self, trainer) -> bool:
        return (
            not trainer.sanity_checking
            and self.windows > 0
            and self.every_n_epochs > 0
            and (trainer.current_epoch + 1) % self.every_n_epochs == 0
            and bool(tensorboards(trainer))
        )

    @override
    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self.picked, self.seen = [], 0
        loader = trainer.val_dataloaders
        n = getattr(getattr(loader, "sampler", None), "n", None) or self.windows
        self.wanted = sorted({round(i * (n - 1) / max(1, self.windows - 1)) for i in range(min(self.windows, n))})

    @override
    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not self._due(trainer) or not isinstance(outputs, dict) or "forecast" not in outputs:
            return
        x, y, forecast = batch[0], batch[1], outputs["forecast"]
        targets = y.shape[2]
        c = self.channel % targets
        for w in self.wanted:
            if self.seen <= w < self.seen + len(x):
                i = w - self.seen
                self.picked.append(
                    (
                        w,
                        x[i, :, x.shape[2] - targets + c].float().cpu(),
                        y[i, :, c].float().cpu(),
                        forecast[i, :, c].float().cpu(),
                    )
                )
        self.seen += len(x)

    @override
    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not self.picked or not self._due(trainer):
            return
        picked, step, epoch = self.picked, logging_step(trainer), trainer.current_epoch
        self.budget.draw(trainer, lambda: self.write(trainer, picked, step, epoch))

    @override
    def on_fit_end(self, trainer, pl_module) -> None:
        self.budget.finish()

    def write(self, trainer, picked: list, step: int, epoch: int) -> None:
        """The figure of one validation pass's picked windows, written at ``step``."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        spec = getattr(trainer.datamodule, "spec", None)
        name, mean, std = "value", 0.0, 1.0
        if spec is not None and spec.channel_names:
            k = len(spec.channel_names) - spec.target_channels + self.channel % max(1, spec.target_channels)
            name = spec.channel_names[k]
            if spec.channel_std:
                mean, std = spec.channel_mean[k], spec.channel_std[k]
        cols = min(2, len(picked))
        rows = math.ceil(len(picked) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 2.6 * rows), dpi=100, squeeze=False)
        for ax in axes.flat[len(picked) :]:
            ax.axis("off")
        for ax, (index, past, truth, forecast) in zip(axes.flat, picked):
            lookback = len(past)
            ahead = range(lookback, lookback + len(truth))
            ax.plot(range(lookback), past * std + mean, color="0.4", lw=1, label="lookback")
            ax.plot(ahead, truth * std + mean, color="tab:green", lw=1.2, label="truth")
            ax.plot(ahead, forecast * std + mean, color="tab:red", lw=1.2, ls="--", label="forecast")
            ax.axvline(lookback - 0.5, color="0.8", lw=0.8)
            ax.set_title(f"validation window {index}", fontsize=8)
            ax.tick_params(labelsize=7)
        axes.flat[0].legend(fontsize=7, loc="upper left")
        fig.suptitle(f"{name}: forecast vs truth (epoch {epoch})", fontsize=9)
        fig.tight_layout()
        for w in tensorboards(trainer):
            w.add_figure("val/forecast", fig, step, close=False)
        plt.close(fig)
