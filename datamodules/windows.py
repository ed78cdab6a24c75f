"""Sequence splits as windows: views (``Tensor.unfold``) of one base tensor per split, so a text or a
series is held once however many overlapping windows are cut from it; a batch is copied out by
indexing only when it is taken."""

from __future__ import annotations

import torch


def next_token_windows(ids: torch.Tensor, seq_len: int, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """From 1-d token ids: inputs and next-token targets, each (N, seq_len)."""
    windows = ids.unfold(0, seq_len + 1, stride)
    return windows[:, :-1], windows[:, 1:]


def forecast_windows(
    series: torch.Tensor, lookback: int, horizon: int, n_targets: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """From a (T, C) series: inputs (N, lookback, C) and the last ``n_targets`` channels of the next
    ``horizon`` steps (N, horizon, n_targets), one window per step."""
    w = series.unfold(0, lookback + horizon, 1)  # (N, C, lookback + horizon)
    return w[:, :, :lookback].transpose(1, 2), w[:, series.shape[1] - n_targets :, lookback:].transpose(1, 2)


class WindowedSplits:
    """Mixin for a ``TensorDataModule`` whose splits are windows of ``self.bases[split]``: on an
    accelerator the base tensors move there (data_on_device) and the windows are cut again, instead
    of every window being copied across."""

    bases: dict[str, torch.Tensor]

    def windows(self, split: str, base: torch.Tensor) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def cut(self, bases: dict[str, torch.Tensor]) -> None:
        self.bases = bases
        self.splits = {split: self.windows(split, base) for split, base in bases.items()}

    def split(self, name: str) -> tuple[torch.Tensor, ...]:
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        if self.data_on_device and device.type != "cpu" and self.bases[name].device != device:
            self.cut({k: v.to(device) for k, v in self.bases.items()})
        return self.splits[name]
