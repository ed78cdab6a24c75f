"""The run's TensorBoard logger: Lightning's, writing one events file straight into the run folder.

Lightning's own logger, as configured before, wrote ``<run folder>/tensorboard/`` (every run was
named ``.../tensorboard`` in TensorBoard), three events files per run (it closes its writer after
fitting and after testing, and a closed writer opens a new file), an ``epoch`` scalar two or three
times a step, and an ``hparams.yaml`` beside the events. This one:

- writes into the run folder itself (``name=""``, ``version=""``), so TensorBoard names the run
  after its folder (``logs/runs/cnn-mnist-adam-lr0.001_2026-11-29_06-30-12``);
- keeps its writer open until the run's report is written (``close``), one events file per run;
- leaves out Lightning's ``epoch`` scalar (the x axis is the step; epochs are the points of the
  ``train/*``, ``val/*`` curves);
- writes no ``hparams.yaml`` (the config is in ``.hydra/``) and no HParams at the start: the run's
  report writes them with the real metrics (zoo/run/report.py);
- writes every tag under its numbered section (``tensorboard_tag``: ``train/loss`` -> ``1_train/loss``),
  whoever writes it: Lightning's ``log_metrics`` and the callbacks that call the writer themselves
  (``add_scalar``, ``add_figure``, ...) all write through its writer (``sectioned_summary_writer``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only
from typing_extensions import override

from zoo import compat

# TensorBoard's section of a tag is its part before the first "/", and TensorBoard 2.21 orders the
# sections of every dashboard (Time Series, Scalars, Images, Histograms, ...) by a natural sort of
# their names: digits compared as numbers and before letters. Plain names would come as best, lr,
# samples, test, train, val, watch; numbered, they come in the order a user reads them: the splits
# (train, val, test), then the run's results and settings, then the diagnostics.
# Why 10+ after 3: the HParams tab orders its metric columns by plain character order (its backend
# sorts the tags as Python strings) and shows the first five, and "10_best" sorts before "1_train"
# there ('0' < '_'), so those five are the best epoch's metrics (metrics.json's val/*), not train's.
# Why "_": a separator that sorts after the digits keeps that; a space or "." would not.
# metrics.json, the console, the CSV logger, checkpoint monitors and sweep objectives keep the plain
# names (val/loss): only what goes into TensorBoard is numbered, here and nowhere else.
SECTIONS = {
    "train": "1_train",
    "val": "2_val",
    "test": "3_test",
    "best": "10_best",
    "lr": "11_lr",
    "samples": "12_samples",
    "tuner": "13_tuner",
    "watch": "20_watch",
}


def tensorboard_tag(tag: str) -> str:
    """The tag as TensorBoard shows it: its section numbered (``val/acc`` -> ``2_val/acc``,
    ``watch/grad_norm/conv1`` -> ``20_watch/grad_norm/conv1``). Other tags (TensorBoard's own:
    ``_hparams_/...``, ``custom_scalars__config__``) are left as they are; a tag already numbered
    too, so writing through two layers of the writer numbers it once."""
    section, slash, rest = tag.partition("/")
    return SECTIONS[section] + slash + rest if slash and section in SECTIONS else tag


def tensorboard_section(section: str) -> str:
    """A section's name in TensorBoard (``train`` -> ``1_train``), for patterns over tags
    (the Custom Scalars layout)."""
    return SECTIONS.get(section, section)


# Every SummaryWriter method whose first argument is a tag (add_scalars' is the main tag).
_TAGGED = (
    "add_scalar",
    "add_scalars",
    "add_tensor",
    "add_histogram",
    "add_histogram_raw",
    "add_image",
    "add_images",
    "add_image_with_boxes",
    "add_figure",
    "add_video",
    "add_audio",
    "add_text",
    "add_pr_curve",
    "add_pr_curve_raw",
    "add_mesh",
)


@functools.cache
def sectioned_summary_writer() -> type:
    """A SummaryWriter class that writes every tag as ``tensorboard_tag`` names it, whichever
    method writes it (scalars, images, figures, text, histograms, PR curves, embeddings, ...).
    Made on first use: importing torch's SummaryWriter costs about 0.4 s, which a run without
    TensorBoard does not pay."""
    from torch.utils.tensorboard import SummaryWriter

    def with_section(name: str):
        method = getattr(SummaryWriter, name)

        def write(self, tag, *args, **kwargs):
            return method(self, tensorboard_tag(tag), *args, **kwargs)

        write.__name__ = write.__qualname__ = name
        write.__doc__ = method.__doc__
        return write

    def add_embedding(self, mat, metadata=None, label_img=None, global_step=None, tag="default", metadata_header=None):
        return SummaryWriter.add_embedding(
            self, mat, metadata, label_img, global_step, tensorboard_tag(tag), metadata_header
        )

    methods = {name: with_section(name) for name in _TAGGED}
    return type("SectionedSummaryWriter", (SummaryWriter,), {**methods, "add_embedding": add_embedding})


class TensorBoardLogger(LightningTensorBoardLogger):
    def __init__(self, save_dir: str, name: str = "", version: str = "", **kwargs: Any):
        kwargs.setdefault("default_hp_metric", False)
        super().__init__(save_dir=save_dir, name=name, version=version, **kwargs)
        own = inspect.signature(LightningTensorBoardLogger.__init__).parameters
        self._writer_kwargs = {k: v for k, v in kwargs.items() if k not in own}  # SummaryWriter's
        # put before every metric's key, as Lightning's log_metrics does (prefix-train/loss)
        self.key_prefix = f"{kwargs['prefix']}{self.LOGGER_JOIN_CHAR}" if kwargs.get("prefix") else ""

    @property
    @override
    @rank_zero_experiment
    def experiment(self):
        """The run's writer, opened on first use (a run that never logs has no events file)."""
        writer = compat.open_summary_writer(self)
        if writer is None:
            writer = sectioned_summary_writer()(log_dir=self.log_dir, **self._writer_kwargs)
            compat.set_summary_writer(self, writer)
        return writer

    @override
    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Every number of ``metrics`` (but Lightning's ``epoch``) at ``step``, as one event
        (``compat.write_scalars``: one event per scalar cost a tenth of a small model's training);
        a dict value, Lightning's ``add_scalars`` case, goes through Lightning's path."""
        numbers, others = {}, {}
        for k, v in metrics.items():
            if k == "epoch":
                continue
            if isinstance(v, torch.Tensor) and v.numel() == 1:
                v = v.item()
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                numbers[tensorboard_tag(self.key_prefix + k)] = v
            else:
                others[k] = v  # Lightning's path adds the prefix itself
        if numbers:
            compat.write_scalars(self.experiment, numbers, step)
        if others:
            super().log_metrics(others, step)

    @override
    @rank_zero_only
    def log_hyperparams(self, params: Any, metrics: Any = None, step: int | None = None) -> None:
        pass  # the HParams tab is written once, with the final metrics, by the run's report

    @override
    def save(self) -> None:
        pass  # no hparams.yaml: the run's config is .hydra/config.yaml

    @override
    @rank_zero_only
    def finalize(self, status: str) -> None:
        # Lightning finalizes after fit and again after test; closing here would start a new file.
        writer = compat.open_summary_writer(self)
        if writer is None:
            return
        writer.flush()
        if status != "success":
            self.close()

    @rank_zero_only
    def close(self) -> None:
        """Flush and close the events file (the run's report calls it last)."""
        writer = compat.open_summary_writer(self)
        if writer is not None:
            writer.flush()
            writer.close()
