"""The linear forecasting baseline, in the spirit of DLinear (Zeng et al., AAAI 2023, "Are Transformers
Effective for Time Series Forecasting?"): every forecaster in the zoo is measured against it.

Each channel's lookback window is split into a trend (a moving average) and the rest (the seasonal
part); one linear map over time each turns them into the horizon, and the forecast is their sum.
Channels are forecast independently with shared weights (``individual=false``) or with weights of
their own. With ``decomposition=false`` it is a single linear map (NLinear/Linear). ``revin``
adds per-window instance normalisation; ``revin=false decomposition=true`` is DLinear as published.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zoo.nets.blocks import Forecaster


def moving_average(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """(B, C, L) -> (B, C, L): the mean of a window around each step, the ends repeated as padding."""
    front = (kernel_size - 1) // 2
    padded = F.pad(x, (front, kernel_size - 1 - front), mode="replicate")
    return F.avg_pool1d(padded, kernel_size, stride=1)


class TimeLinear(nn.Module):
    """A linear map over time, (B, C, L) -> (B, C, H), shared by the channels or one per channel."""

    def __init__(self, lookback: int, horizon: int, channels: int, individual: bool):
        super().__init__()
        n = channels if individual else 1
        bound = lookback**-0.5  # nn.Linear's initialisation
        self.weight = nn.Parameter(torch.empty(n, horizon, lookback).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n, horizon).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bcl,chl->bch", x, self.weight.expand(x.shape[1], -1, -1)) + self.bias


class Linear(Forecaster):
    def __init__(
        self,
        spec,
        decomposition: bool = True,
        kernel_size: int = 25,
        individual: bool = False,
        revin: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        lookback, channels = spec.shape
        if kernel_size < 1:
            raise ValueError(f"model.kernel_size must be positive, got {kernel_size}")
        self.targets, self.kernel_size = spec.target_channels, kernel_size
        self.add_revin(spec, revin)
        self.dropout = nn.Dropout(dropout)
        self.seasonal = TimeLinear(lookback, spec.horizon, channels, individual)
        self.trend = TimeLinear(lookback, spec.horizon, channels, individual) if decomposition else None

    def body(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(x.transpose(1, 2))  # (B, C, L)
        if self.trend is not None:
            trend = moving_average(x, self.kernel_size)
            y = self.seasonal(x - trend) + self.trend(trend)
        else:
            y = self.seasonal(x)
        return y[:, -self.targets :].transpose(1, 2)  # (B, H, targets)
