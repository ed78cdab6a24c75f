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
  report writes them with the real metrics (zoo/run/report.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from typing_extensions import override

from zoo import compat


class TensorBoardLogger(LightningTensorBoardLogger):
    def __init__(self, save_dir: str, name: str = "", version: str = "", **kwargs: Any):
        kwargs.setdefault("default_hp_metric", False)
        super().__init__(save_dir=save_dir, name=name, version=version, **kwargs)

    @override
    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        super().log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, step)

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
