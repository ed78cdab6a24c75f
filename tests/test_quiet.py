"""callbacks.progress_bar=null and callbacks.model_summary=null mean none: Lightning does not put its
own progress bar (redrawn every step) and model summary back in their place."""

from __future__ import annotations

import pytest
from lightning.pytorch.callbacks import ModelSummary, ProgressBar, RichProgressBar

import train
from tests.helpers import QUIET
from zoo.callbacks.console import ModelSummary as ZooModelSummary
from zoo.callbacks.console import ProgressBar as ZooProgressBar
from zoo.run.config import compose_run


@pytest.mark.parametrize(
    "overrides, bars, summaries",
    [
        (QUIET, [], []),
        (["callbacks=none"], [], []),
        ([], [ZooProgressBar], [ZooModelSummary]),  # the configured ones, once each
        ([*QUIET, "+trainer.enable_progress_bar=true"], [RichProgressBar], []),  # Lightning's, when asked for
    ],
    ids=["nulls", "callbacks-none", "default", "asked-for"],
)
def test_a_progress_bar_and_summary_only_when_configured(overrides, bars, summaries, tmp_path):
    trainer = train.build_trainer(compose_run(overrides, str(tmp_path / "run")), [])
    assert [type(c) for c in trainer.callbacks if isinstance(c, ProgressBar)] == bars
    assert [type(c) for c in trainer.callbacks if isinstance(c, ModelSummary)] == summaries
    assert (trainer.progress_bar_callback is not None) == bool(bars)
