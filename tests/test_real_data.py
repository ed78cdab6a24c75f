"""The recipes still learn on the real datasets (Tiny Shakespeare, ETTh1): a short run of each ends
well below the naive baseline. The files are read from ZOO_REAL_DATA=<folder>, else from a
shared/data folder beside the repository's own. The quality numbers themselves are the benchmark's
(benchmarks/results.py), not these tests'. A clone without the files skips them with a message."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import REAL_DATA as DATA
from tests.helpers import run_train


def needs(relative: str) -> Path:
    path = DATA / relative
    if not path.is_file():
        pytest.skip(
            f"no {relative} in {DATA}: the real-data checks need the shared data folder beside the repository "
            f"(or ZOO_REAL_DATA=<folder>)"
        )
    return path


@pytest.mark.slow
def test_the_etth1_recipe_beats_repeating_the_last_value(tmp_path, one_thread):
    needs("ETT/ETTh1.csv")
    summary = run_train(
        ["experiment=etth1_linear", "trainer.max_epochs=1", "data.download=false", "logger=csv"],
        tmp_path / "run",
        data_dir=DATA,
    )
    assert summary["status"] == "finished"
    # test/naive_mse: the naive forecast, the last value of the window held for the whole horizon.
    assert summary["test/mse"] < 0.6 * summary["test/naive_mse"], summary


@pytest.mark.slow
def test_the_shakespeare_recipe_beats_character_frequencies(tmp_path, one_thread):
    text = needs("shakespeare/input.txt").read_text(encoding="utf-8")
    train = text[: int(len(text) * 0.9)]
    counts = Counter(train)
    unigram = -sum(n / len(train) * math.log(n / len(train)) for n in counts.values())  # nats/char, about 3.3
    summary = run_train(
        [
            "model=lstm",
            "data=shakespeare",
            "data.download=false",
            "logger=csv",
            "trainer.max_steps=120",
            "trainer.max_epochs=-1",
            "trainer.limit_val_batches=2",
            "trainer.limit_test_batches=2",
            "callbacks.generated_text=null",
        ],
        tmp_path / "run",
        data_dir=DATA,
    )
    assert summary["status"] == "finished" and summary["global_step"] == 120
    assert summary["test/loss"] < unigram - 0.3, (summary["test/loss"], unigram)
