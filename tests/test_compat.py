"""zoo/compat.py: each private API of another library the project relies on still exists, with the
signature and behaviour it is used with. A failure here after an upgrade names the library, the
private name and the zoo.compat function to update; nothing else in the project needs looking at."""

from __future__ import annotations

import importlib
import inspect
import os
import socket
import sys

import lightning as L
import optuna
import pytest
import torch
from hydra.core.utils import JobReturn, JobStatus
from lightning.fabric.plugins.environments import LightningEnvironment
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy

from zoo import compat


def require(owner, name: str, user: str, params: list[str] | None = None):
    """``owner.name`` (owner: an object, or a dotted module path), with these parameters if given."""
    if isinstance(owner, str):
        try:
            owner = importlib.import_module(owner)
        except ImportError as e:
            pytest.fail(f"{e}; zoo.compat.{user} imports from it: update zoo/compat.py")
    label = getattr(owner, "__name__", type(owner).__name__)
    versions = ", ".join(
        f"{m} {importlib.import_module(m).__version__}" for m in ("lightning", "torch", "hydra", "optuna")
    )
    if not hasattr(owner, name):
        pytest.fail(
            f"{label}.{name} is gone ({versions}); zoo.compat.{user} relies on it: "
            f"find its replacement (a public API if there is one now) and update zoo/compat.py"
        )
    value = getattr(owner, name)
    if params is not None:
        found = list(inspect.signature(value).parameters)
        if found != params:
            pytest.fail(
                f"{label}.{name} now takes {found}, not {params} ({versions}); "
                f"zoo.compat.{user} calls it: update zoo/compat.py"
            )
    return value


# -- Lightning ----------------------------------------------------------------------------------


class _Recorder(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.seen: list[tuple[int, bool, int]] = []

    def training_step(self, batch, batch_idx):
        self.seen.append(
            (batch_idx, compat.should_update_logs(self.trainer), compat.batches_that_stepped(self.trainer))
        )
        return self.layer(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(12, 2)), batch_size=2)


def test_logging_rule_and_logging_step_follow_the_trainer(tmp_path):
    trainer = L.Trainer(
        max_epochs=1,
        log_every_n_steps=2,
        accumulate_grad_batches=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    require(trainer, "_logger_connector", "should_update_logs")
    require(trainer._logger_connector, "should_update_logs", "should_update_logs")
    require(trainer.fit_loop.epoch_loop, "_batches_that_stepped", "batches_that_stepped")
    module = _Recorder()
    trainer.fit(module)
    # 6 batches, an optimizer step every 2: the logging step counts stepped batches (0,0,1,1,2,2)
    # and a step is logged when (stepped + 1) is a multiple of log_every_n_steps.
    assert [s for _, _, s in module.seen] == [0, 0, 1, 1, 2, 2], module.seen
    assert [b for _, b, _ in module.seen] == [False, False, True, True, False, False], module.seen
    assert compat.batches_that_stepped(trainer) == trainer.global_step == 3


class _TwoPerStep(_Recorder):
    """Says it trained one more batch inside each step, as zoo.tasks.execution does."""

    def training_step(self, batch, batch_idx):
        compat.count_inner_batch(self.trainer, optimizer_steps=1)
        loop = self.trainer.fit_loop.epoch_loop
        self.seen.append((loop.batch_idx, compat.batches_that_stepped(self.trainer), self.trainer.global_step))
        return self.layer(batch[0]).pow(2).mean()


def test_count_inner_batch_moves_every_counter_by_a_batch(tmp_path):
    trainer = L.Trainer(
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    loop = trainer.fit_loop.epoch_loop
    require(loop, "_batches_that_stepped", "count_inner_batch")
    require(loop.batch_progress, "increment_by", "count_inner_batch", ["n", "is_last_batch"])
    require(loop.automatic_optimization.optim_progress.optimizer.step, "increment_by", "count_inner_batch", ["n"])
    module = _TwoPerStep()
    trainer.fit(module)
    # 6 batches an epoch, each step two of them: 3 steps an epoch, every counter at the second batch
    assert module.seen == [(1, 1, 1), (3, 3, 3), (5, 5, 5), (1, 7, 7), (3, 9, 9), (5, 11, 11)], module.seen
    assert trainer.global_step == compat.batches_that_stepped(trainer) == 12 and trainer.current_epoch == 2


def test_checkpoint_every_n_train_steps_is_read_from_modelcheckpoint(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    callback = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=7)
    require(callback, "_every_n_train_steps", "checkpoint_every_n_train_steps")
    assert compat.checkpoint_every_n_train_steps(callback) == 7
    assert compat.checkpoint_every_n_train_steps(ModelCheckpoint(dirpath=tmp_path)) == 0
    assert compat.checkpoint_every_n_train_steps(L.Callback()) == 0


def test_ddp_kwargs_are_the_strategy_s_own_and_changes_reach_it():
    strategy = DDPStrategy(find_unused_parameters=False, gradient_as_bucket_view=True)
    require(strategy, "_ddp_kwargs", "ddp_kwargs")
    kwargs = compat.ddp_kwargs(strategy)
    assert kwargs == {"find_unused_parameters": False, "gradient_as_bucket_view": True}
    kwargs["find_unused_parameters"] = True
    assert compat.ddp_kwargs(strategy)["find_unused_parameters"] is True
    assert compat.ddp_kwargs(SingleDeviceStrategy(device=torch.device("cpu"))) is None


def test_subprocess_launcher_command_and_thread_rule(monkeypatch):
    require(
        "lightning.pytorch.strategies.launchers.subprocess_script",
        "_SubprocessScriptLauncher",
        "subprocess_script_launcher",
        ["cluster_environment", "num_processes", "num_nodes"],
    )
    require(
        "lightning.fabric.strategies.launchers.subprocess_script", "_basic_subprocess_cmd", "basic_subprocess_cmd", []
    )
    require(
        "lightning.fabric.utilities.distributed",
        "_set_num_threads_if_needed",
        "set_num_threads_if_needed",
        ["num_processes"],
    )
    launcher_class = compat.subprocess_script_launcher()
    launcher = launcher_class(LightningEnvironment(), num_processes=2, num_nodes=1)
    assert launcher.procs == [] and launcher.num_processes == 2 and not launcher.is_interactive_compatible
    assert list(inspect.signature(launcher.launch).parameters) == ["function", "args", "trainer", "kwargs"]

    command = compat.basic_subprocess_cmd()
    assert command[0] == sys.executable and len(command) >= 2, command

    threads = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    try:
        compat.set_num_threads_if_needed(2)
        assert os.environ["OMP_NUM_THREADS"] == str(torch.get_num_threads())
        assert torch.get_num_threads() == max(1, (os.cpu_count() or 1) // 2)
    finally:
        torch.set_num_threads(threads)


class _Buffers(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = torch.nn.BatchNorm1d(2)
        self.inner.register_buffer("running_sum", torch.zeros(1), persistent=False)
        self.register_buffer("count", torch.zeros(1), persistent=False)
        self.layer = torch.nn.Linear(2, 2)


def test_non_persistent_buffers_are_found_and_kept_out_of_ddp():
    require(torch.nn.Module(), "_non_persistent_buffers_set", "non_persistent_buffer_names")
    require(
        torch.nn.parallel.DistributedDataParallel,
        "_set_params_and_buffers_to_ignore_for_model",
        "ddp_ignore",
        ["module", "params_and_buffers_to_ignore"],
    )
    model = _Buffers()
    assert sorted(compat.non_persistent_buffer_names(model)) == ["count", "inner.running_sum"]
    compat.ddp_ignore(model, ["count"])
    compat.ddp_ignore(model, ["inner.running_sum"])
    assert sorted(model._ddp_params_and_buffers_to_ignore) == ["count", "inner.running_sum"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_strategy_hooks_replace_the_launcher_and_see_the_model_before_wrapping():
    require(DDPStrategy, "_configure_launcher", "ddp_strategy_with_hooks", ["self"])
    require(DDPStrategy, "_setup_model", "ddp_strategy_with_hooks", ["self", "model"])
    seen = {}

    class Strategy(compat.ddp_strategy_with_hooks()):
        def replace_launcher(self, launcher):
            seen["launcher"] = launcher
            return "replaced"

        def before_wrap(self, model):
            seen["model"] = model
            compat.ddp_ignore(model, compat.non_persistent_buffer_names(model))

    strategy = Strategy(
        parallel_devices=[torch.device("cpu")], cluster_environment=LightningEnvironment(), process_group_backend="gloo"
    )
    strategy._configure_launcher()
    assert isinstance(seen["launcher"], compat.subprocess_script_launcher()), seen
    assert strategy.launcher == "replaced"

    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        model = _Buffers()
        wrapped = strategy._setup_model(model)
        assert seen["model"] is model
        assert isinstance(wrapped, torch.nn.parallel.DistributedDataParallel)
        assert {"count", "inner.running_sum"} <= set(wrapped.parameters_to_ignore)
    finally:
        torch.distributed.destroy_process_group()


# -- Hydra --------------------------------------------------------------------------------------


def test_hydra_basic_sweeper_is_a_sweeper_with_the_expected_constructor():
    from hydra.plugins.sweeper import Sweeper

    cls = require(
        "hydra._internal.core_plugins.basic_sweeper",
        "BasicSweeper",
        "hydra_basic_sweeper",
        ["max_batch_size", "params"],
    )
    assert compat.hydra_basic_sweeper() is cls and issubclass(cls, Sweeper)
    require(cls, "split_arguments", "hydra_basic_sweeper")


def test_job_exception_without_the_re_raise(capsys):
    require(JobReturn(), "_return_value", "job_exception")
    error = ValueError("bad lr")
    failed = JobReturn(overrides=["lr=1"], status=JobStatus.FAILED, _return_value=error)
    done = JobReturn(status=JobStatus.COMPLETED, _return_value=0.9)
    assert compat.job_exception(failed) is error
    assert compat.job_exception(done) is None and done.return_value == 0.9
    assert capsys.readouterr().err == ""
    with pytest.raises(ValueError):  # why compat.job_exception exists: the public property re-raises
        _ = failed.return_value


# -- Optuna -------------------------------------------------------------------------------------


def _require_optuna_internals(study) -> None:
    require(study, "_storage", "running_trial")
    require(study, "_study_id", "running_trial")
    require(study._storage, "get_trial_id_from_study_id_trial_number", "running_trial", ["study_id", "trial_number"])
    require("optuna.storages._heartbeat", "is_heartbeat_enabled", "heartbeat_storage", ["storage"])


def test_running_trial_by_number_and_trial_ids():
    study = optuna.create_study()
    _require_optuna_internals(study)
    asked = study.ask()
    require(asked, "_trial_id", "trial_id")
    other = compat.running_trial(study, asked.number)
    assert other is not None and other.number == asked.number
    assert compat.trial_id(other) == compat.trial_id(asked) == compat.trial_id(study.trials[0])
    other.report(0.5, step=1)
    assert study.trials[0].intermediate_values == {1: 0.5}
    study.tell(asked, 1.0)
    assert compat.running_trial(study, asked.number) is None  # finished
    assert compat.running_trial(study, 99) is None  # no such trial


def test_heartbeat_storage_only_for_a_storage_that_beats(tmp_path):
    assert compat.heartbeat_storage(optuna.create_study()) is None
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    assert compat.heartbeat_storage(optuna.create_study(storage=url, study_name="plain")) is None
    storage = optuna.storages.RDBStorage(url, heartbeat_interval=60)
    study = optuna.create_study(storage=storage, study_name="beating")
    _require_optuna_internals(study)
    beating = compat.heartbeat_storage(study)
    assert beating is not None
    trial = study.ask()
    beating.record_heartbeat(compat.trial_id(trial))
    assert optuna.storages.fail_stale_trials(study) is None and study.trials[0].state.name == "RUNNING"


def test_open_summary_writer_is_none_until_the_logger_writes(tmp_path):
    from zoo.callbacks.logger import TensorBoardLogger

    logger = TensorBoardLogger(str(tmp_path))
    assert compat.open_summary_writer(logger) is None, "TensorBoardLogger._experiment is gone or set early"
    logger.log_metrics({"train/loss": 1.0}, step=0)
    assert compat.open_summary_writer(logger) is logger.experiment
    logger.close()
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1


def test_set_summary_writer_is_the_writer_the_logger_writes_with(tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger
    from torch.utils.tensorboard import SummaryWriter

    logger = TensorBoardLogger(str(tmp_path), name="", version="")
    writer = SummaryWriter(str(tmp_path))
    compat.set_summary_writer(logger, writer)
    assert logger.experiment is writer, "TensorBoardLogger._experiment is gone: zoo's writer is not used"
    writer.close()


def test_write_scalars_is_one_event_that_readers_see_as_each_scalar_and_survives_a_closed_writer(tmp_path):
    """Several scalars at one step are one event; TensorBoard's reader gives each tag its value and
    step, as one add_scalar each would; after the writer is closed, the next write opens a new file
    (SummaryWriter._get_file_writer, the private part, does both)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path))
    compat.write_scalars(writer, {"1_train/loss": 0.5, "20_watch/grad_norm/fc1": 2.0}, step=7)
    compat.write_scalars(writer, {"1_train/loss": 0.25}, step=8)
    writer.close()
    compat.write_scalars(writer, {"1_train/loss": 0.125}, step=9)
    writer.close()
    files = sorted(tmp_path.glob("events.out.tfevents.*"))
    assert len(files) == 2
    events = [e for e in EventFileLoader(str(files[0])).Load() if e.summary.value]
    assert [(e.step, len(e.summary.value)) for e in events] == [(7, 2), (8, 1)]
    seen = {}
    for path in files:
        acc = EventAccumulator(str(path))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            seen.setdefault(tag, []).extend((s.step, s.value) for s in acc.Scalars(tag))
    assert seen == {"1_train/loss": [(7, 0.5), (8, 0.25), (9, 0.125)], "20_watch/grad_norm/fc1": [(7, 2.0)]}


def test_the_logger_writes_a_call_s_numbers_as_one_event_with_numbered_tags(tmp_path):
    """zoo's logger: the numbers of one log_metrics call (floats, ints, one-element tensors) are one
    event, their sections numbered; Lightning's epoch scalar is left out; a dict still goes through
    Lightning's add_scalars."""
    import torch
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto.event_pb2 import Event

    from zoo.callbacks.logger import TensorBoardLogger

    logger = TensorBoardLogger(str(tmp_path))
    logger.log_metrics({"train/loss": torch.tensor(0.5), "lr/net": 1e-3, "epoch": 3, "val/acc": 1}, step=4)
    logger.log_metrics({"watch/pair": {"a": 1.0, "b": 2.0}}, step=5)
    logger.close()
    events = [
        Event.FromString(r)
        for path in tmp_path.glob("**/events.out.tfevents.*")
        for r in RawEventFileLoader(str(path)).Load()
    ]
    first = [e for e in events if e.step == 4 and e.summary.value]
    assert len(first) == 1
    assert {v.tag: round(v.simple_value, 6) for v in first[0].summary.value} == {
        "1_train/loss": 0.5,
        "11_lr/net": 0.001,
        "2_val/acc": 1.0,
    }
    assert any(v.tag.startswith("20_watch/pair") for e in events if e.step == 5 for v in e.summary.value)

    # A prefix goes before every key, as with Lightning's own log_metrics.
    prefixed = TensorBoardLogger(str(tmp_path / "prefixed"), prefix="run1")
    prefixed.log_metrics({"train/loss": 0.5}, step=1)
    prefixed.close()
    tags = [
        v.tag
        for path in (tmp_path / "prefixed").glob("**/events.out.tfevents.*")
        for r in RawEventFileLoader(str(path)).Load()
        for v in Event.FromString(r).summary.value
    ]
    assert tags == ["run1-train/loss"]


@pytest.mark.slow  # a new interpreter importing torch and Lightning: about 10 s
def test_torchmetrics_without_optional_imports_leaves_out_torchvision_and_matplotlib():
    """In a fresh process (torchmetrics is imported here already): Lightning and every task import
    without torchvision or matplotlib, and the metrics the tasks use still compute."""
    import subprocess

    require("torchmetrics.utilities.imports", "RequirementCache", "torchmetrics_without_optional_imports")
    for flag in compat.TORCHMETRICS_OPTIONAL:
        require("torchmetrics.utilities.imports", flag, "torchmetrics_without_optional_imports")
    script = (
        "import sys, torch\n"
        "from zoo import compat\n"
        "compat.torchmetrics_without_optional_imports()\n"
        "import lightning, zoo.tasks.classify, zoo.tasks.forecast, zoo.tasks.language_model\n"
        "from torchmetrics.classification import MulticlassAccuracy\n"
        "acc = MulticlassAccuracy(num_classes=3, average='micro')(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 1]))\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torchvision', 'matplotlib'}), round(float(acc), 3))\n"
    )
    from tests.helpers import ROOT

    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split("\n")[-2] == "[] 0.667", r.stdout


def test_the_litlogger_tip_is_left_out_of_a_run_and_the_other_messages_are_not(tmp_path, caplog):
    import logging

    from lightning.pytorch.trainer.connectors.logger_connector import logger_connector

    import train
    from zoo.run.config import compose_run

    source = inspect.getsource(logger_connector)
    assert compat.LITLOGGER_TIP in source, (
        "Lightning no longer logs its litlogger tip with this text: update zoo.compat.hide_litlogger_tip "
        "(LITLOGGER_TIP), or remove it if the tip is gone"
    )
    caplog.set_level(logging.INFO, logger=compat.RANK_ZERO_LOGGER)
    train.build_trainer(compose_run(["callbacks=none"], str(tmp_path / "run")), [])
    messages = [r.getMessage() for r in caplog.records if r.name == compat.RANK_ZERO_LOGGER]
    assert any(m.startswith("GPU available") for m in messages), messages  # the others still reach the console
    assert not any("litlogger" in m for m in messages), messages
