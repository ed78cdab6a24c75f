"""The fast data path of shared/DESIGN.md: datasets held as tensors, batches taken by indexing.

``BatchLoader`` replaces ``DataLoader`` for data that fits in memory. One ``randperm`` per epoch and
one index per batch: no per-sample Python, no collate. Lightning calls ``loader.sampler.set_epoch``
at the start of every epoch, so the shuffle order is a function of (seed, epoch) and a resumed run
sees the same batches as an uninterrupted one.
"""
from __future__ import annotations

import math

import lightning as L
import torch

from datamodules.spec import DataSpec


class EpochShuffle:
    """The order of one epoch: a permutation drawn from (seed, epoch), or none."""

    def __init__(self, n: int, shuffle: bool, seed: int):
        self.n, self.shuffle, self.seed, self.epoch = n, shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:  # called by Lightning's loops
        self.epoch = epoch

    def order(self) -> torch.Tensor | None:
        if not self.shuffle:
            return None
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return torch.randperm(self.n, generator=g)


class BatchLoader:
    """Iterates (x, y, ...) batches of tensors that share their first dimension."""

    def __init__(self, tensors: tuple[torch.Tensor, ...], batch_size: int, shuffle: bool = False,
                 drop_last: bool = False, seed: int = 0):
        n = len(tensors[0])
        if any(len(t) != n for t in tensors):
            raise ValueError("all tensors of a BatchLoader need the same length")
        self.tensors, self.batch_size, self.drop_last = tensors, batch_size, drop_last
        self.sampler = EpochShuffle(n, shuffle, seed)
        self.batch_sampler = None  # Lightning's loops look for one; the batches come from __iter__

    def __len__(self) -> int:
        n = self.sampler.n
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        order, bs = self.sampler.order(), self.batch_size
        if order is not None:
            order = order.to(self.tensors[0].device)  # index on the device the data lives on
        for i in range(len(self)):
            if order is None:  # contiguous slices are views: no copy at all
                yield tuple(t[i * bs:(i + 1) * bs] for t in self.tensors)
            else:
                idx = order[i * bs:(i + 1) * bs]
                yield tuple(t[idx] for t in self.tensors)


class TensorDataModule(L.LightningDataModule):
    """A datamodule whose splits are tensors in memory. Subclasses fill ``self.splits`` in ``setup``
    with {"train": (x, y), "val": (x, y), "test": (x, y)} and define ``spec``."""

    def __init__(self, batch_size: int = 128, eval_batch_size: int = 1024, seed: int = 0,
                 data_on_device: bool = True):
        super().__init__()
        self.batch_size, self.eval_batch_size, self.seed = batch_size, eval_batch_size, seed
        self.data_on_device = data_on_device
        # Training batches of steps_per_execution x batch_size rows, in the order of that many
        # separate batches; the task splits them again (zoo/execution.py). Set by train.py.
        self.steps_per_execution = 1
        self.splits: dict[str, tuple[torch.Tensor, ...]] = {}

    @property
    def spec(self) -> DataSpec:
        raise NotImplementedError

    def split_sizes(self) -> dict[str, int]:
        return {k: len(v[0]) for k, v in self.splits.items()}

    def split(self, name: str) -> tuple[torch.Tensor, ...]:
        """A split's tensors; on an accelerator they are moved there once, so every batch is cut
        from device memory and nothing crosses the bus per step (data_on_device=false: per batch)."""
        tensors = self.splits[name]
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        if self.data_on_device and device.type != "cpu" and tensors[0].device != device:
            tensors = self.splits[name] = tuple(t.to(device) for t in tensors)
        return tensors

    def train_dataloader(self):
        return BatchLoader(self.split("train"), self.batch_size * self.steps_per_execution, shuffle=True,
                           seed=self.seed)

    def val_dataloader(self):
        return BatchLoader(self.split("val"), self.eval_batch_size)

    def test_dataloader(self):
        return BatchLoader(self.split("test"), self.eval_batch_size)


def seeded_split(n: int, sizes: list[int], seed: int) -> list[torch.Tensor]:
    """Index sets of the given sizes from one permutation of range(n), fixed by the seed."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    out, start = [], 0
    for s in sizes:
        out.append(perm[start:start + s])
        start += s
    return out


def count(size: float | int, n: int) -> int:
    """A split size given as a count (>= 1) or a fraction of n (< 1)."""
    return int(round(size * n)) if size < 1 else int(size)
