"""Observability as callbacks, each with one job and its own interval (shared/DESIGN.md).

They work with any task: gradients are read in ``on_before_optimizer_step``, after Lightning's
precision plugin has unscaled them, so the norms under mixed precision are the true ones.
"""
from __future__ import annotations

import math

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger


def tensorboards(trainer: L.Trainer) -> list:
    """The SummaryWriters of the run's TensorBoard loggers (none when TensorBoard is off)."""
    return [lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]


def named_params_of(pl_module: L.LightningModule, optimizer) -> list[tuple[str, torch.nn.Parameter]]:
    """The named parameters this optimizer steps (one network of a GAN, or all of a classifier)."""
    stepped = {id(p) for group in optimizer.param_groups for p in group["params"]}
    return [(n, p) for n, p in pl_module.named_parameters() if id(p) in stepped]


def _prefix(trainer: L.Trainer, optimizer) -> str:
    """'' with one optimizer; 'opt<i>/' when there are several (e.g. generator and discriminator)."""
    opts = [getattr(o, "optimizer", o) for o in trainer.optimizers]
    if len(opts) < 2:
        return ""
    inner = getattr(optimizer, "optimizer", optimizer)
    return f"opt{next((i for i, o in enumerate(opts) if o is inner), 0)}/"


class GradientNormLogger(L.Callback):
    """Per-layer gradient L2 norms and the total norm, as scalars ``grad_norm/<layer>`` and
    ``grad_norm/total``, every ``every_n_steps`` optimizer steps.

    A layer is a module with parameters (weight and bias together). The norms are computed with
    one fused kernel and read back with one host sync per logging step.
    """

    def __init__(self, every_n_steps: int = 25):
        self.every_n_steps = every_n_steps
        self._layout: dict[int, tuple] = {}

    def _layers(self, named: list[tuple[str, torch.nn.Parameter]]):
        key = hash(tuple(n for n, _ in named))
        if key not in self._layout:
            layers = list(dict.fromkeys(n.rpartition(".")[0] or n for n, _ in named))
            index = torch.tensor([layers.index(n.rpartition(".")[0] or n) for n, _ in named])
            self._layout[key] = (layers, index)
        return self._layout[key]

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self.every_n_steps <= 0 or trainer.global_step % self.every_n_steps or not trainer.loggers:
            return
        named = [(n, p) for n, p in named_params_of(pl_module, optimizer) if p.grad is not None]
        if not named:
            return
        layers, index = self._layers(named)
        squares = torch.stack(torch._foreach_norm([p.grad for _, p in named])).float().pow(2)
        per_layer = torch.zeros(len(layers), device=squares.device).index_add_(0, index.to(squares.device), squares)
        values = per_layer.sqrt().tolist() + [math.sqrt(sum(per_layer.tolist()))]
        prefix = "grad_norm/" + _prefix(trainer, optimizer)
        metrics = {f"{prefix}{name}": v for name, v in zip(layers, values)}
        metrics[f"{prefix}total"] = values[-1]
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)


class HistogramLogger(L.Callback):
    """Weight and gradient histograms (TensorBoard's Histograms and Distributions tabs) every
    ``every_n_steps`` optimizer steps. They cost a copy to the host per tensor: keep the interval long,
    or turn the callback off with ``callbacks.histograms=null``."""

    def __init__(self, every_n_steps: int = 200, weights: bool = True, gradients: bool = True):
        self.every_n_steps, self.weights, self.gradients = every_n_steps, weights, gradients

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self.every_n_steps <= 0 or trainer.global_step % self.every_n_steps:
            return
        writers = tensorboards(trainer)
        if not writers:
            return
        prefix = _prefix(trainer, optimizer)
        for name, p in named_params_of(pl_module, optimizer):
            for kind, tensor in (("weights", p.data if self.weights else None),
                                 ("gradients", p.grad if self.gradients else None)):
                if tensor is None:
                    continue
                values = tensor.detach().float().cpu()
                for w in writers:
                    w.add_histogram(f"{kind}/{prefix}{name}", values, trainer.global_step)


def _class_names(trainer, n: int) -> list[str]:
    spec = getattr(trainer.datamodule, "spec", None)
    names = list(getattr(spec, "class_names", ()) or ())
    return names if len(names) == n else [str(i) for i in range(n)]


class ConfusionMatrixLogger(L.Callback):
    """An image of the confusion matrix of the test split, ``test/confusion_matrix``.

    Reads ``outputs["preds"]`` of the task's test step and the labels of the batch."""

    def __init__(self):
        self.counts: torch.Tensor | None = None

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self.counts = None

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not isinstance(outputs, dict) or "preds" not in outputs:
            return
        k = getattr(pl_module, "num_classes", None) or int(outputs["preds"].max()) + 1
        y, preds = batch[1], outputs["preds"]
        counts = torch.bincount(y * k + preds, minlength=k * k).reshape(k, k)
        self.counts = counts if self.counts is None else self.counts + counts

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        writers = tensorboards(trainer)
        if self.counts is None or not writers:
            return
        fig = plot_confusion_matrix(self.counts.cpu(), _class_names(trainer, len(self.counts)))
        for w in writers:
            w.add_figure("test/confusion_matrix", fig, trainer.global_step, close=False)
        import matplotlib.pyplot as plt
        plt.close(fig)


def plot_confusion_matrix(counts: torch.Tensor, names: list[str]):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.5 * k, 1.0 + 0.5 * k), dpi=100)
    rates = counts.float() / counts.sum(1, keepdim=True).clamp_min(1)
    ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, int(counts[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), names, rotation=90, fontsize=7)
    ax.set_yticks(range(k), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    return fig


class MisclassifiedImages(L.Callback):
    """A grid of up to ``max_images`` wrongly classified test images with their true and predicted
    labels, ``test/misclassified``."""

    def __init__(self, max_images: int = 32):
        self.max_images = max_images
        self.found: list[tuple[torch.Tensor, int, int]] = []

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self.found = []

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        room = self.max_images - len(self.found)
        if room <= 0 or not isinstance(outputs, dict) or "preds" not in outputs:
            return
        x, y = batch[0], batch[1]
        wrong = (outputs["preds"] != y).nonzero().flatten()[:room].tolist()
        for i in wrong:
            self.found.append((x[i].detach().float().cpu(), int(y[i]), int(outputs["preds"][i])))

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        writers = tensorboards(trainer)
        if not self.found or not writers:
            return
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = _class_names(trainer, getattr(pl_module, "num_classes", 0))
        cols = min(8, len(self.found))
        rows = math.ceil(len(self.found) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols, 1.6 * rows), dpi=100, squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, (img, true, pred) in zip(axes.flat, self.found):
            img = (img - img.min()) / (img.max() - img.min()).clamp_min(1e-8)  # undo normalisation for display
            ax.imshow(img.permute(1, 2, 0).numpy() if img.shape[0] == 3 else img[0].numpy(), cmap="gray")
            label = lambda i: names[i] if i < len(names) else str(i)  # noqa: E731
            ax.set_title(f"{label(true)} -> {label(pred)}", fontsize=7, color="red")
        fig.suptitle("true -> predicted", fontsize=8)
        fig.tight_layout()
        for w in writers:
            w.add_figure("test/misclassified", fig, trainer.global_step, close=False)
        plt.close(fig)


class ValidationHistory(L.Callback):
    """The validation metrics of every epoch as plain floats, so the run can report the validation
    metrics of the epoch its best checkpoint comes from."""

    def __init__(self):
        self.epochs: list[dict[str, float]] = []

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        row = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        self.epochs.append({"epoch": trainer.current_epoch, **row})

    def best(self, monitor: str, mode: str) -> dict[str, float]:
        rows = [r for r in self.epochs if monitor in r]
        if not rows:
            return self.epochs[-1] if self.epochs else {}
        pick = min if mode == "min" else max
        return pick(rows, key=lambda r: r[monitor])  # the first best, as ModelCheckpoint keeps it


def write_hparams(trainer: L.Trainer, params: dict, metrics: dict[str, float]) -> None:
    """The HParams tab: the run's hyper-parameters next to its real final metrics.

    The metric values come from the scalars of the same names already in the event file, so
    nothing is written twice and there is no ``hp_metric = -1`` placeholder."""
    from torch.utils.tensorboard.summary import hparams

    for w in tensorboards(trainer):
        exp, ssi, sei = hparams(params, metrics)
        writer = w._get_file_writer()
        for summary in (exp, ssi, sei):
            writer.add_summary(summary)
        w.flush()
