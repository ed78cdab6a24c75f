"""Per-layer training signals, read every ``every_n_steps`` batches, and the gradient-flow figure.

What each signal says about backpropagation:

- ``watch/grad_norm/<layer>``: the L2 norm of the layer's gradient (weights and bias together). Layers near
  the input orders of magnitude below the rest: vanishing gradients; the total far above its usual
  value: exploding gradients. (Logged by ``GradientNormLogger``; read here again for the figure and
  the diagnoses.)
- ``watch/update_ratio/<layer>``: ||w_after - w_before|| / ||w_before||, the size of one optimizer step
  relative to the weights (lr x the update, whatever the optimizer). The rule of thumb: about 1e-3;
  far below, the layer hardly learns (learning rate too low); far above, it is thrown around.
- ``watch/weight_norm/<layer>``: the L2 norm of the layer's weights.
- ``watch/activation_mean/<activation>``, ``watch/activation_std/<activation>``: the outputs of each
  activation module (ReLU, sigmoid, tanh, ...) on that batch, named by type and position (``relu1``,
  ``sigmoid3``) as layers are (zoo/nets/naming.py).
- ``watch/dead_units/<activation>``: the fraction of a ReLU's units (features, or channels of a convolution)
  that output zero for every example and position of the batch: they pass no gradient back.
- ``watch/saturated_units/<activation>``: the fraction of a sigmoid's or tanh's outputs within 1% of their
  bounds (sigmoid below 0.01 or above 0.99, tanh beyond +-0.98), where their slope is almost zero.

Activations are read through forward hooks attached at the start of a reading batch and removed at
its end: the other batches run without them. The numbers of one reading are computed on the device
and read back with one host sync; weights are copied once per reading to measure the update.

Every epoch ``watch/gradient_flow`` (TensorBoard's Images tab) shows each layer, input to output, with its
gradient norm and update ratio on a log scale, so a vanishing or exploding profile shows at a glance.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field

import lightning as L
import torch
from torch import nn
from typing_extensions import override

from zoo.callbacks.common import (
    WATCH,
    FigureBudget,
    epoch_end_step,
    layer_layout,
    logging_step,
    named_params_of,
    optimizer_prefix,
    tensorboards,
)
from zoo.nets.naming import kind_of

# Activation modules whose outputs are read, by what their units can suffer.
DYING = (nn.ReLU, nn.ReLU6)  # a unit whose input stays negative outputs 0 and passes no gradient
SATURATING = {nn.Sigmoid: (0.0, 1.0), nn.Tanh: (-1.0, 1.0), nn.Hardtanh: (-1.0, 1.0)}  # bounds
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardtanh)
SATURATION_MARGIN = 0.01  # "within 1% of the bounds": of the range between them


@dataclass
class Reading:
    """The signals of one reading: per layer (input to output) of the network one optimizer steps."""

    step: int
    prefix: str  # "" with one optimizer; "generator/" and "discriminator/" in a GAN
    layers: list[str]
    grad: list[float]
    update_ratio: list[float]
    weight: list[float]
    total_grad: float
    lr: float | None
    clip: float | None  # the trainer's gradient_clip_val (norm clipping), None when off
    # module name -> {"kind": "ReLU", "mean", "std", "dead" (ReLU) or "saturated" (sigmoid, tanh)}
    activations: dict[str, dict] = field(default_factory=dict)


def unit_view(y: torch.Tensor) -> torch.Tensor:
    """(units, everything else): a unit is a feature of (B, F) or a channel of (B, C, ...)."""
    return y.transpose(0, 1).reshape(y.shape[1], -1) if y.dim() >= 2 else y.reshape(1, -1)


def activation_stats(module: nn.Module, y: torch.Tensor) -> torch.Tensor:
    """[mean, std, dead fraction, saturated fraction] of one activation's output (NaN where the kind
    cannot be dead or saturated), on the device."""
    y = y.detach().float()
    nan = torch.tensor(float("nan"), device=y.device)
    dead = saturated = nan
    if isinstance(module, DYING) and y.dim() >= 2:
        dead = 1.0 - (unit_view(y) > 0).any(dim=1).float().mean()
    for kind, (low, high) in SATURATING.items():
        if isinstance(module, kind):
            margin = SATURATION_MARGIN * (high - low)
            saturated = ((y <= low + margin) | (y >= high - margin)).float().mean()
    return torch.stack([y.mean(), y.std() if y.numel() > 1 else nan, dead, saturated])


class LayerSignals(L.Callback):
    """Per-layer gradient norm, update ratio, weight norm and activation statistics every
    ``every_n_steps`` batches, as scalars, and the gradient-flow figure every epoch (within
    ``figure_budget``, the share of the run's time its per-epoch figures together may take:
    zoo.callbacks.common.FigureBudget; null: every epoch).

    Other callbacks (``zoo.callbacks.diagnostics.Diagnostics``) subscribe with ``listeners``: each
    gets ``on_reading(trainer, reading)`` after every reading."""

    def __init__(
        self,
        every_n_steps: int = 25,
        activations: bool = True,
        flow_figure: bool = True,
        figure_budget: float | None = 0.05,
    ):
        self.every_n_steps, self.activations, self.flow_figure = every_n_steps, activations, flow_figure
        self.budget = FigureBudget(figure_budget)
        self.listeners: list = []
        self.epoch_readings: list[Reading] = []
        self._reading = False
        self._last_window = -1
        self._hooks: list = []
        self._stats: dict[str, tuple[nn.Module, torch.Tensor]] = {}
        self._pending: list[tuple] = []  # per optimizer stepped on this batch
        self._layouts: dict[tuple, tuple[list[str], torch.Tensor]] = {}  # layer_layout's cache

    # ---- resume: a run resumed mid-epoch reads where the uninterrupted run would ---------------------

    @override
    def state_dict(self) -> dict:
        # Plain values only: checkpoints load with weights_only=True.
        return {"last_window": self._last_window, "epoch_readings": [asdict(r) for r in self.epoch_readings]}

    @override
    def load_state_dict(self, state_dict: dict) -> None:
        self._last_window = int(state_dict.get("last_window", -1))
        self.epoch_readings = [Reading(**r) for r in state_dict.get("epoch_readings", [])]

    # ---- when to read ---------------------------------------------------------------------------

    def _batch(self, trainer) -> int:
        """The batch about to run (the logging step counts batches, whatever steps_per_execution)."""
        return logging_step(trainer)

    def batch_interval(self) -> tuple[int, int] | None:
        """The batches read, b % n == 0: an execution of several batches per step ends on them
        (zoo/tasks/execution.py), so the hooks and the activation reading see them."""
        return (self.every_n_steps, 0) if self.every_n_steps > 0 else None

    @override
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.every_n_steps <= 0:
            return
        window = self._batch(trainer) // self.every_n_steps
        if window <= self._last_window:
            return
        self._last_window, self._reading, self._pending = window, True, []
        if self.activations:
            self._attach(pl_module)

    def _attach(self, pl_module) -> None:
        def hook(name):
            def read(module, inputs, output):
                if isinstance(output, torch.Tensor) and output.numel():
                    with torch.no_grad():
                        self._stats[name] = (module, activation_stats(module, output))

            return read

        self._stats = {}
        counts: dict[str, int] = {}
        for module in pl_module.modules():
            if isinstance(module, ACTIVATIONS):  # named by type and position, as layers are: relu1, sigmoid3
                kind = kind_of(module)
                counts[kind] = counts.get(kind, 0) + 1
                self._hooks.append(module.register_forward_hook(hook(f"{kind}{counts[kind]}")))

    def _detach(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    # ---- reading --------------------------------------------------------------------------------

    @override
    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if not self._reading:
            return
        named = [(n, p) for n, p in named_params_of(pl_module, optimizer) if p.grad is not None]
        if not named:
            return
        layers, index = layer_layout(self._layouts, pl_module, named, [n for n, _ in named])
        params = [p for _, p in named]
        with torch.no_grad():
            grad_sq = torch.stack([torch.linalg.vector_norm(p.grad).float() for p in params]).pow(2)
            before = [p.detach().clone() for p in params]
        inner = getattr(optimizer, "optimizer", optimizer)
        lr = inner.param_groups[0].get("lr") if inner.param_groups else None
        clip = trainer.gradient_clip_val if trainer.gradient_clip_algorithm in (None, "norm") else None
        self._pending.append((optimizer_prefix(trainer, optimizer), layers, index, params, before, grad_sq, lr, clip))

    @override
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self._reading:
            return
        self._reading = False
        self._detach()
        readings = self._read(trainer)
        self._stats, self._pending = {}, []
        self.epoch_readings += readings
        step = logging_step(trainer)
        for r in readings:
            metrics = {}
            for name, u, w in zip(r.layers, r.update_ratio, r.weight):
                metrics[f"{WATCH}update_ratio/{r.prefix}{name}"] = u
                metrics[f"{WATCH}weight_norm/{r.prefix}{name}"] = w
            for name, a in r.activations.items():
                for key in ("mean", "std", "dead", "saturated"):
                    if key in a:
                        tag = {"dead": "dead_units", "saturated": "saturated_units"}.get(key, f"activation_{key}")
                        metrics[f"{WATCH}{tag}/{name}"] = a[key]
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=step)
            for listener in self.listeners:
                listener.on_reading(trainer, r)

    def _read(self, trainer) -> list[Reading]:
        """The pending optimizers' signals, with one host sync for all of them."""
        parts, shapes = [], []
        with torch.no_grad():
            for _, layers, index, params, before, grad_sq, _, _ in self._pending:
                weight_sq = torch.stack([torch.linalg.vector_norm(b).float() for b in before]).pow(2)
                update_sq = torch.stack(
                    [torch.linalg.vector_norm(p.detach() - b).float() for p, b in zip(params, before)]
                )
                update_sq = update_sq.pow(2)
                per_layer = torch.zeros(3, len(layers), device=grad_sq.device)
                idx = index.to(grad_sq.device)
                for row, values in enumerate((grad_sq, weight_sq, update_sq.to(grad_sq.device))):
                    per_layer[row].index_add_(0, idx, values)
                parts.append(per_layer.sqrt().flatten())
                shapes.append(len(layers))
            acts = list(self._stats.items())
            device = parts[0].device if parts else None
            if acts and device is not None:
                parts.append(torch.stack([s.to(device) for _, (_, s) in acts]).flatten())
        if not parts:
            return []
        values = torch.cat([p.to(parts[0].device) for p in parts]).tolist()  # the one sync
        readings, at = [], 0
        activations = {}
        step = logging_step(trainer)
        for (prefix, layers, _, _, _, _, lr, clip), n in zip(self._pending, shapes):
            grad, weight, update = values[at : at + n], values[at + n : at + 2 * n], values[at + 2 * n : at + 3 * n]
            at += 3 * n
            ratio = [u / w if w > 0 else float("nan") for u, w in zip(update, weight)]
            total = math.sqrt(sum(g * g for g in grad))
            readings.append(Reading(step, prefix, layers, grad, ratio, weight, total, lr, clip or None))
        for name, (module, _) in acts:
            mean, std, dead, saturated = values[at : at + 4]
            at += 4
            a = {"kind": type(module).__name__, "mean": mean, "std": std}
            if getattr(module, "is_output", False):  # a network's output layer (a generator's pixels)
                a["output"] = True
            if not math.isnan(dead):
                a["dead"] = dead
            if not math.isnan(saturated):
                a["saturated"] = saturated
            activations[name] = a
        if readings:  # activations belong to the whole forward pass: give them to the first network's reading
            readings[0].activations = activations
        return readings

    # ---- the gradient-flow figure ------------------------------------------------------------------

    @override
    def on_train_epoch_end(self, trainer, pl_module) -> None:
        readings, self.epoch_readings = self.epoch_readings, []
        if not self.flow_figure or not readings or not tensorboards(trainer) or not trainer.is_global_zero:
            return
        step, epoch = epoch_end_step(trainer), trainer.current_epoch  # the epoch's last step, as its metrics
        self.budget.draw(trainer, lambda: self.write_flow(trainer, readings, step, epoch))

    @override
    def on_fit_end(self, trainer, pl_module) -> None:
        self.budget.finish()

    def write_flow(self, trainer, readings: list[Reading], step: int, epoch: int) -> None:
        """One gradient-flow figure per network (a GAN has two) from an epoch's readings."""
        for prefix in dict.fromkeys(r.prefix for r in readings):
            mine = [r for r in readings if r.prefix == prefix]
            layers, grad, ratio = epoch_profile(mine)
            fig = gradient_flow_figure(layers, grad, ratio, f"{prefix}epoch {epoch}")  # selects the Agg backend
            import matplotlib.pyplot as plt

            for w in tensorboards(trainer):
                w.add_figure(f"{WATCH}gradient_flow{'/' + prefix.rstrip('/') if prefix else ''}", fig, step)
            plt.close(fig)

    @override
    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._detach()


def epoch_profile(readings: list[Reading]) -> tuple[list[str], list[float], list[float]]:
    """The layers of the latest reading and, per layer, the median over the readings of its gradient
    norm and its update ratio."""
    layers = readings[-1].layers

    def median(values):
        values = [v for v in values if v is not None and math.isfinite(v)]
        return statistics.median(values) if values else float("nan")

    grads, ratios = [], []
    for i, name in enumerate(layers):
        same = [r for r in readings if r.layers[i : i + 1] == [name]]
        grads.append(median([r.grad[i] for r in same]))
        ratios.append(median([r.update_ratio[i] for r in same]))
    return layers, grads, ratios


def gradient_flow_figure(layers: list[str], grad: list[float], ratio: list[float], title: str = ""):
    """One figure: per layer, input (left) to output (right), the gradient norm and the update ratio
    as bars on a log scale; the update ratio with the 1e-3 rule of thumb as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    n = len(layers)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(6.0, 0.45 * n + 2), 5.5), dpi=100, sharex=True)
    x = list(range(n))
    floor = 1e-12

    def bars(ax, values, colour, label):
        shown = [v if math.isfinite(v) and v > 0 else floor for v in values]
        ax.bar(x, shown, color=colour, label=label)
        ax.set_yscale("log")
        # Tick labels as plain text (1e-03), not the log scale's default mathtext (10^-3), whose parsing
        # is half of a figure's drawing time: figures share a time budget (FigureBudget).
        ax.yaxis.set_major_formatter(ticker.LogFormatter())
        ax.yaxis.set_minor_formatter(ticker.LogFormatter(labelOnlyBase=False))
        ax.set_ylabel(label)
        ax.grid(axis="y", which="major", alpha=0.3)
        finite = [v for v in shown if v > floor]
        if finite:
            ax.set_ylim(min(finite) / 3, max(finite) * 3)

    bars(top, grad, "tab:blue", "gradient norm")
    bars(bottom, ratio, "tab:orange", "update / weight")
    bottom.axhline(1e-3, color="black", linestyle="--", linewidth=1)
    bottom.text(n - 0.5, 1e-3, " 1e-3", va="bottom", ha="right", fontsize=8)
    lo, hi = bottom.get_ylim()
    bottom.set_ylim(min(lo, 3e-4), max(hi, 3e-3))
    bottom.set_xticks(x, [short_name(name) for name in layers], rotation=60, ha="right", fontsize=8)
    bottom.set_xlabel("layer (input -> output)")
    top.set_title(f"Gradient flow {title}".strip(), fontsize=10)
    fig.tight_layout()
    return fig


def short_name(layer: str) -> str:
    """The layer's name without the task's ``net.`` prefix."""
    return layer.removeprefix("net.")
