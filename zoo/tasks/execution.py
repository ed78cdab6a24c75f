"""Several optimizer steps per Lightning step, in the spirit of Keras' ``steps_per_execution``.

Lightning's per-step bookkeeping (hooks on every callback, progress, the optimizer closure) costs
about a third of a millisecond, which is a fifth of a whole training step of a small MLP on a CPU.
With ``steps_per_execution=K`` the datamodule hands the task K batches at once (one tensor of
K x batch_size rows, in the same order as K separate batches) and the task runs the first K-1
optimizer steps itself, returning the last loss to Lightning, which steps as usual with all its
hooks. The optimizer sees exactly the same batches in the same order as with K=1.

What changes: Lightning counts one step per execution (``global_step``, ``log_every_n_steps``,
``max_steps`` and step-wise LR schedules move once per K batches; the gradient-norm and histogram
intervals still count batches), and gradient norms are those of the last batch of an execution. It needs one device, one
optimizer and no gradient accumulation; the task says so in one sentence otherwise.
"""

from __future__ import annotations

import contextlib
import os

import lightning as L
import torch
from lightning.pytorch.profilers import PassThroughProfiler
from typing_extensions import override

from zoo import compat
from zoo.errors import UserError


class StepsPerExecution(L.LightningModule):
    """The training step of a task with automatic optimisation (zoo.tasks.base.Task builds on it)."""

    steps_per_execution: int = 1

    def check_steps_per_execution(self) -> None:
        k = self.steps_per_execution
        if k == 1:
            return
        trainer = self.trainer
        problem = None
        if trainer.world_size > 1:
            problem = f"training on {trainer.world_size} processes"
        elif trainer.accumulate_grad_batches != 1:
            problem = f"trainer.accumulate_grad_batches={trainer.accumulate_grad_batches}"
        elif len(trainer.optimizers) != 1:
            problem = f"{len(trainer.optimizers)} optimizers"
        if problem:
            raise UserError(
                f"steps_per_execution={k} runs several optimizer steps inside one Lightning step, "
                f"which cannot work with {problem}; set steps_per_execution=1."
            )

    def _train_loss(self, batch) -> torch.Tensor:
        """The loss of one batch; the task also adds it to its epoch sums."""
        raise NotImplementedError

    @override
    def training_step(self, batch, batch_idx):
        *earlier, last = self.micro_batches(batch)
        for micro in earlier:  # steps_per_execution > 1: all but the last step are taken here
            self.optimizer_substep(self._train_loss(micro))
        loss = self._train_loss(last)
        # self.log costs about a small model's whole step: only on the steps the loggers write.
        if compat.should_update_logs(self.trainer):
            self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=len(last[1]))
        return loss

    def micro_batches(self, batch) -> list:
        """The K batches of one execution (the last may be shorter, or missing at an epoch's end)."""
        if self.steps_per_execution == 1:
            return [batch]
        size = self.trainer.datamodule.batch_size
        parts = [t.split(size) for t in batch]
        return [tuple(p[i] for p in parts) for i in range(len(parts[0]))]

    def optimizer_substep(self, loss: torch.Tensor) -> None:
        """One optimizer step outside Lightning's loop, as Lightning would do it: loss scaling under
        fp16 mixed precision, gradient clipping by the trainer's setting, then the step."""
        optimizer = self.optimizers().optimizer
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        optimizer.zero_grad(set_to_none=True)
        (scaler.scale(loss) if scaler is not None else loss).backward()
        clip = self.trainer.gradient_clip_val
        if clip:
            if scaler is not None:
                scaler.unscale_(optimizer)
            params = [p for g in optimizer.param_groups for p in g["params"]]
            if self.trainer.gradient_clip_algorithm == "value":
                torch.nn.utils.clip_grad_value_(params, clip)
            else:
                torch.nn.utils.clip_grad_norm_(params, clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()


class CheapAcceleratorCheck(L.Callback):
    """Lightning sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` on import, so that asking whether CUDA is
    available does not initialise CUDA before a fork. torch's Adam and AdamW ask on every step, and
    the NVML way loads the NVML library each time: about 40 us a step on a CPU with torch's CUDA
    build (3% of a small MLP's step), which a hand-written loop does not pay. Once training starts
    (processes launched, devices set up) there is nothing left to protect when no GPU is visible or
    CUDA is already initialised, so the variable is cleared for the run and put back at its end.
    """

    KEY = "PYTORCH_NVML_BASED_CUDA_CHECK"

    def __init__(self):
        self._saved: str | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        if self.KEY in os.environ and (torch.cuda.is_initialized() or not torch.cuda.is_available()):
            self._saved = os.environ.pop(self.KEY)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if self._saved is not None:
            os.environ[self.KEY] = self._saved
            self._saved = None


_NOT_PROFILED = contextlib.nullcontext()


class Unprofiled(PassThroughProfiler):
    """Lightning's default (no) profiler, minus its cost: the Trainer wraps every hook call of every
    callback in ``profiler.profile(...)``, a generator context manager even when nothing is recorded
    (about 100 a training step with this project's callbacks). Used when ``trainer.profiler`` is null."""

    def profile(self, action_name: str):
        return _NOT_PROFILED
