"""The fast data path of ARCHITECTURE.md: datasets held as tensors, batches taken by indexing.

``BatchLoader`` replaces ``DataLoader`` for data that fits in memory. One ``randperm`` per epoch and
one index per batch: no per-sample Python, no collate. Lightning calls ``loader.sampler.set_epoch``
at the start of every epoch, so the shuffle order is a function of (seed, epoch) and a resumed run
sees the same batches as an uninterrupted one.

Training batches can come several at a time (an *execution*, zoo/tasks/execution.py): when the task
sets ``datamodule.execution``, a plan that says how many batches the next Lightning step takes, the
loader yields the rows of that many consecutive batches as one tensor, in the same order; its length
still counts batches.
"""

from __future__ import annotations

import math
from collections.abc import Callable

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
    """Iterates (x, y, ...) batches of tensors that share their first dimension.

    It is stateful in Lightning's sense (``state_dict``/``load_state_dict``): a checkpoint taken in
    the middle of an epoch records how many batches were trained on, and a resumed run skips them.
    ``trained`` tells how many batches of the running epoch the training loop has finished (the
    loader cannot: Lightning reads ahead).

    Under DDP (``world_size`` > 1; Lightning adds no DistributedSampler to a loader of its own)
    each process takes its part of every batch: a shuffled epoch is cut into global batches of
    ``batch_size x world_size`` rows of the one permutation all processes draw from (seed, epoch),
    and process ``rank`` takes its slice of each, so the processes see disjoint rows, the same
    number of batches, and together the batches one process would see with the global batch size.
    An unshuffled split (validation, test) is cut into ``world_size`` contiguous parts.
    """

    def __init__(
        self,
        tensors: tuple[torch.Tensor, ...],
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        trained: Callable[[], int] | None = None,
        rank: int = 0,
        world_size: int = 1,
        execution=None,
    ):
        n = len(tensors[0])
        if any(len(t) != n for t in tensors):
            raise ValueError("all tensors of a BatchLoader need the same length")
        self.tensors, self.batch_size, self.drop_last = tensors, batch_size, drop_last
        self.sampler = EpochShuffle(n, shuffle, seed)
        self.batch_sampler = None  # Lightning's loops look for one; the batches come from __iter__
        self.trained = trained
        self._iter_epoch, self._resume_at = -1, None
        self.rank, self.world_size = rank, world_size
        self.execution = execution  # an ExecutionPlan (training, one process) or None: one batch at a time

    def _part(self) -> tuple[int, int]:
        """This process's rows of an unshuffled split: [lo, hi)."""
        n, w = self.sampler.n, self.world_size
        return n * self.rank // w, n * (self.rank + 1) // w

    def __len__(self) -> int:
        n, w = self.sampler.n, self.world_size
        if (
            w > 1 and self.sampler.shuffle
        ):  # global batches; a last one too small to give every process a row is left out
            g = self.batch_size * w
            return n // g + (0 if self.drop_last or n % g < w else 1)
        if w > 1:
            lo, hi = self._part()
            n = hi - lo
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        order, bs = self.sampler.order(), self.batch_size
        if order is not None:
            order = order.to(self.tensors[0].device)  # index on the device the data lives on
        start = 0
        if self._resume_at is not None and self._resume_at["epoch"] == self.sampler.epoch:
            start = self._resume_at["batches"]  # the batches of this epoch trained before a checkpoint
        self._resume_at, self._iter_epoch = None, self.sampler.epoch
        lo, hi = self._part()
        w, plan, end = self.world_size, self.execution, len(self)
        offset = plan.batches_done() - start if plan is not None else 0  # batches of the run before this epoch
        i = start
        while i < end:
            m = plan.size(offset + i, i, end) if plan is not None else 1  # batches in this step
            if order is None:  # contiguous slices are views: no copy at all
                yield tuple(t[lo + i * bs : min(lo + (i + m) * bs, hi)] for t in self.tensors)
            else:
                idx = order[i * bs * w : (i + m) * bs * w]
                if w > 1:
                    idx = idx.tensor_split(w)[self.rank]
                yield tuple(t[idx] for t in self.tensors)
            i += m

    def state_dict(self) -> dict:
        """The epoch and how many of its batches are trained on."""
        if self._iter_epoch != self.sampler.epoch or self.trained is None:
            return {"epoch": self.sampler.epoch, "batches": 0}  # the epoch is set but not begun
        return {"epoch": self._iter_epoch, "batches": int(self.trained())}

    def load_state_dict(self, state: dict) -> None:
        # Loaded before Lightning sets the epoch: compared when the next epoch's iteration starts.
        self._resume_at = {"epoch": int(state["epoch"]), "batches": int(state.get("batches", 0))}


class TensorDataModule(L.LightningDataModule):
    """A datamodule whose splits are tensors in memory. Subclasses fill ``self.splits`` in ``setup``
    with {"train": (x, y), "val": (x, y), "test": (x, y)} and define ``spec``."""

    def __init__(self, batch_size: int = 128, eval_batch_size: int = 1024, seed: int = 0, data_on_device: bool = True):
        super().__init__()
        self.batch_size, self.eval_batch_size, self.seed = batch_size, eval_batch_size, seed
        self.data_on_device = data_on_device
        # Several training batches per Lightning step (zoo/tasks/execution.py): set by the task.
        self.execution = None
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

    def _ranks(self) -> dict:
        """This process's place under DDP, for the loaders to take their part of each batch."""
        trainer = self.trainer
        return {"rank": trainer.global_rank, "world_size": trainer.world_size} if trainer is not None else {}

    def _trained_in_epoch(self) -> int:
        return self.trainer.fit_loop.epoch_loop.batch_progress.current.processed

    def train_dataloader(self):
        return BatchLoader(
            self.split("train"),
            self.batch_size,
            shuffle=True,
            seed=self.seed,
            trained=self._trained_in_epoch if self.trainer is not None else None,
            execution=self.execution,
            **self._ranks(),
        )

    def val_dataloader(self):
        return BatchLoader(self.split("val"), self.eval_batch_size, **self._ranks())

    def test_dataloader(self):
        return BatchLoader(self.split("test"), self.eval_batch_size, **self._ranks())


class ExecutionBatches:
    """A DataLoader's batch sampler for executions: the indices of the next ``execution.size(...)``
    consecutive batches of ``sampler``'s order at a time; its length counts batches."""

    def __init__(self, sampler, batch_size: int, execution):
        self.sampler, self.batch_size, self.execution = sampler, batch_size, execution

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)

    def __iter__(self):
        indices, bs, end = list(self.sampler), self.batch_size, len(self)
        offset, i = self.execution.batches_done(), 0
        while i < end:
            m = self.execution.size(offset + i, i, end)
            yield indices[i * bs : (i + m) * bs]
            i += m


def stream_loader(
    dataset, batch_size: int, shuffle: bool, seed: int, num_workers: int, collate_fn: Callable, execution=None
) -> torch.utils.data.DataLoader:
    """The loader of data streamed from disk through DataLoader workers (image folders, audio clip sets
    larger than memory: datamodules/folders.py, datamodules/audio.py): a training order fixed by
    ``seed``, cut into executions when a plan is given (``execution``: the same order as shuffle=True),
    workers kept between epochs, and pinned memory when there is a GPU to copy to."""
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    batching = {"batch_size": batch_size, "shuffle": shuffle, "generator": generator}
    if execution is not None:  # the same order as shuffle=True, cut into executions
        sampler = torch.utils.data.RandomSampler(dataset, generator=generator)
        batching = {"batch_sampler": ExecutionBatches(sampler, batch_size, execution)}
    return torch.utils.data.DataLoader(
        dataset,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
        collate_fn=collate_fn,
        **batching,
    )


def seeded_split(n: int, sizes: list[int], seed: int) -> list[torch.Tensor]:
    """Index sets of the given sizes from one permutation of range(n), fixed by the seed."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    out, start = [], 0
    for s in sizes:
        out.append(perm[start : start + s])
        start += s
    return out


def folder_split(root: str, n: int, val_size: float | int, test_size: float | int, seed: int, what: str):
    """The seeded train, validation and test index sets of a class folder's ``n`` items (``what``:
    "images", "clips"), refusing in one sentence a folder too small for the sizes asked."""
    from zoo.errors import UserError

    n_val, n_test = count(val_size, n), count(test_size, n)
    if n - n_val - n_test < 1 or n_val < 1 or n_test < 1:
        raise UserError(
            f"data.root={root} has {n} {what}, too few for data.val_size={val_size} and "
            f"data.test_size={test_size}; add {what} or change the sizes."
        )
    return seeded_split(n, [n - n_val - n_test, n_val, n_test], seed)


def count(size: float | int, n: int) -> int:
    """A split size given as a count (>= 1) or a fraction of n (< 1)."""
    return round(size * n) if size < 1 else int(size)
