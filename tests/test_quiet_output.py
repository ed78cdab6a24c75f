"""Quiet output (issue 26): what eval.py, generate.py and a normal run print is about the user's work:
no advertisement, no library deprecation warning, no line about Lightning's internals, and each
command's --help lists its own options."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from tests.helpers import cli
from zoo.run.config import CONF_DIR, _config_groups


@pytest.mark.parametrize("command", ["eval", "generate"])
def test_every_command_s_help_lists_its_own_options_and_not_train_s_groups(command):
    r = cli(f"{command}.py", "--help", timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    own = [k for k in OmegaConf.load(f"{CONF_DIR}/{command}.yaml") if k not in ("defaults", "hydra")]
    listed = [line.split(":")[0] for line in r.stdout.splitlines() if ": " in line and not line.startswith(" ")]
    assert [k for k in own if k not in listed] == [], r.stdout
    groups = [g for g in _config_groups() if not g.startswith("hydra")]
    assert [g for g in groups if f"\n{g}: " in r.stdout] == [], r.stdout
    assert "powered by Hydra" not in r.stdout and r.stdout.startswith(f"{command}.py: ")


@pytest.mark.slow
def test_a_run_s_console_is_its_own_progress_summary_and_results(tmp_path):
    # A normal run, as a user starts it (default callbacks: progress bar and model summary on),
    # with several batches per Lightning step: its whole console output holds none of Lightning's
    # or the libraries' noise, a summary of the network without its metric modules or a FLOPs
    # count, and a progress bar that reaches the end of every epoch.
    out = tmp_path / "run"
    r = cli(
        "train.py",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=12",
        "steps_per_execution=5",
        "data.batch_size=64",
        f"hydra.run.dir={out}",
        env={"COLUMNS": "200"},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    console = r.stdout + r.stderr
    for noise in (
        "litlogger",
        "Tip:",
        "Trainer already configured",
        "FLOPs",
        "Flops",
        "Warning",
        "deprecated",
        "logging interval",  # Lightning's advice for epochs shorter than log_every_n_steps (12 < 50 here)
        "MulticlassAccuracy",
        "MulticlassF1Score",
    ):
        assert noise not in console, (noise, console[-4000:])
    assert "MLPClassifier" in console and "Trainable params" in console
    assert "12/12" in console and "Epoch 1/1" in console, console[-4000:]
