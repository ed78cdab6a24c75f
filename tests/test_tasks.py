"""The tasks: one base (zoo.tasks.base.Task) owns what they share, and each is built from the same
parts (data spec, network, optimizer and scheduler factories, hyper-parameters)."""

from __future__ import annotations

from functools import partial

import lightning as L
import pytest
import torch

from datamodules.spec import DataSpec
from zoo.errors import UserError
from zoo.nets.gan import GAN
from zoo.nets.mlp import MLP
from zoo.nets.rnn import LSTM
from zoo.run.tuning import find_lr
from zoo.tasks.base import Task
from zoo.tasks.registry import TASKS, build_task, task_class

IMAGE = DataSpec(name="digits", kind="image", shape=(1, 8, 8), num_classes=10)
TEXT = DataSpec(
    name="pydoc", kind="tokens", shape=(12,), task="language_model", vocab_size=3, vocabulary=("a", "b", "\n")
)
SERIES = DataSpec(
    name="sine",
    kind="series",
    shape=(24, 3),
    task="forecast",
    horizon=8,
    target_channels=2,
    channel_mean=(5.0, 1.0, 2.0),
    channel_std=(9.0, 3.0, 4.0),
)
ADAM = partial(torch.optim.Adam, lr=1e-3)


def build(name: str, spec: DataSpec, net: torch.nn.Module, scheduler: dict | None = None):
    return build_task(name, spec, net, ADAM, scheduler, {"config": {"paths": {"data_dir": "/data"}}})


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_is_a_task_and_marks_the_lightning_hooks_it_overrides(name):
    cls = task_class(name)
    assert issubclass(cls, Task)
    # A hook without @override would go unnoticed if Lightning renamed it: it would simply never run.
    for klass in cls.__mro__:
        if not klass.__module__.startswith("zoo."):
            continue
        for attr, value in vars(klass).items():
            if not attr.startswith("__") and hasattr(L.LightningModule, attr):
                assert getattr(value, "__override__", False), f"{klass.__name__}.{attr} lacks @override"


def test_the_tasks_take_what_they_need_from_the_data():
    classify = build("classify", IMAGE, MLP(IMAGE))
    assert classify.num_classes == 10 and classify.hparams["task"] == "classify"
    forecast = build("forecast", SERIES, MLP(SERIES))
    assert forecast.target_mean.tolist() == [1.0, 2.0] and forecast.target_std.tolist() == [3.0, 4.0]
    lm = build("language_model", TEXT, LSTM(TEXT, hidden=4, embedding=2))
    assert lm.vocabulary == ["a", "b", "\n"] and lm.context == 12
    gan = build("adversarial", IMAGE, GAN(IMAGE, latent_dim=4, widths=[8]))
    assert (gan.judge_dir, gan.data_name, gan.automatic_optimization) == ("/data", "digits", False)
    # What a plateau schedule watches unless the scheduler config says: what each task logs.
    assert [t.scheduler_monitor for t in (classify, forecast, lm, gan)] == ["val/loss"] * 3 + ["val/fid"]


def test_a_task_that_cannot_train_the_pairing_says_why():
    with pytest.raises(UserError, match=r"^data=digits has no vocabulary for a language model; use a text dataset"):
        build("language_model", IMAGE, MLP(IMAGE))
    with pytest.raises(
        UserError,
        match=r"^the adversarial task trains a generator and a discriminator, and "
        r"MLPClassifier is not a GAN; use model=gan or model=dcgan\.$",
    ):
        build("adversarial", IMAGE, MLP(IMAGE))


def test_the_optimizer_starts_from_the_learning_rate_the_finder_set():
    task = build("classify", IMAGE, MLP(IMAGE))
    assert task.configure_optimizers().param_groups[0]["lr"] == 1e-3
    task.lr = 0.05  # what tuner.lr_find=true does with its suggestion
    optimizer = task.configure_optimizers()
    assert optimizer.param_groups[0]["lr"] == 0.05
    assert optimizer.param_groups[0]["params"] == list(task.net.parameters())


def test_a_plateau_schedule_watches_the_configured_metric():
    plateau = partial(torch.optim.lr_scheduler.ReduceLROnPlateau, mode="max")
    task = build("classify", IMAGE, MLP(IMAGE), {"factory": plateau, "interval": "epoch", "monitor": "val/acc"})
    config = task.configure_optimizers()
    assert isinstance(config["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert (config["lr_scheduler"]["interval"], config["lr_scheduler"]["monitor"]) == ("epoch", "val/acc")


def test_only_a_task_with_one_optimizer_offers_a_learning_rate_to_the_finder():
    gan = build("adversarial", IMAGE, GAN(IMAGE, latent_dim=4, widths=[8]))
    with pytest.raises(
        UserError,
        match=r"^tuner.lr_find=true needs a task with one learning rate, and "
        r"AdversarialTask has none to set",
    ):
        find_lr(None, gan, None, None)
