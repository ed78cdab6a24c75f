"""A small residual network for 8-32 px images (CIFAR-style ResNet: 3x3 stem, no max-pool).

Stages of basic blocks; every stage after the first halves the map (while it is at least 2 px)
and the head global-average-pools, so any input size in that range works.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    accepts = ("image",)

    def __init__(self, spec, widths: list[int] = (32, 64, 128), blocks: list[int] | int = 2, dropout: float = 0.0):
        super().__init__()
        if isinstance(blocks, int):
            blocks = [blocks] * len(widths)
        if len(blocks) != len(widths):
            raise ValueError(f"model.blocks has {len(blocks)} entries for {len(widths)} model.widths")
        c_in, h, _ = spec.shape
        self.stem = nn.Sequential(
            nn.Conv2d(c_in, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
        )
        stages, c = [], widths[0]
        for i, (width, n) in enumerate(zip(widths, blocks)):
            stride = 2 if i > 0 and h >= 2 else 1
            h //= stride
            stages.append(
                nn.Sequential(*[BasicBlock(c if j == 0 else width, width, stride if j == 0 else 1) for j in range(n)])
            )
            c = width
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c, spec.num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))
