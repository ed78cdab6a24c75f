"""The commands a user types: the default run end to end, --help, eval.py, and bad input answered
with one sentence, exit status 2 and no traceback (config mistakes before torch is imported)."""

from __future__ import annotations

import json
import socket
import time

import pytest
import torch

from datamodules.spec import DataSpec
from tests.helpers import cli, command, run_train
from zoo.errors import UserError
from zoo.run.config import _config_groups, group_choices
from zoo.tasks.registry import build_net


def test_a_later_run_in_the_same_process_times_its_first_step_from_its_own_start(tmp_path):
    """Runs after the process's first (a multirun's jobs in Hydra's basic launcher, results.py)
    count first_step_s from their own start, not from the command that began the process."""
    short = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "test=false"]
    run_train(short, tmp_path / "first")
    started = time.perf_counter()
    second = run_train(short, tmp_path / "second")
    assert 0 < second["first_step_s"] < time.perf_counter() - started, second["first_step_s"]


@pytest.mark.slow
def test_default_run_end_to_end_then_eval(tmp_path):
    out = tmp_path / "run"
    started = time.time()
    r = cli("train.py", "trainer.max_epochs=3", f"hydra.run.dir={out}")
    wall = time.time() - started
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"tensorboard --logdir {out}" in r.stdout and "test/acc" in r.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"test/acc", "test/loss", "val/loss", "val/acc"} <= set(metrics) and metrics["test/acc"] > 0.8
    assert 0.5 < metrics["first_step_s"] < wall  # from the command: interpreter, imports, data, model
    for path in (".hydra/config.yaml", ".hydra/overrides.yaml", "checkpoints/last.ckpt", "train.log"):
        assert (out / path).is_file(), path
    assert len(list(out.glob("events.out.tfevents.*"))) == 1  # one events file, in the run folder itself

    e = cli("eval.py", f"ckpt_path={metrics['best_checkpoint']}", f"out={tmp_path / 'eval.json'}")
    assert e.returncode == 0, e.stderr[-3000:]
    again = json.loads((tmp_path / "eval.json").read_text())
    assert again["test/acc"] == pytest.approx(metrics["test/acc"]) and f"{metrics['test/acc']:.4f}" in e.stdout


def test_help_lists_every_group_and_its_choices():
    r = cli("train.py", "--help", timeout=30)
    assert r.returncode == 0
    listed = {
        line.split(":")[0]: set(line.split(":")[1].replace(" ", "").split(","))
        for line in r.stdout.splitlines()
        if ": " in line and "," in line and not line.startswith(" ")
    }
    expected = {
        "data": {"cifar10", "digits", "fashion_mnist", "mnist"},
        "model": {"cnn", "mlp", "resnet"},
        "optimizer": {"adagrad", "adam", "adamw", "rmsprop", "sgd"},
        "scheduler": {"cosine", "none", "onecycle", "plateau", "step"},
        "trainer": {"cpu", "default", "gpu"},
        "callbacks": {"default", "none"},
        "debug": {"fdr", "limit", "overfit", "profiler"},
        "logger": {"csv", "many", "none", "tensorboard"},
        "experiment": {"cifar10_resnet", "digits_mlp", "mnist_cnn", "bench_mlp_mnist"},
    }
    for group, choices in expected.items():
        assert choices <= listed.get(group, set()), (group, listed.get(group))


def hydra_own_help(command: str, *args: str) -> str:
    """What Hydra's own --help machinery prints for conf/<command>.yaml (the slow path train.py skips)."""
    import contextlib
    import io

    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path, get_args_parser
    from hydra.core.global_hydra import GlobalHydra

    from zoo.run.config import CONF_DIR

    parser = get_args_parser()
    GlobalHydra.instance().clear()
    try:
        hydra = Hydra.create_main_hydra2(task_name=command, config_search_path=create_config_search_path(CONF_DIR))
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            hydra.app_help(config_name=command, args_parser=parser, args=parser.parse_args([*args, "--help"]))
    finally:
        GlobalHydra.instance().clear()
    # Hydra lists every file of a group; train.py leaves out the bases its choices share (conf/data/_ett.yaml)
    lines = []
    for line in out.getvalue().split("\n"):
        group, sep, options = line.partition(": ")
        if sep and group in _config_groups():
            line = f"{group}: {', '.join(o for o in options.split(', ') if not o.startswith('_'))}"
        lines.append(line)
    return "\n".join(lines)


@pytest.mark.parametrize(
    "command, args",
    [
        ("train", ()),
        ("train", ("model=cnn", "data=mnist", "--resolve")),
        ("eval", ()),
        ("generate", ()),
        ("predict", ()),
        ("export", ()),
        ("serve", ()),
    ],
)
@pytest.mark.slow  # trains or starts processes: seconds each (the fast subset stays under 2 minutes)
def test_help_is_hydras_help_text_without_torch(command, args):
    r = cli("-X", "importtime", f"{command}.py", *args, "--help", timeout=30)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == hydra_own_help(command, *args)
    imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert "torch" not in imported and "lightning" not in imported


def test_help_with_a_bad_override_gets_one_sentence():
    r = cli("train.py", "model=mamba", "--help", timeout=30)
    assert r.returncode == 2 and r.stderr.startswith("error: 'mamba' is not a choice for model") and not r.stdout


BAD = [
    (
        ["model=mamba"],
        f"'mamba' is not a choice for model; choose one of: {', '.join(group_choices('model'))}.",
    ),
    (["data=imagenet"], f"'imagenet' is not a choice for data; choose one of: {', '.join(group_choices('data'))}."),
    (["trainer.max_epoch=3"], "'trainer.max_epoch' is not a config key; did you mean trainer.max_epochs?"),
    (["optimizer.lr=-0.1"], "optimizer.lr must be a positive number, got -0.1; try optimizer.lr=1e-3."),
    (["optimizer.lr=0"], "optimizer.lr must be a positive number, got 0"),
    (["data.batch_size=0"], "data.batch_size must be a positive whole number, got 0"),
    (["data.batch_size=-5"], "data.batch_size must be a positive whole number, got -5"),
    (["trainer.max_epochs=0"], "trainer.max_epochs must be a positive whole number, got 0"),
    (["modle=cnn"], "'modle' is neither a config group nor a key; did you mean model?"),
    (["-m", "model=mlp,cnnn"], "'cnnn' is not a choice for model"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_config_mistakes_get_one_sentence_before_torch(args, message, tmp_path):
    r = cli("-X", "importtime", "train.py", *args, f"hydra.run.dir={tmp_path}", timeout=30)
    assert r.returncode == 2
    errors = [line for line in r.stderr.splitlines() if not line.startswith("import time:")]
    assert errors == [errors[0]] and errors[0].startswith("error: ") and message in errors[0], r.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert "torch" not in imported and "lightning" not in imported
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.slow
def test_dataset_missing_offline(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = command(
        "train.py",
        "data=mnist",
        f"paths.data_dir={tmp_path / 'data'}",
        f"data.mirror=http://127.0.0.1:{port}/",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("error: mnist is not in ") and str(tmp_path / "data" / "MNIST" / "raw") in line
    assert "use data=digits" in line


@pytest.mark.slow
def test_eval_of_a_file_that_is_not_a_checkpoint(tmp_path):
    bogus = tmp_path / "x.ckpt"
    bogus.write_bytes(b"not a checkpoint at all")
    r = command("eval.py", f"ckpt_path={bogus}")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(f"error: {bogus} is not a readable checkpoint")


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_gpu_trainer_without_a_gpu(tmp_path):
    r = command("train.py", "trainer=gpu", f"hydra.run.dir={tmp_path}")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "error: the trainer cannot start" in r.stderr and "trainer=cpu runs anywhere" in r.stderr


def test_a_model_that_cannot_take_the_data_names_both_sides():
    from functools import partial

    from zoo.nets.resnet import ResNet

    spec = DataSpec(name="sine", kind="series", shape=(96, 3))
    with pytest.raises(
        UserError, match=r"^model=resnet cannot take data=sine: it needs images, and sine yields numeric series"
    ):
        build_net(partial(ResNet, dropout=0.1), spec, "resnet", "sine")


@pytest.mark.parametrize("debug", ["fdr", "overfit", "profiler", "limit"])
def test_debug_modes(debug, tmp_path):
    extra = ["trainer.max_epochs=2"] if debug == "overfit" else []
    metrics = run_train([f"debug={debug}", *extra], tmp_path / "run")
    assert "test/acc" in metrics
    if debug == "fdr":
        assert metrics["global_step"] == 1
    if debug == "profiler":
        assert list((tmp_path / "run").glob("*profile*"))
