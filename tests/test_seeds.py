"""Repeated seeds: seeds=N runs a recipe over N seeds, and the sweep summary reports mean ± std."""

from __future__ import annotations

import csv
import json
import statistics

import pytest

from tests.helpers import command
from zoo.errors import UserError
from zoo.run.config import expand_seeds
from zoo.sweeps.summary import SEEDS_CSV, SUMMARY_MD, collect, seed_groups, write_seed_summary, write_summary


def test_seeds_becomes_a_multirun_over_consecutive_seeds():
    assert expand_seeds(["model=linear", "seeds=3"]) == ["-m", "model=linear", "seed=42,43,44"]
    assert expand_seeds(["seed=7", "seeds=2", "data=sine"]) == ["-m", "data=sine", "seed=7,8"]
    assert expand_seeds(["-m", "optimizer.lr=1e-3,1e-2", "seeds=2"]) == ["-m", "optimizer.lr=1e-3,1e-2", "seed=42,43"]
    assert expand_seeds(["seeds=1", "model=cnn"]) == ["model=cnn"]
    assert expand_seeds(["model=cnn"]) == ["model=cnn"]


@pytest.mark.parametrize(
    "argv, sentence",
    [
        (["seeds=0"], "seeds must be a positive whole number of runs, got '0'; try seeds=5."),
        (["seeds=many"], "seeds must be a positive whole number of runs, got 'many'; try seeds=5."),
        (["seed=1,2", "seeds=3"], "so seed must be one whole number, got '1,2'; give either seeds=N or a list"),
    ],
)
def test_bad_seeds_are_one_sentence(argv, sentence):
    with pytest.raises(UserError, match=sentence.replace("(", r"\(").replace(")", r"\)")) as err:
        expand_seeds(argv)
    assert "\n" not in str(err.value)


def fake_run(sweep, job: int, overrides: list[str], metrics: dict, seconds: float) -> None:
    folder = sweep / str(job)
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (folder / "metrics.json").write_text(json.dumps({"status": "finished", "seconds": seconds, **metrics}))


def test_runs_that_differ_by_seed_are_summarised_as_mean_and_std(tmp_path):
    mse = {"1e-3": [0.40, 0.42, 0.44], "1e-2": [0.50, 0.50, 0.53]}
    job = 0
    for lr, values in mse.items():
        for seed, value in zip((1, 2, 3), values):
            fake_run(tmp_path, job, [f"optimizer.lr={lr}", f"seed={seed}"], {"test/mse": value}, 10.0 + seed)
            job += 1
    rows = collect(str(tmp_path))
    varying, _ = write_summary(str(tmp_path), rows, "val/loss")
    groups = seed_groups(rows, varying)
    assert [g["settings"] for g in groups] == [{"optimizer.lr": "1e-3"}, {"optimizer.lr": "1e-2"}]
    assert groups[0]["runs"] == 3 and groups[0]["seeds"] == ["1", "2", "3"]
    assert groups[0]["stats"]["test/mse"] == pytest.approx((0.42, statistics.stdev([0.40, 0.42, 0.44])))
    assert groups[1]["seconds"] == pytest.approx((12.0, 1.0))
    write_seed_summary(str(tmp_path), groups, "val/loss")
    with open(tmp_path / SEEDS_CSV) as f:
        table = list(csv.DictReader(f))
    assert [r["optimizer.lr"] for r in table] == ["1e-3", "1e-2"]
    assert float(table[1]["test/mse mean"]) == pytest.approx(0.51) and float(table[0]["test/mse std"]) == pytest.approx(
        0.02
    )
    assert "| 1e-3 | 3 | 0.4200 ± 0.0200 | 12.0000 ± 1.0000 |" in (tmp_path / SUMMARY_MD).read_text()


def test_a_sweep_without_seeds_has_no_seed_summary(tmp_path):
    for job, lr in enumerate(("1e-3", "1e-2")):
        fake_run(tmp_path, job, [f"optimizer.lr={lr}"], {"test/mse": 0.4}, 1.0)
    rows = collect(str(tmp_path))
    assert seed_groups(rows, write_summary(str(tmp_path), rows, None)[0]) == []


@pytest.mark.slow
def test_seeds_on_the_command_line(tmp_path):
    result = command(
        "train.py",
        "seeds=2",
        "trainer.max_epochs=1",
        "logger=none",
        "callbacks=none",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    with open(tmp_path / "sweep" / SEEDS_CSV) as f:
        (row,) = list(csv.DictReader(f))
    assert row["runs"] == "2" and row["seeds"] == "42 43" and 0 < float(row["test/acc mean"]) <= 1
    assert "Mean ± std over seeds" in result.stdout
