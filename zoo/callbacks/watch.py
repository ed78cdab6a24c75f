"""What a run looks like from outside the task: the learning rate, step time, the model graph, a few
input samples with their labels, and the Custom Scalars layout that puts train and val on one chart.
Each is its own callback (conf/callbacks/default.yaml), off with ``callbacks.<name>=null``."""

from __future__ import annotations

import math
import re
import time
import warnings

import lightning as L
import torch
from typing_extensions import override

from zoo import compat
from zoo.callbacks.common import WATCH, OnFirstBatch, epoch_end_step, logging_step, resumed, tensorboards
from zoo.callbacks.logger import tensorboard_section


def group_names(trainer: L.Trainer) -> list[tuple[dict, str]]:
    """Every parameter group of every optimizer with its name: the group's ``name`` (a GAN names
    them ``generator`` and ``discriminator``), else ``net`` for the one group of one optimizer, else
    ``opt<i>`` / ``opt<i>_group<j>``."""
    optimizers = [getattr(o, "optimizer", o) for o in trainer.optimizers]
    named = []
    for i, opt in enumerate(optimizers):
        for j, group in enumerate(opt.param_groups):
            name = group.get("name")
            if not name:
                name = "net" if len(optimizers) == 1 else f"opt{i}"
                if len(opt.param_groups) > 1:
                    name = f"{name}_group{j}" if len(optimizers) > 1 else f"group{j}"
            named.append((group, str(name)))
    return named


class LearningRateLogger(L.Callback):
    """The learning rate of every parameter group as ``lr/<group>`` (``lr/net``; a GAN's
    ``lr/generator`` and ``lr/discriminator``), on the steps the loggers write
    (``trainer.log_every_n_steps``) and at every epoch's end, so a schedule that changes per epoch
    shows its steps."""

    _written = -1  # the last step written: a step that is also an epoch's last gets one point

    def _log(self, trainer, step: int) -> None:
        if step == self._written:
            return
        self._written = step
        values = {f"lr/{name}": float(group["lr"]) for group, name in group_names(trainer)}
        for logger in trainer.loggers:
            logger.log_metrics(values, step=step)

    @override
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.loggers and compat.should_update_logs(trainer):
            self._log(trainer, logging_step(trainer))

    @override
    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.loggers:
            self._log(trainer, epoch_end_step(trainer))


def _batch_size(batch) -> int:
    first = batch[0] if isinstance(batch, (list, tuple)) else batch
    return len(first) if hasattr(first, "__len__") else 0


class StepTimer(L.Callback):
    """Training speed as scalars, on the steps the loggers write: ``watch/step_time_s`` (seconds per
    training batch, from one batch's end to the next one's: data loading included) and
    ``watch/samples_per_s``, each the mean since the last point. The first batch of an epoch (or of
    a resumed run) counts from its own start: the data loader's start-up is not a step's time."""

    def __init__(self):
        self._last_end: float | None = None
        self._last_step = 0
        self._batch_start = 0.0
        self._seconds = 0.0
        self._batches = 0
        self._samples = 0

    @override
    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._last_end = None

    @override
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._batch_start = time.perf_counter()

    @override
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        step = logging_step(trainer)
        # With steps_per_execution > 1 this hook sees the last batch of an execution, whose other
        # batches trained since the previous end (zoo/tasks/execution.py): the step counter counts them.
        batches = max(step - self._last_step, 1) if self._last_end is not None else 1
        self._seconds += now - (self._last_end if self._last_end is not None else self._batch_start)
        self._last_end, self._last_step = now, step
        self._batches += batches
        self._samples += _batch_size(batch) * batches
        if not trainer.loggers or not compat.should_update_logs(trainer):
            return
        elapsed = max(self._seconds, 1e-9)
        values = {f"{WATCH}step_time_s": elapsed / self._batches, f"{WATCH}samples_per_s": self._samples / elapsed}
        for logger in trainer.loggers:
            logger.log_metrics(values, step=logging_step(trainer))
        self._seconds, self._batches, self._samples = 0.0, 0, 0


def _metric_names(pl_module) -> list[str]:
    logged = getattr(pl_module, "logged_metrics", ())
    return list(logged() if callable(logged) else logged)


class CustomScalarsLayout(L.Callback):
    """TensorBoard's Custom Scalars tab, written with every run: each metric the task logs for both
    training and validation on one chart (``train/loss`` with ``val/loss``, ``train/acc`` with
    ``val/acc``, a GAN's losses and D outputs), in the order train, val, test; then the learning
    rate and all per-layer gradient norms on one chart each. TensorBoard merges the layouts of all
    runs of a logs folder, so it compares runs of any task. Its patterns match the tags as
    TensorBoard shows them (``^(1_train|2_val)/loss$``: zoo/callbacks/logger.py numbers the sections)."""

    @staticmethod
    def layout(metrics: list[str]) -> dict:
        train = {m.split("/", 1)[1] for m in metrics if m.startswith("train/") and not m.endswith("_step")}
        val = {m.split("/", 1)[1] for m in metrics if m.startswith("val/")}
        both = [m for m in dict.fromkeys(m.split("/", 1)[1] for m in metrics if "/" in m) if m in train and m in val]
        only_val = [m for m in dict.fromkeys(m.split("/", 1)[1] for m in metrics) if m in val and m not in train]
        only_train = [m for m in dict.fromkeys(m.split("/", 1)[1] for m in metrics) if m in train and m not in val]

        def chart(name: str, splits: str) -> tuple[str, list]:
            sections = "|".join(tensorboard_section(s) for s in splits.split("|"))
            return f"{name} ({splits.replace('|', ', ')})", ["Multiline", [rf"^({sections})/{re.escape(name)}$"]]

        lr, watch = tensorboard_section("lr"), tensorboard_section(WATCH.rstrip("/"))

        layout = {
            "train and val": dict(
                [chart(m, "train|val") for m in both]
                + [chart(m, "train") for m in only_train]
                + [chart(m, "val") for m in only_val]
            ),
            "diagnostics": {
                "learning rate": ["Multiline", [rf"^{lr}/"]],
                "gradient norm per layer": ["Multiline", [rf"^{watch}/grad_norm/"]],
                "step time (s)": ["Multiline", [rf"^{watch}/step_time_s$"]],
            },
        }
        return {k: v for k, v in layout.items() if v}

    @override
    def on_train_start(self, trainer, pl_module) -> None:
        writers = tensorboards(trainer)
        if not writers or resumed(trainer):  # a resumed run has it from its start
            return
        layout = self.layout(_metric_names(pl_module))
        for w in writers:
            w.add_custom_scalars(layout)


class ModelGraph(OnFirstBatch):
    """The network's graph in TensorBoard's Graphs tab (as Keras writes by default), traced once on
    two samples of the first training batch. A network that cannot be traced (a GAN's generator
    takes noise, not the batch) is skipped with a warning; the run goes on."""

    def __init__(self, samples: int = 2):
        self.samples = samples

    @override
    def write(self, writers, trainer, pl_module, batch) -> None:
        net = getattr(pl_module, "net", None)
        if net is None or not isinstance(batch, (list, tuple)):
            return
        x = batch[0][: self.samples]
        training = net.training
        net.eval()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the tracer's notes on Python control flow
                for w in writers:
                    w.add_graph(net, x)
        except Exception as e:  # noqa: BLE001 - a graph is a view: never stop a run for it
            warnings.warn(f"the model graph was not written ({type(e).__name__}: {str(e)[:200]})", stacklevel=1)
        finally:
            net.train(training)


class InputSamples(OnFirstBatch):
    """A few training samples with their labels, once at the start, as the model sees them (after
    augmentation and normalisation, mapped back to [0, 1] per image): ``train/samples`` in the
    Images tab, each image titled with its class. Token data: the decoded texts in the Text tab.
    Audio: the clips in the Audio dashboard (``train/samples/<i>_<class>``), as the network gets
    them (time-shifted), and their spectrograms in the Images tab (``train/samples``).
    Series (forecasting) and GAN data are skipped (the forecast plot and ``samples/real`` show those)."""

    def __init__(self, num_samples: int = 16):
        self.num_samples = num_samples

    @override
    def write(self, writers, trainer, pl_module, batch) -> None:
        spec = getattr(trainer.datamodule, "spec", None) if trainer.datamodule is not None else None
        if spec is None or not isinstance(batch, (list, tuple)) or len(batch) < 2:
            return
        if getattr(spec, "task", "classify") not in ("classify", None, ""):
            return
        if hasattr(pl_module, "sample") and not hasattr(pl_module, "num_classes"):
            return  # a GAN: samples/real shows its data
        x, y = batch[0][: self.num_samples].detach().cpu(), batch[1][: self.num_samples].detach().cpu()
        names = list(getattr(spec, "class_names", ()) or ())
        label = lambda i: names[i] if 0 <= i < len(names) else str(i)  # noqa: E731
        step = logging_step(trainer)
        if x.dim() == 4:
            fig = _titled_grid(x, [label(int(i)) for i in y])
            for w in writers:
                w.add_figure("train/samples", fig, step, close=False)
            import matplotlib.pyplot as plt

            plt.close(fig)
        elif getattr(spec, "kind", None) == "audio" and x.dim() == 2:  # the clips, and their spectrograms
            from zoo.callbacks.audio import write_audio_view

            write_audio_view(trainer, "train/samples", x, [label(int(i)) for i in y], step)
        elif x.dim() == 2 and not x.is_floating_point() and getattr(spec, "vocabulary", None):
            from zoo.callbacks.classification import decode_tokens

            rows = ["| label | text |", "|---|---|"]
            for ids, c in zip(x.tolist(), y.tolist()):
                text = decode_tokens(ids, list(spec.vocabulary), spec.pad_index).replace("|", "\\|")
                rows.append(f"| {label(int(c))} | {text} |")
            for w in writers:
                w.add_text("train/samples", "\n".join(rows), step)


def to_unit(img: torch.Tensor) -> torch.Tensor:
    """One image mapped to [0, 1] by its own minimum and maximum (undoes normalisation for display)."""
    return (img - img.min()) / (img.max() - img.min()).clamp_min(1e-8)


def _titled_grid(images: torch.Tensor, titles: list[str], colors: list[str] | None = None):
    """A matplotlib figure: the images in a grid of up to 8 columns, each with its title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(8, len(images))
    rows = math.ceil(len(images) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols, 1.6 * rows), dpi=100, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, (ax, img, title) in enumerate(zip(axes.flat, images, titles)):
        img = to_unit(img.float())
        ax.imshow(img.permute(1, 2, 0).numpy() if img.shape[0] == 3 else img[0].numpy(), cmap="gray")
        ax.set_title(title, fontsize=7, color=(colors[k] if colors else "black"))
    fig.tight_layout()
    return fig


__all__ = [
    "CustomScalarsLayout",
    "InputSamples",
    "LearningRateLogger",
    "ModelGraph",
    "StepTimer",
    "group_names",
]
