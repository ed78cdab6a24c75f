"""Sweeps as a user runs them: a grid sweep with a failing run, its summary and HParams, continuing
it; Optuna searches that are interrupted and continued, shared by two processes, and pruned;
the submitit launchers; the learning-rate finder."""

from __future__ import annotations

import csv
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from tests.helpers import NO_VIEWS, QUIET, ROOT, cli, command, run_train
from tests.helpers.tensorboard import hparams_tab
from zoo.callbacks.logger import tensorboard_tag as tb

pytestmark = pytest.mark.slow  # every test here trains in subprocesses (several runs, DDP, sweeps)

TINY = ["trainer.max_epochs=1", "trainer.limit_train_batches=5", *QUIET, *NO_VIEWS]


def rows(sweep: Path) -> list[dict]:
    with open(sweep / "summary.csv") as f:
        return list(csv.DictReader(f))


def events(folder: Path) -> EventAccumulator:
    ea = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    ea.Reload()
    return ea


def job_dir(sweep: Path, number: int) -> Path:
    """A job's folder: its number, then what the sweep varies (``3_optimizer.lr=0.01``)."""
    return next(p for p in sweep.iterdir() if p.is_dir() and p.name.split("_", 1)[0] == str(number))


def hparams_content(ea: EventAccumulator) -> dict:
    return {tag: plugin_data_pb2.HParamsPluginData.FromString(c) for tag, c in ea.PluginTagToContent("hparams").items()}


def load_study(log_dir: Path, name: str = "digits_optuna"):
    import optuna

    db = log_dir / "searches" / name / "optuna.db"
    return optuna.load_study(study_name=name, storage=f"sqlite:///{db}")


def states(study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.trials:
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


# ---- grid sweeps ---------------------------------------------------------------------------------


def test_a_failing_run_is_listed_and_the_sweep_goes_on_then_continues(tmp_path):
    """Jobs sent through submitit (each in its own process, as on SLURM); the first one fails.
    (A failing job in the default in-process launcher: tests/test_ddp.py's multirun.)"""
    sweep = tmp_path / "sweep"
    command = ["train.py", "-m", "model.activation=nonexistent,tanh", *TINY, f"hydra.sweep.dir={sweep}"]
    r = cli(*command, "hydra/launcher=submitit_local")
    assert r.returncode == 1, r.stderr[-3000:]  # the sweep ran to its end, and says a run failed
    assert "error: 1 of 2 runs failed" in r.stderr and "Traceback" not in r.stderr
    assert "Sweep: 2 runs" in r.stdout

    table = rows(sweep)
    assert [(row["job"], row["status"], row["model.activation"]) for row in table] == [
        ("0", "failed", "nonexistent"),
        ("1", "finished", "tanh"),
    ]
    assert "unknown activation 'nonexistent'" in table[0]["error"] and table[0]["test/acc"] == ""
    for row in table[1:]:
        metrics = json.loads((sweep / row["folder"] / "metrics.json").read_text())
        assert float(row["test/acc"]) == pytest.approx(metrics["test/acc"])
        assert float(row["val/acc"]) == pytest.approx(metrics["val/acc"])
    assert [row["best"] for row in table] == ["", "*"]
    assert len(list((sweep / ".submitit").glob("*/*_log.out"))) == 2  # submitit ran each job in its own process
    md = (sweep / "summary.md").read_text()
    assert "| 0 | failed |" in md and "unknown activation" in md

    # HParams: each run has its session with the real final metrics; no run and not the sweep writes
    # the tab's columns: TensorBoard builds them from every run (tests/helpers/tensorboard.py).
    for row in table[1:]:
        ea = events(sweep / row["folder"])
        content = hparams_content(ea)
        assert "_hparams_/session_start_info" in content and "_hparams_/experiment" not in content
        start = content["_hparams_/session_start_info"].session_start_info
        assert start.hparams["model.activation"].string_value == row["model.activation"]
        assert ea.Scalars(tb("test/acc"))[-1].value == pytest.approx(float(row["test/acc"]))
        assert "hp_metric" not in ea.Tags()["scalars"]
    assert not list(sweep.glob("events.out.tfevents.*"))  # no empty run named after the sweep folder
    experiment, groups = hparams_tab(sweep)
    assert [g.name for g in groups] == [Path(table[1]["folder"]).name] == ["1_model.activation=tanh"]
    assert {m.name.tag for m in experiment.metric_infos} >= {
        tb("test/acc"),
        tb("test/loss"),
        tb("best/val/acc"),
        tb("best/val/loss"),
    }
    names = {h.name for h in experiment.hparam_infos}
    assert {"model.activation", "optimizer.lr", "choice/model"} <= names

    # The same command into the same folder continues the sweep: finished runs are skipped (here
    # with the joblib launcher: the failing run goes to a worker process, and fails there alike).
    before = json.loads((job_dir(sweep, 0) / "job.json").read_text())["finished_at"]
    again = cli(*command, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert again.returncode == 1, again.stderr[-3000:]
    assert again.stdout.count("finished in an earlier run of this sweep, skipped") == 1
    assert json.loads((job_dir(sweep, 0) / "job.json").read_text())["finished_at"] > before  # ran again
    assert [row["status"] for row in rows(sweep)] == ["failed", "finished"]


def test_a_grid_sweep_refuses_a_search_range_in_one_sentence(tmp_path):
    r = command("train.py", "-m", "optimizer.lr=interval(1e-4,1e-1)", f"hydra.sweep.dir={tmp_path / 's'}")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: optimizer.lr=interval(1e-4,1e-1) is a search range")


# ---- Optuna --------------------------------------------------------------------------------------


def search(log_dir: Path, *extra: str) -> list[str]:
    return ["train.py", "-m", "hparams_search=digits_optuna", f"paths.log_dir={log_dir}", *QUIET, *NO_VIEWS, *extra]


def test_optuna_search_interrupted_then_continued_is_one_study_of_four_trials(tmp_path):
    # Each step sleeps 50 ms, so trial 1 is still training when the Ctrl-C arrives on a fast machine.
    settings = [
        "trainer.max_epochs=5",
        "trainer.limit_train_batches=5",
        "model.dropout=interval(0.0, 0.3)",
        "+callbacks.sleepy._target_=tests.helpers.sleepy.SleepPerStep",
        "+callbacks.sleepy.seconds=0.05",
    ]
    folder = tmp_path / "searches" / "digits_optuna"
    proc = subprocess.Popen(
        [sys.executable, *search(tmp_path, "hydra.sweeper.n_trials=3", *settings)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 240
    while not any(folder.glob("1/checkpoints")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)  # Ctrl-C while trial 1 trains
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode != 0, out[-3000:]
    study = load_study(tmp_path)
    assert [t.state.name for t in study.trials[:2]] == ["COMPLETE", "FAIL"], out[-3000:]
    interrupted = study.trials[1]
    assert interrupted.user_attrs.get("interrupted") is True
    assert [t.state.name for t in study.trials[2:]] == ["WAITING"]  # queued to run again

    # The same command again (asking for 4 trials now) continues the study from its database.
    r = command(*search(tmp_path, "hydra.sweeper.n_trials=4", *settings))
    assert r.returncode == 0, r.stderr[-3000:]
    study = load_study(tmp_path)
    assert states(study) == {"COMPLETE": 4, "FAIL": 1}
    retry = study.trials[2]
    assert retry.params == interrupted.params and retry.user_attrs["retry_of"] == 1
    assert {"model.dropout", "optimizer.lr", "model.widths", "data.batch_size"} <= set(study.trials[0].params)
    assert all(0.0 <= t.params["model.dropout"] <= 0.3 for t in study.trials)  # the command line's range won
    for t in study.trials:  # trial N ran in folder N, with the sampled settings
        overrides = (job_dir(folder, t.number) / ".hydra" / "overrides.yaml").read_text()
        assert f"optimizer.lr={t.params['optimizer.lr']!r}" in overrides
    table = rows(folder)
    assert len(table) == 5 and [r_["status"] for r_ in table].count("finished") == 4
    assert table[1]["status"] in ("interrupted", "unfinished")
    best = next(r_ for r_ in table if r_["best"] == "*")
    assert int(best["job"]) == study.best_trial.number
    results = (folder / "optimization_results.yaml").read_text()
    assert f"best_trial: {study.best_trial.number}" in results

    # A study is one search: the same study with other settings is refused, not mixed in.
    other = command(
        *search(
            tmp_path,
            "hydra.sweeper.n_trials=6",
            "trainer.max_epochs=3",
            "trainer.limit_train_batches=5",
            "model.dropout=interval(0.0, 0.3)",
        ),
    )
    assert other.returncode == 2 and "Traceback" not in other.stderr
    assert "error: study digits_optuna" in other.stderr and "trainer.max_epochs=3" in other.stderr


def test_two_processes_share_one_study(tmp_path):
    def start(seed: int) -> subprocess.Popen:
        args = search(
            tmp_path,
            "hydra.sweeper.n_trials=4",
            "hydra/sweeper/sampler=random",
            f"hydra.sweeper.sampler.seed={seed}",
            *TINY,
        )
        return subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    procs = [start(1), start(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-2000:] + outs[1][-2000:]
    study = load_study(tmp_path)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == len(study.trials) and 4 <= len(done) <= 5  # both stop at 4 (two may start the 4th at once)
    workers = {t.user_attrs["worker"] for t in done}
    assert len(workers) == 2  # both processes ran trials of the one study
    folder = tmp_path / "searches" / "digits_optuna"
    assert all((job_dir(folder, t.number) / "metrics.json").is_file() for t in done)


def test_pruning_stops_a_bad_trial_and_records_it_as_pruned(tmp_path):
    # A grid of two learning rates; the threshold pruner gives up on a trial below 0.3 accuracy.
    r = command(
        *search(
            tmp_path,
            "hydra.sweeper.params=null",
            "optimizer.lr=choice(0.01,1e-7)",
            "hydra/sweeper/sampler=grid",
            "hydra/sweeper/pruner=threshold",
            "hydra.sweeper.pruner.lower=0.3",
            "hydra.sweeper.n_trials=10",
            "trainer.max_epochs=3",
        )
    )
    assert r.returncode == 0, r.stderr[-3000:]
    study = load_study(tmp_path)
    assert states(study) == {"COMPLETE": 1, "PRUNED": 1}  # the grid has 2 points: n_trials is capped
    pruned = next(t for t in study.trials if t.state.name == "PRUNED")
    complete = next(t for t in study.trials if t.state.name == "COMPLETE")
    assert pruned.params["optimizer.lr"] == 1e-7 and list(pruned.intermediate_values) == [0]
    assert pruned.intermediate_values[0] < 0.3
    assert list(complete.intermediate_values) == [0, 1, 2]  # every epoch reported
    table = {row["job"]: row for row in rows(tmp_path / "searches" / "digits_optuna")}
    assert (
        table[str(pruned.number)]["status"] == "pruned" and "pruned after epoch 0" in table[str(pruned.number)]["error"]
    )
    assert table[str(complete.number)]["status"] == "finished"


def test_search_space_syntax():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from zoo.errors import UserError
    from zoo.sweeps.optuna import SearchSpace

    space = SearchSpace(
        [
            "optimizer.lr=tag(log, interval(1e-4, 1e-1))",
            "model.dropout=interval(0, 0.5)",
            "model.depth=tag(int, interval(1, 4))",
            "data.batch_size=choice(32, 64)",
            "model=mlp,cnn",
            "model.widths=choice([64],[128,64])",
            "seed=range(1, 7, 2)",
            "trainer.max_epochs=3",
        ]
    )
    d = space.distributions
    assert d["optimizer.lr"] == FloatDistribution(1e-4, 1e-1, log=True)
    assert d["model.dropout"] == FloatDistribution(0.0, 0.5)
    assert d["model.depth"] == IntDistribution(1, 4)
    assert d["data.batch_size"] == CategoricalDistribution([32, 64])
    assert d["model"] == CategoricalDistribution(["mlp", "cnn"])
    assert d["model.widths"] == CategoricalDistribution(["[64]", "[128,64]"])
    assert d["seed"] == IntDistribution(1, 5, step=2)  # range excludes its stop, as in Hydra
    assert space.fixed == ["trainer.max_epochs=3"]
    assert space.overrides({"optimizer.lr": 0.00123, "model.widths": "[128,64]", "data.batch_size": 64}) == [
        "trainer.max_epochs=3",
        "optimizer.lr=0.00123",
        "model.widths=[128,64]",
        "data.batch_size=64",
    ]
    with pytest.raises(UserError, match="grid sampler needs choice"):
        space.grid()
    assert SearchSpace(["a=choice(1,2)", "b=range(0,3)"]).grid() == {"a": [1, 2], "b": [0, 1, 2]}
    with pytest.raises(UserError, match="log interval must start above 0"):
        SearchSpace(["a=tag(log, interval(0, 1))"])


def test_search_configs_compose():
    from zoo.run.config import compose_config

    for name in ("digits_optuna", "mnist_optuna"):
        cfg = compose_config([f"hparams_search={name}"])
        sweeper = cfg.hydra.sweeper
        assert sweeper._target_.endswith("ZooOptunaSweeper") and sweeper.study_name == name
        assert sweeper.sampler._target_ == "optuna.samplers.TPESampler"
        assert sweeper.pruner._target_ == "optuna.pruners.MedianPruner"
        assert "optimizer.lr" in sweeper.params and cfg.callbacks.optuna_pruning.monitor == "val/acc"
        assert cfg.hydra.sweep._get_node("dir")._value().endswith("/searches/${hydra.sweeper.study_name}")
    assert compose_config([]).hydra.sweeper._target_.endswith("ZooBasicSweeper")


# ---- launchers -----------------------------------------------------------------------------------


def test_slurm_launcher_settings_reach_sbatch(tmp_path):
    """No cluster here: a stand-in sbatch keeps the script submitit writes, then refuses the job."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(
        f"#!/bin/sh\ncp \"$1\" {tmp_path}/submitted.sh\necho 'sbatch: error: no cluster here' >&2\nexit 1\n"
    )
    sbatch.chmod(sbatch.stat().st_mode | stat.S_IEXEC)
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit looks for it before submitting
    (bin_dir / "srun").chmod(sbatch.stat().st_mode)
    r = cli(
        "train.py",
        "-m",
        "hydra/launcher=slurm",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.timeout_min=90",
        "hydra.launcher.mem_gb=64",
        "trainer=ddp",
        "trainer.devices=4",
        "trainer.num_nodes=2",
        "optimizer.lr=1e-3,1e-2",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        timeout=120,
        env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
    )
    assert r.returncode != 0
    script = (tmp_path / "submitted.sh").read_text()
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --time=90",
        "#SBATCH --mem=64GB",
        "#SBATCH --nodes=2",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --ntasks-per-node=4",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --array=0-1",
    ):
        assert line in script, (line, script)


# ---- learning-rate finder ------------------------------------------------------------------------


def test_lr_finder_picks_logs_and_uses_the_learning_rate(tmp_path):
    import torch

    out = tmp_path / "run"
    run_train(
        [
            "tuner.lr_find=true",
            "tuner.num_training=20",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=5",
            "trainer.log_every_n_steps=1",
        ],
        out,
    )
    ea = EventAccumulator(str(out), size_guidance={"scalars": 0, "images": 0})
    ea.Reload()
    found = ea.Scalars(tb("tuner/suggested_lr"))[-1].value
    assert tb("tuner/lr_find") in ea.Tags()["images"] and found != pytest.approx(1e-3)
    assert ea.Scalars(tb("lr/net"))[-1].value == pytest.approx(found)  # trained with it
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["config"]["optimizer"]["lr"] == pytest.approx(found)  # and recorded it
    assert not list(out.glob(".lr_find*"))  # the finder's temporary checkpoint is gone
