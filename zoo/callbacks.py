"""Observability as callbacks, each with one job and its own interval (shared/DESIGN.md).

They work with any task: gradients are read in ``on_before_optimizer_step``, after Lightning's
precision plugin has unscaled them, so the norms under mixed precision are the true ones.
"""
from __future__ import annotations

import math
import os
import re
import time

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
    """'' with one optimizer; with several, the name of the optimizer's parameter group
    ('generator/', 'discriminator/': a GAN names them), else 'opt<i>/'."""
    opts = [getattr(o, "optimizer", o) for o in trainer.optimizers]
    if len(opts) < 2:
        return ""
    inner = getattr(optimizer, "optimizer", optimizer)
    name = inner.param_groups[0].get("name") if inner.param_groups else None
    return f"{name}/" if name else f"opt{next((i for i, o in enumerate(opts) if o is inner), 0)}/"


def logging_step(trainer: L.Trainer) -> int:
    """The step Lightning's loggers write ``self.log`` scalars at: one per training batch, however
    many optimizers step in it (``global_step`` counts both of a GAN's steps). With one optimizer
    it equals ``global_step``."""
    return trainer.fit_loop.epoch_loop._batches_that_stepped


class _EveryNSteps:
    """For callbacks that act in ``on_before_optimizer_step`` every ``every_n_steps`` batches:
    each optimizer at its first step in every such window, so a network that does not step on every
    batch (a GAN's generator with n_critic > 1) is still seen, at the same interval as the others."""

    every_n_steps: int

    def _due(self, trainer: L.Trainer, optimizer) -> bool:
        if self.every_n_steps <= 0:
            return False
        last = self.__dict__.setdefault("_last_window", {})
        # With steps_per_execution=K a Lightning step is K batches and this hook sees the last of
        # them: the interval still counts batches, so the norms come as often whatever K is.
        k = getattr(trainer.lightning_module, "steps_per_execution", 1)
        batch = logging_step(trainer) * k + k - 1
        window = batch // self.every_n_steps
        key = id(getattr(optimizer, "optimizer", optimizer))
        # A run resumed inside a window has had that window's turn already (unless it starts on it).
        if last.get(key, (batch - k) // self.every_n_steps) >= window:
            return False
        last[key] = window
        return True


# weight_ih_l0, bias_hh_l1_reverse, weight_hr_l0 (LSTM projections): the parameters of nn.RNN/LSTM/GRU
_RECURRENT_PARAM = re.compile(r"^(?:weight|bias)_(?:ih|hh|hr)_(l\d+(?:_reverse)?)$")


def layer_of(name: str) -> str:
    """The layer a parameter belongs to: its module, or for a recurrent module its stacked layer."""
    module, _, leaf = name.rpartition(".")
    m = _RECURRENT_PARAM.match(leaf)
    if m:
        return f"{module}.{m.group(1)}" if module else m.group(1)
    return module or name


class GradientNormLogger(_EveryNSteps, L.Callback):
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

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if not trainer.loggers or not self._due(trainer, optimizer):
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
            logger.log_metrics(metrics, step=logging_step(trainer))


class HistogramLogger(_EveryNSteps, L.Callback):
    """Weight and gradient histograms (TensorBoard's Histograms and Distributions tabs) every
    ``every_n_steps`` optimizer steps. They cost a copy to the host per tensor: keep the interval long,
    or turn the callback off with ``callbacks.histograms=null``."""

    def __init__(self, every_n_steps: int = 200, weights: bool = True, gradients: bool = True):
        self.every_n_steps, self.weights, self.gradients = every_n_steps, weights, gradients

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if not self._due(trainer, optimizer):
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
                    w.add_histogram(f"{kind}/{prefix}{name}", values, logging_step(trainer))


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
        if trainer.world_size > 1 and self.counts is not None:  # DDP: each process tested its part
            self.counts = trainer.strategy.reduce(self.counts, reduce_op="sum")
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
        if x.dim() != 4:  # images only (token sequences: MisclassifiedText)
            return
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

    def state_dict(self) -> dict:  # kept in checkpoints, so a resumed run knows its earlier epochs
        return {"epochs": self.epochs}

    def load_state_dict(self, state: dict) -> None:
        self.epochs = list(state.get("epochs", []))

    def best(self, monitor: str, mode: str) -> dict[str, float]:
        rows = [r for r in self.epochs if monitor in r]
        if not rows:
            return self.epochs[-1] if self.epochs else {}
        pick = min if mode == "min" else max
        return pick(rows, key=lambda r: r[monitor])  # the first best, as ModelCheckpoint keeps it


def process_age() -> float:
    """Seconds since this process started (from /proc on Linux; elsewhere since this module loaded)."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            return float(f.read().split()[0]) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return time.perf_counter() - _LOADED


_LOADED = time.perf_counter()


class StartupTimer(L.Callback):
    """The time from the command to the first training step (interpreter, imports, data, model,
    sanity check): ``first_step_s`` in metrics.json."""

    def __init__(self):
        self.first_step_s: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.first_step_s is None:
            self.first_step_s = round(process_age(), 2)


def write_hparams(trainer: L.Trainer, params: dict, metrics: dict[str, float]) -> None:
    """The HParams tab: the run's hyper-parameters next to its real final metrics.

    The metric values come from the scalars of the same names already in the event file, so
    nothing is written twice and there is no ``hp_metric = -1`` placeholder. In a sweep, the
    columns of the tab (the "experiment") are written once for all runs by zoo.sweep.SweepSummary."""
    from torch.utils.tensorboard.summary import hparams

    from zoo.sweep import in_multirun

    for w in tensorboards(trainer):
        exp, ssi, sei = hparams(params, metrics)
        writer = w._get_file_writer()
        for summary in ((ssi, sei) if in_multirun() else (exp, ssi, sei)):
            writer.add_summary(summary)
        w.flush()


def image_grid(images: torch.Tensor, columns: int) -> torch.Tensor:
    """(N, C, H, W) in [0, 1] -> one (C, H', W') image, small images enlarged to >= 28 px so
    TensorBoard shows 8x8 digits at a visible size."""
    from torchvision.utils import make_grid

    scale = max(1, math.ceil(28 / images.shape[-1]))
    if scale > 1:
        images = torch.nn.functional.interpolate(images, scale_factor=scale, mode="nearest")
    return make_grid(images.detach().float().cpu(), nrow=columns, padding=2, pad_value=1.0)


class SampleGrid(L.Callback):
    """A grid of the images a generative model makes from the same fixed noise, at the end of every
    ``every_n_epochs`` training epochs (``samples/fixed_noise``): the same latent points epoch after
    epoch, so the grid shows how the generator changes. Works with any task that has
    ``sample(n, seed) -> (N, C, H, W) in [0, 1]``; a class-conditional one puts a class per column."""

    def __init__(self, num_samples: int = 100, every_n_epochs: int = 1, seed: int = 0):
        self.num_samples, self.every_n_epochs, self.seed = num_samples, every_n_epochs, seed

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        writers = tensorboards(trainer)
        sample = getattr(pl_module, "sample", None)
        if not writers or sample is None or self.every_n_epochs <= 0 or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        images = sample(self.num_samples, self.seed)
        columns = getattr(pl_module, "grid_columns", None) or math.ceil(math.sqrt(len(images)))
        grid = image_grid(images, columns)
        for w in writers:
            w.add_image("samples/fixed_noise", grid, logging_step(trainer))


class RealImages(L.Callback):
    """The first training batch, once, as a grid (``samples/real``): what the samples should look
    like, as the model sees the data (after augmentation). Images are mapped to [0, 1] by the task's
    ``to_unit`` when it has one, else each image by its own minimum and maximum."""

    def __init__(self, num_images: int = 100):
        self.num_images = num_images
        self.done = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.done:
            return
        self.done = True
        writers = tensorboards(trainer)
        if not writers:
            return
        x = batch[0][:self.num_images].detach()
        to_unit = getattr(pl_module, "to_unit", None)
        if to_unit is not None:
            x = to_unit(x)
        else:
            lo = x.flatten(1).min(1).values[:, None, None, None]
            hi = x.flatten(1).max(1).values[:, None, None, None]
            x = (x - lo) / (hi - lo).clamp_min(1e-8)
        grid = image_grid(x, math.ceil(math.sqrt(len(x))))
        for w in writers:
            w.add_image("samples/real", grid, logging_step(trainer))


# ---- sequences: generated text, misclassified texts, forecasts ------------------------------------

def _markdown_block(text: str) -> str:
    """Text shown verbatim in TensorBoard's Text tab (markdown: an indented block keeps the lines)."""
    return "\n".join("    " + line for line in text.split("\n"))


class GeneratedText(L.Callback):
    """A sample of text from a language model after every ``every_n_epochs`` validation epochs,
    ``samples/generated`` in TensorBoard's Text tab. The same ``seed`` every time, so two samples
    differ only by what the model learnt in between. Works with any task that has
    ``sample_text(prompt, length, temperature, seed=...)`` (LanguageModelTask)."""

    def __init__(self, every_n_epochs: int = 1, prompt: str = "", length: int = 300, temperature: float = 0.8,
                 seed: int = 0):
        self.every_n_epochs, self.prompt, self.length = every_n_epochs, str(prompt or ""), length
        self.temperature, self.seed = temperature, seed

    def on_fit_start(self, trainer, pl_module) -> None:
        sample = getattr(pl_module, "sample_text", None)
        if sample is not None and self.prompt:
            sample(self.prompt, 0)  # a prompt the vocabulary cannot spell fails now, not after an epoch

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        sample = getattr(pl_module, "sample_text", None)
        writers = tensorboards(trainer)
        if (trainer.sanity_checking or sample is None or not writers or self.every_n_epochs <= 0
                or (trainer.current_epoch + 1) % self.every_n_epochs):
            return
        text = sample(self.prompt, self.length, self.temperature, seed=self.seed)
        for w in writers:
            w.add_text("samples/generated", _markdown_block(text), logging_step(trainer))


def decode_tokens(ids: list[int], vocabulary: list[str], pad_index: int = -1) -> str:
    """Token ids as text: characters joined as they are, words with spaces; padding left out."""
    tokens = [vocabulary[i] if 0 <= i < len(vocabulary) else "?" for i in ids if i != pad_index]
    return ("" if all(len(t) == 1 for t in vocabulary[2:]) else " ").join(tokens)


class MisclassifiedText(L.Callback):
    """Up to ``max_texts`` wrongly classified test sequences (token data: AG News), decoded with the
    data's vocabulary, with their true and predicted classes: ``test/misclassified`` in TensorBoard's
    Text tab. Reads ``outputs["preds"]`` of the task's test step and the labels of the batch."""

    def __init__(self, max_texts: int = 20):
        self.max_texts = max_texts
        self.found: list[tuple[list[int], int, int]] = []

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self.found = []

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        room = self.max_texts - len(self.found)
        x, y = batch[0], batch[1]
        if room <= 0 or not isinstance(outputs, dict) or "preds" not in outputs or x.dim() != 2 or x.is_floating_point():
            return
        for i in (outputs["preds"] != y).nonzero().flatten()[:room].tolist():
            self.found.append((x[i].tolist(), int(y[i]), int(outputs["preds"][i])))

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        spec = getattr(trainer.datamodule, "spec", None)
        writers = tensorboards(trainer)
        if not self.found or not writers or spec is None or not spec.vocabulary:
            return
        names = _class_names(trainer, getattr(pl_module, "num_classes", 0))
        label = lambda i: names[i] if i < len(names) else str(i)  # noqa: E731
        rows = ["| true | predicted | text |", "|---|---|---|"]
        for ids, true, pred in self.found:
            text = decode_tokens(ids, list(spec.vocabulary), spec.pad_index).replace("|", "\\|")
            rows.append(f"| {label(true)} | {label(pred)} | {text} |")
        for w in writers:
            w.add_text("test/misclassified", "\n".join(rows), logging_step(trainer))


class ForecastPlot(L.Callback):
    """Forecast against truth for ``windows`` validation windows spread evenly over the split, after
    every ``every_n_epochs`` epochs: one panel per window with the lookback, the true continuation
    and the forecast of one target channel (``channel``: an index among the targets; -1 the last),
    on the data's original scale: ``val/forecast`` in TensorBoard's Images tab. Reads
    ``outputs["forecast"]`` of the task's validation step."""

    def __init__(self, every_n_epochs: int = 1, windows: int = 4, channel: int = -1):
        self.every_n_epochs, self.windows, self.channel = every_n_epochs, windows, channel
        self.picked: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.wanted: list[int] = []
        self.seen = 0

    def _due(self, trainer) -> bool:
        return (not trainer.sanity_checking and self.windows > 0 and self.every_n_epochs > 0
                and (trainer.current_epoch + 1) % self.every_n_epochs == 0 and bool(tensorboards(trainer)))

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self.picked, self.seen = [], 0
        loader = trainer.val_dataloaders
        n = getattr(getattr(loader, "sampler", None), "n", None) or self.windows
        self.wanted = sorted({round(i * (n - 1) / max(1, self.windows - 1)) for i in range(min(self.windows, n))})

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not self._due(trainer) or not isinstance(outputs, dict) or "forecast" not in outputs:
            return
        x, y, forecast = batch[0], batch[1], outputs["forecast"]
        targets = y.shape[2]
        c = self.channel % targets
        for w in self.wanted:
            if self.seen <= w < self.seen + len(x):
                i = w - self.seen
                self.picked.append((w, x[i, :, x.shape[2] - targets + c].float().cpu(), y[i, :, c].float().cpu(),
                                    forecast[i, :, c].float().cpu()))
        self.seen += len(x)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not self.picked or not self._due(trainer):
            return
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        spec = getattr(trainer.datamodule, "spec", None)
        name, mean, std = "value", 0.0, 1.0
        if spec is not None and spec.channel_names:
            k = len(spec.channel_names) - spec.target_channels + self.channel % max(1, spec.target_channels)
            name = spec.channel_names[k]
            if spec.channel_std:
                mean, std = spec.channel_mean[k], spec.channel_std[k]
        cols = min(2, len(self.picked))
        rows = math.ceil(len(self.picked) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 2.6 * rows), dpi=100, squeeze=False)
        for ax in axes.flat[len(self.picked):]:
            ax.axis("off")
        for ax, (index, past, truth, forecast) in zip(axes.flat, self.picked):
            lookback = len(past)
            ahead = range(lookback, lookback + len(truth))
            ax.plot(range(lookback), past * std + mean, color="0.4", lw=1, label="lookback")
            ax.plot(ahead, truth * std + mean, color="tab:green", lw=1.2, label="truth")
            ax.plot(ahead, forecast * std + mean, color="tab:red", lw=1.2, ls="--", label="forecast")
            ax.axvline(lookback - 0.5, color="0.8", lw=0.8)
            ax.set_title(f"validation window {index}", fontsize=8)
            ax.tick_params(labelsize=7)
        axes.flat[0].legend(fontsize=7, loc="upper left")
        fig.suptitle(f"{name}: forecast vs truth (epoch {trainer.current_epoch})", fontsize=9)
        fig.tight_layout()
        for w in tensorboards(trainer):
            w.add_figure("val/forecast", fig, logging_step(trainer), close=False)
        plt.close(fig)
