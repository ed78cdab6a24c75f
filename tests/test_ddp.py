"""DDP with CPU processes (trainer=ddp_cpu): one folder per run in single runs and multiruns, the
run folder written once, and the same results as one process on the same global batch."""

from __future__ import annotations

import csv
import json
import subprocess

import pytest
import torch

from datamodules.base import BatchLoader
from tests.helpers import QUIET, cli, run_train
from tests.test_sweeps import job_dir

pytestmark = pytest.mark.slow  # every test here trains in subprocesses (several runs, DDP, sweeps)


def test_each_process_takes_its_part_of_every_batch():
    x = torch.arange(101)
    one = [b[0] for b in BatchLoader((x,), 10, shuffle=True, seed=1)]
    parts = [[b[0] for b in BatchLoader((x,), 5, shuffle=True, seed=1, rank=r, world_size=2)] for r in (0, 1)]
    assert (
        len(parts[0]) == len(parts[1]) == 10
    )  # the same number of batches (the last row, too few to share, is left out)
    for i, (a, b) in enumerate(zip(*parts)):
        assert not set(a.tolist()) & set(b.tolist())  # disjoint
        assert torch.equal(torch.cat([a, b]), one[i])  # together: the batch of one process with the global size
    assert len(set(torch.cat([torch.cat(p) for p in parts]).tolist())) == 100
    evals = [torch.cat([b[0] for b in BatchLoader((x,), 7, rank=r, world_size=2)]) for r in (0, 1)]
    assert torch.equal(torch.cat(evals), x)  # validation/test: contiguous parts covering the split once


def test_ddp_cpu_single_run_writes_one_folder_and_matches_one_process(tmp_path):
    logs = tmp_path / "logs"
    same = ["model.dropout=0", "trainer.max_epochs=2", *QUIET]
    r = cli("train.py", "trainer=ddp_cpu", "trainer.devices=2", "data.batch_size=32", *same, f"paths.log_dir={logs}")
    assert r.returncode == 0, r.stderr[-3000:]
    runs = list((logs / "runs").iterdir())
    assert len(runs) == 1, runs  # the second rank wrote into the first one's folder, and nothing else
    run = runs[0]
    ddp = json.loads((run / "metrics.json").read_text())
    assert r.stdout.count("Run folder:") == 1  # one report, from rank zero
    assert sorted(p.name for p in run.glob("*.log")) == ["train.log"]
    assert sorted(p.name for p in (run / ".hydra").iterdir()) == ["config.yaml", "hydra.yaml", "overrides.yaml"]
    assert len(list((run / "checkpoints").glob("best-*.ckpt"))) == 1
    assert ddp["best_checkpoint"].startswith(str(run / "checkpoints" / "best-"))  # tested on the best checkpoint
    pids = {p.name.split(".")[4] for p in run.glob("events.out.tfevents.*")}
    assert len(pids) == 1  # event files written by one process

    # One process with the global batch (2 x 32): the same batches, so (without dropout, whose
    # masks differ) the same training up to float rounding.
    one = run_train(["trainer=cpu", "data.batch_size=64", *same], tmp_path / "one")
    assert ddp["global_step"] == one["global_step"]
    for k in ("val/acc", "test/acc"):
        assert ddp[k] == pytest.approx(one[k], abs=0.01), k
    for k in ("val/loss", "test/loss"):
        assert ddp[k] == pytest.approx(one[k], rel=0.02), k


def test_ddp_cpu_in_a_multirun_one_folder_per_run_and_a_failure_isolated(tmp_path):
    sweep, logs = tmp_path / "sweep", tmp_path / "logs"
    # Job 0 diverges (in both processes, after they started), job 1 must still train with fresh ranks.
    r = cli(
        "train.py",
        "-m",
        "trainer=ddp_cpu",
        "trainer.devices=2",
        "optimizer=sgd",
        "optimizer.lr=1e12,0.1",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=5",
        *QUIET,
        f"hydra.sweep.dir={sweep}",
        f"paths.log_dir={logs}",
    )
    assert r.returncode == 1, r.stderr[-3000:]
    assert "error: 1 of 2 runs failed" in r.stderr
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == [
        "0_optimizer.lr=1000000000000.0",  # the value as Hydra writes a swept float
        "1_optimizer.lr=0.1",
    ]  # no stray folders
    assert not logs.exists()  # no rank ran a run of its own
    with open(sweep / "summary.csv") as f:
        table = list(csv.DictReader(f))
    assert [float(row["optimizer.lr"]) for row in table] == [1e12, 0.1]
    assert table[0]["status"] in ("failed", "diverged") and "diverged" in table[0]["error"]
    assert table[1]["status"] == "finished" and float(table[1]["test/acc"]) > 0.3
    metrics = json.loads((job_dir(sweep, 1) / "metrics.json").read_text())
    assert metrics["test/acc"] == pytest.approx(float(table[1]["test/acc"]))
    assert sorted(p.name for p in job_dir(sweep, 1).glob("*.log")) == ["train.log"]
    left = subprocess.run(["pgrep", "-f", str(sweep)], capture_output=True, text=True).stdout.split()
    assert not left  # every rank process ended with its job
