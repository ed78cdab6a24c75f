"""Gradients and weights as training goes: per-layer gradient norms (scalars) and histograms.

Layers are named by type and position (``conv1``, ``bn1``, ``fc2``, ``lstm2``: zoo/nets/naming.py);
with several optimizers (a GAN) each network's layers are numbered on their own, under its name
(``generator/fc1``, ``discriminator/conv2``)."""

from __future__ import annotations

import math

import lightning as L
import torch
from typing_extensions import override

from zoo.callbacks.common import (
    WATCH,
    EveryNSteps,
    epoch_end_step,
    layer_layout,
    logging_step,
    named_params_of,
    optimizer_prefix,
    parameter_tags_of,
    tensorboards,
)


class GradientNormLogger(EveryNSteps, L.Callback):
    """Per-layer gradient L2 norms and the total norm, as scalars ``watch/grad_norm/<layer>`` and
    ``watch/grad_norm/total``, every ``every_n_steps`` optimizer steps; with several optimizers (a GAN)
    ``watch/grad_norm/generator/...`` and ``watch/grad_norm/discriminator/...``.

    A layer is a module with parameters (weight and bias together); in PyTorch's RNN, LSTM and GRU
    modules each stacked layer (and direction) is one: ``lstm1``, ``lstm2``, ``lstm1_reverse``, where
    vanishing and exploding gradients show. The norms are computed with one fused kernel and read
    back with one host sync per logging step.
    """

    def __init__(self, every_n_steps: int = 25):
        self.every_n_steps = every_n_steps
        self._layouts: dict[tuple, tuple[list[str], torch.Tensor]] = {}  # layer_layout's cache

    @override
    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if not trainer.loggers or not self._due(trainer, optimizer):
            return
        named = named_params_of(pl_module, optimizer)
        stepped = [(n, p) for n, p in named if p.grad is not None]
        if not stepped:
            return
        layers, index = layer_layout(self._layouts, pl_module, named, [n for n, _ in stepped])
        squares = torch.stack([torch.linalg.vector_norm(p.grad) for _, p in stepped]).float().pow(2)
        per_layer = torch.zeros(len(layers), device=squares.device).index_add_(0, index.to(squares.device), squares)
        values = per_layer.sqrt().tolist() + [math.sqrt(sum(per_layer.tolist()))]
        prefix = f"{WATCH}grad_norm/" + optimizer_prefix(trainer, optimizer)
        metrics = {f"{prefix}{name}": v for name, v in zip(layers, values)}
        metrics[f"{prefix}total"] = values[-1]
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=logging_step(trainer))


class HistogramLogger(EveryNSteps, L.Callback):
    """Weight (and, with ``gradients=true``, gradient) histograms, TensorBoard's Histograms and
    Distributions tabs: ``watch/weights/<layer>.<parameter>`` (``watch/weights/conv1.weight``) and
    ``watch/gradients/...``, at the end of every ``every_n_epochs`` training epochs and once at the
    end of the run (the final weights, also of a run stopped mid-epoch). For long epochs
    ``every_n_steps`` > 0 adds one every that many optimizer steps. Each costs a copy to the host per
    tensor; turn the callback off with ``callbacks.histograms=null``.

    Gradients are those of the last optimizer step before the histogram: at an epoch's end, of its
    last batch, kept when that batch steps (by the time the epoch ends the optimizer loop has let
    the gradients go), so ``gradients=true`` alone gives one per epoch beside the weights'."""

    def __init__(self, every_n_epochs: int = 1, every_n_steps: int = 0, weights: bool = True, gradients: bool = False):
        self.every_n_epochs, self.every_n_steps = every_n_epochs, every_n_steps
        self.weights, self.gradients = weights, gradients
        self._written: set[tuple[int, int]] = set()  # (optimizer, step) already written
        self._epoch_grads: dict[int, dict[str, torch.Tensor]] = {}  # optimizer -> the epoch's last gradients

    def _write(self, trainer, pl_module, optimizer, step: int) -> None:
        writers = tensorboards(trainer)
        key = (id(getattr(optimizer, "optimizer", optimizer)), step)
        if not writers or key in self._written:
            return
        self._written.add(key)
        self._weights_of = logging_step(trainer)  # the weights written: after this many steps
        prefix = optimizer_prefix(trainer, optimizer)
        named = named_params_of(pl_module, optimizer)
        tags = parameter_tags_of(pl_module, named)
        kept = self._epoch_grads.pop(key[0], {})
        for name, p in named:
            grad = p.grad if p.grad is not None else kept.get(name)
            for kind, tensor in (
                ("weights", p.data if self.weights else None),
                ("gradients", grad if self.gradients else None),
            ):
                if tensor is None:
                    continue
                values = tensor.detach().float().cpu()
                for w in writers:
                    w.add_histogram(f"{WATCH}{kind}/{prefix}{tags[name]}", values, step)

    def _write_all(self, trainer, pl_module, step: int) -> None:
        for optimizer in trainer.optimizers:
            self._write(trainer, pl_module, optimizer, step)

    def _epoch_due(self, trainer) -> bool:
        return self.every_n_epochs > 0 and (trainer.current_epoch + 1) % self.every_n_epochs == 0

    @override
    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self._due(trainer, optimizer):
            self._write(trainer, pl_module, optimizer, logging_step(trainer))
        # The epoch's last batch (an execution of several batches always ends on it): its gradients
        # are what the epoch's histogram shows, kept on the host until the epoch ends.
        last_batch = trainer.fit_loop.epoch_loop.batch_idx + 1 >= trainer.num_training_batches
        if self.gradients and last_batch and self._epoch_due(trainer) and tensorboards(trainer):
            self._epoch_grads[id(getattr(optimizer, "optimizer", optimizer))] = {
                n: p.grad.detach().float().cpu() for n, p in named_params_of(pl_module, optimizer) if p.grad is not None
            }

    @override
    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # At the epoch's last step, with the epoch's metrics (a run resumed there writes it once).
        if self._epoch_due(trainer):
            self._write_all(trainer, pl_module, epoch_end_step(trainer))
        self._epoch_grads = {}

    @override
    def on_train_end(self, trainer, pl_module) -> None:
        # The final weights, unless an epoch's end just wrote these very weights.
        if getattr(self, "_weights_of", None) != logging_step(trainer):
            self._write_all(trainer, pl_module, logging_step(trainer))
