"""The hostile suite: input a careless or malicious user gives, each answered with one sentence that
names the value, file or folder and says what to do (exit status 2, no traceback), before training.

Most cases are checked in this process on the composed config (``check_overrides``: what
``python train.py <args>`` runs before Hydra starts the job); a few run the real commands.
"""

from __future__ import annotations

import json
import os
import shlex

import numpy as np
import pytest
from PIL import Image

from tests.helpers import QUIET, cli
from tests.helpers.formats import idx_bytes, write_mnist
from zoo.errors import UserError
from zoo.run.config import check_overrides

LONG = "x" * 300  # one name longer than any file system's 255 bytes

CONFIG_CASES = [
    (
        ["data.batch_size=1e9"],
        "data.batch_size must be a positive whole number, got the decimal number 1000000000.0; "
        "write it without a decimal point or exponent, e.g. data.batch_size=64.",
    ),
    (["data.batch_size=64.0"], "data.batch_size must be a positive whole number, got the decimal number 64.0"),
    (["data.batch_size=abc"], "data.batch_size must be a positive whole number, got 'abc'; try data.batch_size=64."),
    (["model=cnn", "model.hidden=0"], "model.hidden must be a positive whole number, got 0; try model.hidden=128."),
    (["model=lstm", "model.layers=2.5"], "model.layers must be a positive whole number, got 2.5; try model.layers=2."),
    (
        ["model=cnn", "model.channels=[]"],
        "model.channels is empty, so the network would have no such layer; give at "
        "least one size, e.g. model.channels=[32,64].",
    ),
    (
        ["model=cnn", "model.channels=[32,0]"],
        "model.channels must hold positive whole numbers (one per layer), got 0 "
        "in [32, 0]; try model.channels=[32,64].",
    ),
    (["model=resnet", "model.widths=[]"], "model.widths is empty, so the network would have no such layer"),
    (["model=resnet", "model.blocks=[2,0,2]"], "model.blocks must hold positive whole numbers (one per layer), got 0"),
    (
        ["optimizer=sgd", "optimizer.momentum=2"],
        "optimizer.momentum must be at least 0 and below 1, got 2; try optimizer.momentum=0.9.",
    ),
    (["optimizer=sgd", "optimizer.momentum=-0.5"], "optimizer.momentum must be at least 0 and below 1, got -0.5"),
    (["optimizer.betas=[0.9,1.5]"], "optimizer.betas must be two numbers of at least 0 and below 1, got [0.9, 1.5]"),
    (["optimizer.weight_decay=-1"], "optimizer.weight_decay must be 0 or more, got -1"),
    (
        ["data=image_folder", "data.root=/tmp", "data.num_workers=-1"],
        "data.num_workers must be a whole number of 0 or more, got -1",
    ),
    (
        ["callbacks.early_stopping.patience=2.0"],
        "callbacks.early_stopping.patience must be a whole number of 0 or more, got the decimal number 2.0",
    ),
    (
        ["+trainer.foo=1"],
        "trainer.foo is not an argument of lightning.Trainer; see "
        "https://lightning.ai/docs/pytorch/stable/common/trainer.html for its arguments.",
    ),
    (
        ["+trainer.max_epoch=3"],
        "trainer.max_epoch is not an argument of lightning.Trainer; did you mean trainer.max_epochs or",
    ),
    (
        ["callbacks.early_stoping.patience=3"],
        "'callbacks.early_stoping.patience' is not a config key; did you mean callbacks.early_stopping.patience?",
    ),
    (["callbacks.early_stopping.patiense=3"], "did you mean callbacks.early_stopping.patience?"),
    (
        ["hparams_search=digits_optuna"],
        "hparams_search=digits_optuna runs a search of many runs, which needs -m; run: "
        "python train.py -m hparams_search=digits_optuna",
    ),
    (
        ["data=image_folder", "data.root=/tmp/my", "images"],
        "'images' is not a key=value override; if it is the rest of a value with a space in it, quote the whole "
        "override: 'data.root=/tmp/my images'.",
    ),
]


@pytest.mark.parametrize("args, message", CONFIG_CASES, ids=[" ".join(a) for a, _ in CONFIG_CASES])
def test_config_values_get_one_sentence(args, message, tmp_path):
    with pytest.raises(UserError) as e:
        check_overrides([*args, f"hydra.run.dir={tmp_path / 'run'}"])
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "args",
    [
        ["model=cnn"],
        ["model=lstm", "data=shakespeare"],
        ["optimizer=sgd"],
        ["model=gan"],
        ["model=mlp", "model.widths=[]"],
        ["data.batch_size=1000000"],
        ["model=resnet", "model.blocks=[1,2,1]"],
        ["model=mlp", "model.widths=64", "model.depth=3"],
        ["trainer.max_steps=5"],
        ["trainer.max_time=00:00:05:00", "trainer.max_epochs=-1"],
        ["trainer.val_check_interval=0.25", "trainer.limit_train_batches=10"],
        ["model=cnn", "model.channels=[8]"],
    ],
)
def test_sound_configs_pass(args, tmp_path):
    check_overrides([*args, f"hydra.run.dir={tmp_path / 'run'}"])


def test_a_search_with_multirun_passes(tmp_path):
    check_overrides(["hparams_search=digits_optuna", f"hydra.sweep.dir={tmp_path / 'sweep'}"], multirun=True)


def test_run_folder_under_a_file_or_with_a_long_name(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(UserError, match=f"cannot use hydra.run.dir={afile}/run: {afile} is a file, not a folder; "):
        check_overrides([f"hydra.run.dir={afile}/run"])
    with pytest.raises(
        UserError,
        match=r"cannot use hydra.sweep.dir=.*: the name x{24}\.\.\. is 300 bytes, longer "
        r"than the 255 the file system allows; use a shorter name\.",
    ):
        check_overrides(["model=mlp,cnn", f"hydra.sweep.dir={tmp_path / LONG}"], multirun=True)
    assert os.listdir(tmp_path) == ["afile"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to any folder")
def test_run_folder_in_a_folder_without_write_permission(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(UserError, match=f"{locked} is not writable; choose a folder you can write to"):
            check_overrides([f"hydra.run.dir={locked}/run"])
    finally:
        locked.chmod(0o700)


def test_eval_and_generate_options(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(UserError, match=r"^batch_size must be a positive whole number, got -1; try batch_size=256\.$"):
        check_overrides(["ckpt_path=x", "batch_size=-1"], "eval")
    for command in ("eval", "generate"):
        with pytest.raises(UserError, match=f"cannot use out={afile}/m.json: {afile} is a file, not a folder"):
            check_overrides(["ckpt_path=x", f"out={afile}/m.json"], command)
        with pytest.raises(UserError, match=f"cannot use out={tmp_path}: it is a folder, not a file; give a file name"):
            check_overrides(["ckpt_path=x", f"out={tmp_path}"], command)
    with pytest.raises(UserError, match=r"length=100000000 characters would take hours .* give at most length=100000"):
        check_overrides(["ckpt_path=x", "length=100000000"], "generate")
    check_overrides(["ckpt_path=x", f"out={tmp_path}/new/samples.png", "length=2000"], "generate")


def test_more_cpu_processes_than_cores_are_warned_about(capsys, tmp_path):
    cores = len(os.sched_getaffinity(0))
    check_overrides(["trainer.accelerator=cpu", f"trainer.devices={cores + 2}", f"hydra.run.dir={tmp_path}"])
    err = capsys.readouterr().err
    assert err == (
        f"warning: trainer.devices={cores + 2} starts {cores + 2} training processes on a CPU with {cores} "
        f"core(s); they share the cores and run slower than trainer.devices=1.\n"
    )
    check_overrides(["trainer.accelerator=cpu", "trainer.devices=1", f"hydra.run.dir={tmp_path}"])
    assert capsys.readouterr().err == ""


# The real commands: one line on stderr, exit 2, no traceback, nothing written, and torch not imported
# where the mistake is in the command line.
COMMANDS = [
    (["train.py", "data.batch_size=1e9"], "data.batch_size must be a positive whole number"),
    (["train.py", "+trainer.foo=1"], "trainer.foo is not an argument of lightning.Trainer"),
    (["train.py", "hydra.run.dir={tmp}/afile/run"], "cannot use hydra.run.dir={tmp}/afile/run: {tmp}/afile is a file"),
    (["eval.py", "ckpt_path=x.ckpt", "batch_size=-1"], "batch_size must be a positive whole number, got -1"),
    (["generate.py", "ckpt_path=x.ckpt", "out={tmp}/afile/samples.png"], "cannot use out={tmp}/afile/samples.png"),
    (["predict.py", "ckpt_path=x.ckpt", "input={tmp}", "top_k=0"], "top_k must be a positive whole number, got 0"),
    (["predict.py", "ckpt_path=x.ckpt", "out={tmp}/afile"], "out={tmp}/afile is a file; give a folder"),
    (["export.py", "ckpt_path=x.ckpt", "format=tflite"], "format must be one of onnx, torchscript, pt2, got 'tflite'"),
    (["export.py", "ckpt_path=x.ckpt", "out={tmp}/afile"], "out={tmp}/afile is a file; give a folder"),
    (["serve.py", "ckpt_path=x.ckpt", "max_request_mb=0"], "max_request_mb must be a positive whole number, got 0"),
    (["benchmarks/bench_train.py", "--rounds", "0"], "--rounds must be 1 or more, got 0; try --rounds 3."),
    (["benchmarks/bench_predict.py", "--rounds", "0"], "--rounds must be 1 or more, got 0; try --rounds 5."),
    (
        ["benchmarks/bench_train.py", "--set", "optimizer.lr=abc"],
        "--set optimizer.lr=abc: optimizer.lr must be a positive number, got 'abc'; try optimizer.lr=1e-3.",
    ),
]


@pytest.mark.parametrize("args, message", COMMANDS, ids=[" ".join(a) for a, _ in COMMANDS])
def test_commands_answer_in_one_sentence(args, message, tmp_path):
    (tmp_path / "afile").write_text("x")
    args = [a.format(tmp=tmp_path) for a in args]
    r = cli(
        "-X",
        "importtime",
        *args,
        *(
            [f"hydra.run.dir={tmp_path}/run"]
            if args[0] == "train.py" and not any(a.startswith("hydra.run.dir") for a in args)
            else []
        ),
        timeout=60,
    )
    errors = [line for line in r.stderr.splitlines() if not line.startswith("import time:")]
    assert r.returncode == 2 and len(errors) == 1, r.stderr[-2000:]
    assert errors[0].startswith(f"error: {message.format(tmp=tmp_path)}"), errors[0]
    imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert "torch" not in imported and "lightning" not in imported
    assert sorted(os.listdir(tmp_path)) == ["afile"]


@pytest.mark.slow  # the benchmark imports torch to ask for a GPU: ~15 s on a busy machine
def test_bench_on_a_gpu_that_is_not_there():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    r = cli("benchmarks/bench_train.py", "--device", "cuda", timeout=120)
    assert r.returncode == 2 and r.stderr.splitlines() == [
        "error: --device cuda needs a GPU that torch can use, and there is none here; leave --device out to measure "
        "on the CPU."
    ], r.stderr[-2000:]


# Files whose sizes agree with their headers but whose contents are not MNIST.
def _mnist_with(tmp_path, name: str, array: np.ndarray):
    from datamodules.images import MNISTData

    raw = write_mnist(tmp_path)
    (raw / name).write_bytes(idx_bytes(array))
    dm = MNISTData(data_dir=str(tmp_path), download=False)
    dm.prepare_data()
    return dm, raw


def test_idx_labels_above_nine(tmp_path):
    labels = np.zeros(96, np.uint8)
    labels[7] = 12
    dm, raw = _mnist_with(tmp_path, "train-labels-idx1-ubyte", labels)
    with pytest.raises(
        UserError,
        match=f"^the labels in {raw} hold 12 \\(at position 7\\), but the dataset has 10 "
        f"classes \\(0-9\\); the files are not this dataset: delete that folder",
    ):
        dm.setup("fit")


def test_idx_fewer_labels_than_images(tmp_path):
    dm, raw = _mnist_with(tmp_path, "t10k-labels-idx1-ubyte", np.zeros(40, np.uint8))
    with pytest.raises(
        UserError,
        match=f"^{raw}/t10k-labels-idx1-ubyte holds 40 labels for the 48 images of "
        f"t10k-images-idx3-ubyte; delete that folder",
    ):
        dm.setup("fit")


def test_idx_images_of_another_size(tmp_path):
    dm, raw = _mnist_with(tmp_path, "train-images-idx3-ubyte", np.zeros((96, 10, 10), np.uint8))
    with pytest.raises(
        UserError,
        match=f"^{raw}/train-images-idx3-ubyte holds images of size 10 x 10, not mnist's 28 x 28; delete that folder",
    ):
        dm.setup("fit")


def _folder_with_a_bad_file(root, bad: bytes):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3)).astype(np.uint8)).save(root / name / f"{i}.png")
    (root / "b" / "bad.png").write_bytes(bad)
    return root / "b" / "bad.png"


def _whole_png() -> bytes:
    import io

    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3)).astype(np.uint8)).save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize(
    "bad", [b"this is a text file, not a picture", _whole_png()[:300]], ids=["not an image", "truncated"]
)
def test_image_folder_file_that_is_not_a_whole_image(bad, tmp_path):
    import train
    from zoo.run.config import compose_run

    path = _folder_with_a_bad_file(tmp_path / "images", bad)
    cfg = compose_run(
        [
            *QUIET,
            "data=image_folder",
            f"data.root={tmp_path / 'images'}",
            "data.image_size=8",
            "data.num_workers=0",
            "data.batch_size=32",
            "data.val_size=0.2",
            "data.test_size=0.2",
            "trainer.max_epochs=1",
            "test=false",
        ],
        str(tmp_path / "run"),
    )
    with pytest.raises(
        UserError,
        match=f"^{path} under data.root cannot be read as an image \\(.+\\); delete it or "
        f"replace it with a whole image file, then run again\\.$",
    ):
        train.train(cfg)


@pytest.mark.slow
def test_image_folder_bad_file_read_by_worker_processes(tmp_path):
    """With DataLoader workers (the default) the file is named too, and the command exits 2."""
    path = _folder_with_a_bad_file(tmp_path / "images", _whole_png()[:300])
    r = cli(
        "train.py",
        *QUIET,
        "data=image_folder",
        f"data.root={tmp_path / 'images'}",
        "data.image_size=8",
        "data.num_workers=2",
        "data.val_size=0.2",
        "data.test_size=0.2",
        "trainer.max_epochs=1",
        f"hydra.run.dir={tmp_path / 'run'}",
        timeout=300,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert r.stderr.strip().splitlines()[-1].startswith(f"error: {path} under data.root cannot be read as an image")


def test_monitor_the_task_does_not_log_is_refused_before_training(tmp_path):
    import train
    from zoo.run.config import compose_run

    cfg = compose_run(
        [*QUIET, "data=sine", "model=mlp", "callbacks.checkpoint.monitor=val/acc", "trainer.max_epochs=1"],
        str(tmp_path / "run"),
    )
    with pytest.raises(
        UserError,
        match=r"^callbacks.checkpoint.monitor=val/acc is not a metric the forecast task "
        r"logs; watch one of val/loss, val/mse, val/mae, val/mse_orig, val/mae_orig\.$",
    ):
        train.train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.parametrize(
    "args, task",
    [(["data=digits", "model=mlp"], "ClassificationTask"), (["data=sine", "model=linear"], "ForecastTask")],
)
def test_published_metrics_are_the_logged_ones(args, task, tmp_path):
    """What a task publishes as watchable is what it logs (else check_monitors would refuse a good monitor)."""
    from tests.helpers import run_train
    from zoo.tasks.registry import task_class

    run_train([*args, "trainer.max_epochs=1", "trainer.limit_train_batches=2", "test=false"], tmp_path / "run")
    cls = task_class({"ClassificationTask": "classify", "ForecastTask": "forecast"}[task])
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert {k for k in metrics if k.startswith("val/")} == {m for m in cls.logged_metrics if m.startswith("val/")}


def test_quoted_hint_is_a_shell_word():
    """The hint for a value split at a space is one shell word that gives back the whole override."""
    with pytest.raises(UserError) as e:
        check_overrides(["data=image_folder", "data.root=/tmp/it's", "mine"])
    hint = str(e.value).split("quote the whole override: ", 1)[1].rstrip(".")
    assert shlex.split(hint) == ["data.root=/tmp/it's mine"]


@pytest.mark.parametrize(
    "code, sentence",
    [
        (
            28,
            "cannot use /data/out/metrics.json: the disk is full; free some space or choose a folder on another disk.",
        ),
        (
            13,
            "cannot use /data/out/metrics.json: permission is denied; choose a folder you can write to, or change its "
            "permissions.",
        ),
        (
            30,
            "cannot use /data/out/metrics.json: it is on a read-only file system; choose a folder on a writable disk.",
        ),
    ],
)
def test_an_os_error_on_a_named_path_is_one_sentence(code, sentence, capsys):
    """What no check before the call can decide (a disk filling up mid-run) is mapped by its errno."""
    from zoo.run.config import user_errors

    with pytest.raises(SystemExit) as e, user_errors():
        raise OSError(code, os.strerror(code), "/data/out/metrics.json")
    assert e.value.code == 2 and capsys.readouterr().err == f"error: {sentence}\n"


def test_an_os_error_without_a_path_stays_a_traceback():
    """An OSError that names no path is not the user's input: it is left for a traceback to show."""
    from zoo.run.config import user_errors

    with pytest.raises(OSError), user_errors():
        raise OSError(28, "No space left on device")


# Every number a conf/ choice has, given values no run can use: a sentence naming the key, or one of
# these, which mean something (0: never / none / off, -1: all or the last one) and run (the short
# runs of test_the_accepted_hostile_values_run).
HOSTILE_VALUES = [0, -1, float("nan"), float("inf"), 1e30, 2**63, "abc"]
ACCEPTED = {
    "callbacks.checkpoint.save_top_k": {0, -1},  # no best checkpoint / every epoch's
    "callbacks.diagnostics.every_n_steps": {0},  # never: the key's own "off"
    "callbacks.gradient_norms.every_n_steps": {0},
    "callbacks.signals.every_n_steps": {0},
    "callbacks.histograms.every_n_steps": {0},
    "callbacks.histograms.every_n_epochs": {0},
    "callbacks.forecast_plot.every_n_epochs": {0},
    "callbacks.generated_text.every_n_epochs": {0},
    "callbacks.samples.every_n_epochs": {0},
    "callbacks.early_stopping.min_delta": {0},
    "callbacks.early_stopping.patience": {0},
    "callbacks.forecast_plot.channel": {0, -1},  # the first / the last channel
    "callbacks.generated_text.seed": {0},
    "callbacks.samples.seed": {0},
    "callbacks.generated_text.temperature": {0},  # always the most likely character
    "callbacks.model_summary.max_depth": {0, -1},  # no summary / every layer
    "callbacks.progress_bar.refresh_rate": {0},  # no bar
    "data.label_noise": {0},
    "data.mean": {0, -1},
    "data.noise": {0},
    "data.num_workers": {0},  # read in the main process
    "data.random_crop": {0},
    "model.dropout": {0},
    "model.gp_weight": {0},
    "model.label_smoothing": {0},
    "optimizer.alpha": {0},
    "optimizer.lr_decay": {0},
    "optimizer.momentum": {0},
    "optimizer.weight_decay": {0},
    "scheduler.factory.min_lr_ratio": {0},
    "scheduler.factory.patience": {0},
    "scheduler.factory.warmup": {0},
    "seed": {0},
    "trainer.devices": {-1},  # every device
    "trainer.gradient_clip_val": {0},  # no clipping
    "trainer.max_steps": {-1},  # no step budget (the epochs are)
    "trainer.num_sanity_val_steps": {0, -1},
    "trainer.overfit_batches": {0},
    "data.split_seed": {0},
    "model.weight_decay": {0},
    "model.bias_decay": {0},
    "model.implicit_decay": {0},
    "data.time_shift": {0},
    "data.freq_masks": {0},
    "data.time_masks": {0},
    "data.silence_share": {0},
    "data.unknown_share": {0},
    "model.ema": {0},
}


def _numeric_keys(node, prefix=""):
    from omegaconf import DictConfig, OmegaConf

    for key in node:
        if prefix == "" and key in ("hydra", "paths"):
            continue
        if OmegaConf.is_missing(node, key) or OmegaConf.is_interpolation(node, key):
            continue
        value, name = node[key], f"{prefix}{key}"
        if isinstance(value, DictConfig):
            yield from _numeric_keys(value, name + ".")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield name


@pytest.mark.slow  # composes every choice of conf/ (~40) and checks ~750 configs: 1-4 minutes
def test_every_number_of_every_choice_gets_a_sentence_for_a_hostile_value():
    from omegaconf import OmegaConf

    from zoo.run.config import check_config, compose_config, group_choices

    needs = {"csv": ["data.path=/tmp/x.csv"], "text_file": ["data.path=/tmp/x.txt"], "image_folder": ["data.root=/tmp"]}
    configs = {}
    for group in ("data", "model", "optimizer", "scheduler", "trainer", "callbacks", "experiment"):
        for choice in group_choices(group):
            cfg = compose_config([f"{group}={choice}", *(needs.get(choice, []) if group == "data" else [])])
            for key in _numeric_keys(cfg):
                configs.setdefault(key, cfg)
    assert len(configs) > 90  # every numeric key of every choice
    accepted, unnamed = {}, []
    for key, cfg in configs.items():
        original = OmegaConf.select(cfg, key)
        for value in HOSTILE_VALUES:
            OmegaConf.update(cfg, key, value, force_add=True)
            try:
                check_config(cfg)
            except UserError as e:
                if key not in str(e) or "\n" in str(e):
                    unnamed.append((key, value, str(e)))
            else:
                accepted.setdefault(key, set()).add(value)
        OmegaConf.update(cfg, key, original)
    assert not unnamed, unnamed[:5]
    surprising = {k: v - ACCEPTED.get(k, set()) for k, v in accepted.items() if v - ACCEPTED.get(k, set())}
    assert not surprising, surprising


@pytest.mark.slow  # short runs
@pytest.mark.parametrize(
    "args",
    [
        ["callbacks.checkpoint.save_top_k=0", "callbacks.early_stopping.patience=0", "trainer.num_sanity_val_steps=-1"],
        ["callbacks.diagnostics.every_n_steps=0", "callbacks.signals.every_n_steps=0", "seed=0"],
        [
            "callbacks.histograms.every_n_epochs=0",
            "callbacks.model_summary.max_depth=-1",
            "trainer.gradient_clip_val=0",
        ],
        ["optimizer=sgd_plain", "optimizer.momentum=0", "optimizer.weight_decay=0", "model.dropout=0"],
        ["data=sine", "model=mlp", "callbacks.forecast_plot.channel=-1", "data.noise=0"],
    ],
    ids=lambda a: " ".join(a),
)
def test_the_accepted_hostile_values_run(args, tmp_path):
    from tests.helpers import run_train

    summary = run_train(
        [*args, "trainer.max_epochs=1", "+trainer.limit_train_batches=3", "+trainer.limit_val_batches=2", "test=false"],
        tmp_path / "run",
        quiet=not any(a.startswith("callbacks.model_summary.") for a in args),  # quiet turns the summary off
    )
    assert summary["status"] == "finished"


@pytest.mark.parametrize(
    "args, command, message",
    [
        (["ckpt_path=x", "seed=1e30"], "generate", "seed must be a whole number at least 0 and at most 4,294,967,295"),
        (["ckpt_path=x", "seed=-1"], "generate", "seed must be a whole number at least 0"),
        (["ckpt_path=x", "num_samples=9999999999"], "generate", "num_samples must be a whole number"),
        (["hparams_search=digits_optuna", "hydra.sweeper.n_trials=0"], "train", "hydra.sweeper.n_trials must be"),
        (["hparams_search=digits_optuna", "hydra.sweeper.n_jobs=-1"], "train", "hydra.sweeper.n_jobs must be"),
    ],
)
def test_generate_options_and_sweep_settings_get_one_sentence(args, command, message, tmp_path):
    with pytest.raises(UserError, match=message):
        check_overrides([*args, f"hydra.sweep.dir={tmp_path / 'sweep'}"], command, multirun=command == "train")
