"""Gradients and weights as training goes: per-layer gradient norms (scalars) and histograms."""

from __future__ import annotations

import math

import lightning as L
import torch
from typing_extensions import override

from zoo.callbacks.common import EveryNSteps, layer_of, logging_step, named_params_of, optimizer_prefix, tensorboards


class GradientNormLogger(EveryNSteps, L.Callback):
    """Per-layer gradient L2 norms and the total norm, as scalars ``grad_norm/<layer>`` and
    ``grad_norm/total``, every ``every_n_steps`` optimizer steps; with several optimizers (a GAN)
    ``grad_norm/generator/...`` and ``grad_norm/discriminator/...``.

    A layer is a module with parameters (weight and bias together); in PyTorch's RNN, LSTM and GRU
    modules each stacked layer (and direction) is one: ``grad_norm/net.rnn.l0``, ``net.rnn.l1``,
    ``net.rnn.l0_reverse``, where vanishing and exploding gradients show. The norms are computed
    with one fused kernel and read back with one host sync per logging step.
    """

    def __init__(self, every_n_steps: int = 25):
        self.every_n_steps = every_n_steps
        self._layout: dict[int, tuple] = {}

    def _layers(self, named: list[tuple[str, torch.nn.Parameter]]):
        key = hash(tuple(n for n, _ in named))
        if key not in self._layout:
            layers = list(dict.fromkeys(layer_of(n) for n, _ in named))
            index = torch.tensor([layers.index(layer_of(n)) for n, _ in named])
            self._layout[key] = (layers, index)
        return self._layout[key]

    @override
    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if not trainer.loggers or not self._due(trainer, optimizer):
            return
        named = [(n, p) for n, p in named_params_of(pl_module, optimizer) if p.grad is not None]
        if not named:
            return
        layers, index = self._layers(named)
        squares = torch.stack([torch.linalg.vector_norm(p.grad) for _, p in named]).float().pow(2)
        per_layer = torch.zeros(len(layers), device=squares.device).index_add_(0, index.to(squares.device), squares)
        values = per_layer.sqrt().tolist() + [math.sqrt(sum(per_layer.tolist()))]
        prefix = "grad_norm/" + optimizer_prefix(trainer, optimizer)
        metrics = {f"{prefix}{name}": v for name, v in zip(layers, values)}
        metrics[f"{prefix}total"] = values[-1]
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=logging_step(trainer))


class HistogramLogger(EveryNSteps, L.Callback):
    """Weight and gradient histograms (TensorBoard's Histograms and Distributions tabs) every
    ``every_n_steps`` optimizer steps. They cost a copy to the host per tensor: keep the interval long,
    or turn the callback off with ``callbacks.histograms=null``."""

    def __init__(self, every_n_steps: int = 200, weights: bool = True, gradients: bool = True):
        self.every_n_steps, self.weights, self.gradients = every_n_steps, weights, gradients

    @override
    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if not self._due(trainer, optimizer):
            return
        writers = tensorboards(trainer)
        if not writers:
            return
        prefix = optimizer_prefix(trainer, optimizer)
        for name, p in named_params_of(pl_module, optimizer):
            for kind, tensor in (
                ("weights", p.data if self.weights else None),
                ("gradients", p.grad if self.gradients else None),
            ):
                if tensor is None:
                    continue
                values = tensor.detach().float().cpu()
                for w in writers:
                    w.add_histogram(f"{kind}/{prefix}{name}", values, logging_step(trainer))
