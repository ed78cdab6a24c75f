"""Use what you trained: a checkpoint answering new inputs, for predict.py and the Python API.

``load(ckpt)`` rebuilds the checkpoint through zoo/run/rebuild.py (checkpoints stay data) into a
``Predictor``; ``Predictor.predict(x)`` reads ``x`` with the reader of the data's kind
(zoo/run/inputs.py: the same preprocessing as training), runs the task's ``predict_step`` through
Lightning's ``Trainer.predict`` (batching, device, precision, a progress bar on long inputs) and
turns the outputs into rows with the rows function of the task (zoo/run/outputs.py). predict.py
is this, plus writing the rows (``write_predictions``).

    from zoo import load
    model = load("logs/runs/.../checkpoints/best.ckpt")
    model.predict("my_digits/")          # a DataFrame: path, label, probability, label_2, ...
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import sys
import tempfile
import time
import warnings
from pathlib import Path

from zoo.run.inputs import Inputs, PredictOptions, reader
from zoo.run.outputs import rows_function

# A progress bar is drawn (progress=True) when the input is at least this many batches long.
PROGRESS_BATCHES = 20


def default_data_dir() -> str:
    """Where datasets live when data_dir= is not given: conf/paths' default ($ZOO_DATA_DIR, else ./data)."""
    return os.environ.get("ZOO_DATA_DIR") or os.path.join(os.getcwd(), "data")


@contextlib.contextmanager
def quiet_lightning():
    """Lightning's start-up notes ("GPU available: ...", the litlogger tip) and the deprecation noise
    of its internals (as train.py filters it) are not a prediction's business."""
    log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
            yield
    finally:
        log.setLevel(level)


class Predictor:
    """A trained network and what it needs to answer raw inputs: the data spec, the run's data
    config (how inputs are read) and a Lightning Trainer to run the task's ``predict_step``."""

    def __init__(
        self,
        rebuilt,
        ckpt_path: str,
        *,
        data_dir: str | None = None,
        accelerator: str = "auto",
        precision: str | int | None = None,
        batch_size: int | None = None,
        progress: bool = False,
    ):
        from hydra.utils import instantiate

        from zoo.tasks.registry import build_task

        self.ckpt_path, self.spec, self.task_name = ckpt_path, rebuilt.spec, rebuilt.task
        self.rows_function = rows_function(rebuilt.task, ckpt_path)  # a language model or GAN: a sentence
        self.reader = reader(self.spec.kind)
        self.data = dict(rebuilt.config["data"])
        self.data_dir = data_dir or default_data_dir()
        self.batch_size = int(batch_size or self.data.get("eval_batch_size") or 256)
        self.accelerator, self.precision, self.progress = accelerator, precision, progress
        task = build_task(
            rebuilt.task, rebuilt.spec, rebuilt.net, instantiate(rebuilt.config["optimizer"]), None, rebuilt.hparams
        )
        task.load_state_dict(rebuilt.state_dict)
        self.task = task.eval()
        self._trainers: dict[bool, object] = {}

    @property
    def class_names(self) -> list[str]:
        return list(self.spec.class_names)

    def options(self, column: str | None = None, top_k: int = 3) -> PredictOptions:
        return PredictOptions(data=self.data, data_dir=self.data_dir, column=column, top_k=top_k)

    def read(self, x=None, *, column: str | None = None) -> Inputs:
        """``x`` as the network's input rows (``Inputs``), read as the training data was."""
        return self.reader(x, self.spec, self.options(column))

    def trainer(self, progress: bool):
        if progress not in self._trainers:
            import lightning as L

            with quiet_lightning():
                self._trainers[progress] = L.Trainer(
                    accelerator=self.accelerator,
                    devices=1,
                    precision=self.precision,
                    logger=False,
                    enable_checkpointing=False,
                    enable_model_summary=False,
                    enable_progress_bar=progress,
                    inference_mode=True,
                )
        return self._trainers[progress]

    def outputs(self, x):
        """What the task's ``predict_step`` returns for the rows ``x`` (a tensor of them, or
        ``Inputs``), stacked: a classifier's class probabilities (N, classes), a forecaster's
        forecasts in the data's units (N, horizon, targets). Run by ``Trainer.predict`` over batches
        of ``batch_size`` rows cut from ``x`` by indexing (datamodules.base.BatchLoader)."""
        import torch

        from datamodules.base import BatchLoader

        x = x.x if isinstance(x, Inputs) else x
        loader = BatchLoader((x,), self.batch_size)
        if len(x) == 0:
            return torch.zeros(0)
        trainer = self.trainer(self.progress and len(loader) >= PROGRESS_BATCHES)
        with quiet_lightning():
            batches = trainer.predict(self.task, dataloaders=loader, return_predictions=True)
        return torch.cat([b.float() for b in batches]) if len(batches) > 1 else batches[0].float()

    def rows(self, outputs, inputs: Inputs, top_k: int = 3):
        """The outputs of ``inputs``'s readable rows as a DataFrame (zoo/run/outputs.py)."""
        return self.rows_function(outputs, inputs, self.spec, self.options(top_k=top_k))

    def predict(self, x=None, *, column: str | None = None, top_k: int = 3):
        """What the model says about ``x``, a DataFrame. Classifiers: one row per input (its path,
        line or index), ``label``, ``probability``, the next ``top_k - 1`` labels and probabilities,
        and ``error`` for an input that could not be read. Forecasters: ``horizon`` rows per series,
        dated at the series' own frequency, in the data's own units; ``x=None`` forecasts after the
        end of the dataset the model was trained on.

        ``x``: image files, folders, globs, Pillow images, arrays or tensors of pixels; texts, a text
        or CSV file, a DataFrame (``column=``); a CSV file, DataFrame or array (rows, channels) of a
        series."""
        inputs = self.read(x, column=column)
        return self.rows(self.outputs(inputs), inputs, top_k)

    def __repr__(self) -> str:
        return (
            f"Predictor({self.ckpt_path!r}: {self.task_name} on data={self.spec.name}, "
            f"input {self.spec.kind} of shape {tuple(self.spec.shape)})"
        )


def load(
    ckpt_path: str | os.PathLike,
    *,
    data_dir: str | None = None,
    accelerator: str = "auto",
    precision: str | int | None = None,
    batch_size: int | None = None,
    progress: bool = False,
) -> Predictor:
    """The checkpoint at ``ckpt_path`` as a ``Predictor`` (``.predict(x)``), rebuilt through
    zoo/run/rebuild.py: loaded as data (weights_only=True), nothing stored in it instantiated.
    ``data_dir``: where datasets live now (for a forecast without input, or an old checkpoint's image
    statistics; default $ZOO_DATA_DIR, else ./data). A checkpoint of a language model or a GAN is
    refused with the generate.py command to use instead."""
    from zoo.run.rebuild import rebuild

    path = os.path.expanduser(str(ckpt_path))
    return Predictor(
        rebuild(path),
        path,
        data_dir=data_dir,
        accelerator=accelerator,
        precision=precision,
        batch_size=batch_size,
        progress=progress,
    )


# ---- predict.py --------------------------------------------------------------------------------


def output_paths(out: str | None, root: str) -> tuple[str, str | None]:
    """(the CSV to write, the folder's command file or None): ``out=`` ending in .csv is that file;
    any other ``out=`` is a folder to hold predictions.csv and command.txt; none, a new folder
    ``logs/predictions/<time>/`` under ``root``."""
    if out and str(out).lower().endswith(".csv"):
        return os.path.expanduser(str(out)), None
    if out:
        folder = os.path.expanduser(str(out))
    else:
        base = os.path.join(root, "logs", "predictions", time.strftime("%Y-%m-%d_%H-%M-%S"))
        folder, n = base, 1
        while os.path.exists(folder):  # two predictions in the same second: a folder each
            n += 1
            folder = f"{base}_{n}"
    return os.path.join(folder, "predictions.csv"), os.path.join(folder, "command.txt")


def write_atomic(path: str, write) -> None:
    """``write(file_path)`` into a temporary file beside ``path``, then renamed: a crash or an error
    leaves no half-written file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_predictions(table, out: str | None, root: str, argv: list[str]) -> str:
    """predictions.csv (and the command that made it) written atomically; returns the CSV's path."""
    csv_path, command_path = output_paths(out, root)
    write_atomic(csv_path, lambda p: table.to_csv(p, index=False))
    if command_path:
        command = "python predict.py " + shlex.join(argv)
        write_atomic(command_path, lambda p: Path(p).write_text(command + "\n"))
    return csv_path


def predict(cfg, argv: list[str] | None = None) -> str:
    """predict.py: the predictions of ``cfg.ckpt_path`` for ``cfg.input``, written to ``cfg.out``;
    returns the CSV's path. Everything is read and predicted before anything is written."""
    predictor = load(
        cfg.ckpt_path,
        data_dir=cfg.get("data_dir"),
        accelerator=cfg.get("accelerator") or "auto",
        precision=cfg.get("precision"),
        batch_size=cfg.get("batch_size"),
        progress=True,
    )
    source = Path(os.path.expanduser(str(cfg.input))) if cfg.get("input") else None
    inputs = predictor.read(source, column=cfg.get("column"))
    table = predictor.rows(predictor.outputs(inputs), inputs, int(cfg.get("top_k") or 3))
    path = write_predictions(table, cfg.get("out"), os.getcwd(), list(argv if argv is not None else sys.argv[1:]))
    if predictor.task_name == "forecast":
        print(f"Forecast of the next {predictor.spec.horizon} steps: {path}")
    else:
        done = len(inputs) - inputs.failed
        print(f"Predicted {done:,} {inputs.noun}: {path}")
        if inputs.failed:
            print(
                f"{inputs.failed:,} of {len(inputs):,} could not be read; their reasons are in the error column.",
                file=sys.stderr,
            )
    return path
