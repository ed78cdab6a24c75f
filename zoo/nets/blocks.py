"""Reversible instance normalisation (RevIN, Kim et al., ICLR 2022) for forecasters.

Each input window is normalised by its own per-channel mean and standard deviation (then a
learnable per-channel scale and shift), and the forecast is mapped back with the same statistics of
the target channels. A series whose level drifts between the training and the test period (ETT's
oil temperature does) is then forecast from its shape, not its level.
"""
from __future__ import annotations

import torch
from torch import nn


class RevIN(nn.Module):
    def __init__(self, channels: int, target_channels: int, affine: bool = True, eps: float = 1e-5):
        """``target_channels``: how many of the last input channels the forecast has."""
        super().__init__()
        self.targets, self.eps = target_channels, eps
        self.weight = nn.Parameter(torch.ones(channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(channels)) if affine else None

    def normalize(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """(B, L, C) window -> the normalised window and the statistics ``denormalize`` needs."""
        mean = x.mean(dim=1, keepdim=True).detach()
        std = (x.var(dim=1, keepdim=True, unbiased=False) + self.eps).sqrt().detach()
        x = (x - mean) / std
        if self.weight is not None:
            x = x * self.weight + self.bias
        return x, (mean, std)

    def denormalize(self, y: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """(B, H, target_channels) forecast in normalised units -> the units of the input."""
        mean, std = (s[..., -self.targets:] for s in stats)
        if self.weight is not None:
            y = (y - self.bias[-self.targets:]) / (self.weight[-self.targets:] + self.eps * self.eps)
        return y * std + mean
