"""LeNet-style convolutional net: conv blocks (conv -> [BN] -> ReLU -> pool), then a small MLP head.

Padding keeps the size through each conv, and a block pools only while the map is at least 2 px,
so the same config runs on 8x8 digits, 28x28 MNIST and 32x32 CIFAR-10.
"""
from __future__ import annotations

import torch
from torch import nn

POOLS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


class CNN(nn.Module):
    accepts = ("image",)

    def __init__(self, spec, channels: list[int] = (32, 64), kernel_size: int = 3,
                 batchnorm: bool = True, pooling: str | None = "max", hidden: int = 128,
                 dropout: float = 0.0):
        super().__init__()
        if pooling not in (*POOLS, None, "none"):
            raise ValueError(f"unknown pooling '{pooling}'; choose one of: max, avg, none")
        c_in, h, w = spec.shape
        blocks: list[nn.Module] = []
        for c_out in channels:
            blocks += [nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=not batchnorm)]
            if batchnorm:
                blocks.append(nn.BatchNorm2d(c_out))
            blocks.append(nn.ReLU(inplace=True))
            if pooling in POOLS and min(h, w) >= 2:
                blocks.append(POOLS[pooling](2))
                h, w = h // 2, w // 2
            c_in = c_out
        self.features = nn.Sequential(*blocks, nn.Flatten())
        self.head = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(c_in * h * w, hidden), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(hidden, spec.num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
