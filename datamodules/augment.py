"""Augmentation on whole batches (on the device the batch is on): no per-sample Python."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_hflip(x: torch.Tensor) -> torch.Tensor:
    """Mirror each image of an (N, C, H, W) batch left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def random_crop(x: torch.Tensor, padding: int) -> torch.Tensor:
    """Zero-pad by ``padding`` and cut an (H, W) window at a random offset per image."""
    n, _c, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n, 1), device=x.device)
    dx = torch.randint(0, 2 * padding + 1, (n, 1), device=x.device)
    rows = (dy + torch.arange(h, device=x.device))[:, :, None]  # (N, H, 1)
    cols = (dx + torch.arange(w, device=x.device))[:, None, :]  # (N, 1, W)
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


def random_shift(x: torch.Tensor, most: int) -> torch.Tensor:
    """Shift each clip of an (N, samples) batch of waveforms by a random -most..most samples, the
    samples shifted in zero (a word said a little earlier or later is the same word)."""
    n, length = x.shape
    padded = F.pad(x, (most, most))
    offset = torch.randint(0, 2 * most + 1, (n, 1), device=x.device)
    return padded.gather(1, offset + torch.arange(length, device=x.device))


def augment(x: torch.Tensor, crop_padding: int = 0, hflip: bool = False) -> torch.Tensor:
    """The image datamodules' training augmentation of a whole batch: random crop, then flip."""
    if crop_padding:
        x = random_crop(x, crop_padding)
    if hflip:
        x = random_hflip(x)
    return x
