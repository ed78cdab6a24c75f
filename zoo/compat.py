"""Every use of another library's private API (names starting with ``_``, or the text of a message
it logs), in one place.

A private name can change in any release without notice. Keeping each use here, with why it is
needed and which public API is missing, means that a library upgrade is checked in one file, and
tests/test_compat.py fails with a message naming the function below when a library changes one.
Everything else in the project uses public APIs only.

Imports are made inside the functions: this module sits below everything else (datamodules and
the Hydra plugins import it too) and importing it loads no library.
"""

from __future__ import annotations

import functools

# -- Lightning ----------------------------------------------------------------------------------


def should_update_logs(trainer) -> bool:
    """Whether this training step is one the loggers write (every ``log_every_n_steps``).

    Why: ``self.log`` costs about a small model's whole step, so the tasks call it only on the
    steps that are written. Missing public API: the Trainer does not say whether a step will be
    logged; ``_LoggerConnector.should_update_logs`` is the rule the loggers themselves apply."""
    return trainer._logger_connector.should_update_logs


def open_summary_writer(logger):
    """The SummaryWriter a Lightning TensorBoardLogger has opened, or None if it has not opened one.

    Why: zoo's logger (zoo/callbacks/logger.py) flushes at ``finalize`` and closes at the end of the
    run; asking the public ``experiment`` property would open a writer (an events file) in a run
    that never logged. Missing public API: whether the logger has a writer yet."""
    return logger._experiment


def set_summary_writer(logger, writer) -> None:
    """Makes ``writer`` the SummaryWriter of a Lightning TensorBoardLogger (zoo's logger opens its
    own, which numbers the sections of the tags: zoo/callbacks/logger.py).

    Why: Lightning's logger builds a plain SummaryWriter in its ``experiment`` property. Missing
    public API: a way to choose the writer's class."""
    logger._experiment = writer


def write_scalars(writer, values: dict[str, float], step: int | None) -> None:
    """Writes ``values`` ({tag: number}, the tags as they are to appear) at ``step`` as one event of
    several values, as TensorBoard's merged summaries are; readers see the same scalars as from one
    ``add_scalar`` each.

    Why: ``SummaryWriter.add_scalar`` makes and queues one event per scalar, about 70 us each on this
    CPU, and one signals reading writes some 40 scalars: on a 2 ms step of a small table model, a
    tenth of the training time went to writing events. Missing public API: SummaryWriter writes no
    Summary it is given; its file writer is behind ``_get_file_writer`` (which also reopens a closed one)."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    summary = Summary(value=[Summary.Value(tag=tag, simple_value=float(v)) for tag, v in values.items()])
    writer._get_file_writer().add_summary(summary, step)


def batches_that_stepped(trainer) -> int:
    """The step Lightning's loggers write ``self.log`` scalars at: one per training batch that
    stepped, however many optimizers stepped in it.

    Why: callbacks that log themselves (gradient norms) must use the same step as ``self.log`` or
    TensorBoard shows their curves shifted. Missing public API: ``trainer.global_step`` counts
    every optimizer step (twice per batch for a GAN); ``batch_progress`` counts batches that did not
    step too (gradient accumulation)."""
    return trainer.fit_loop.epoch_loop._batches_that_stepped


def count_inner_batch(trainer, optimizer_steps: int) -> None:
    """Advance the fit loop's counters by one batch that the task trained inside a Lightning step
    (zoo.tasks.execution: several batches per step), so that they count batches as with one batch
    a step: ``batch_idx``, the epoch's end (``num_training_batches``), ``global_step``, the logging
    step and a mid-epoch checkpoint's position all move by one batch.

    Why: Lightning counts one batch per ``training_step``. Missing public API: there is none to say
    that a step trained more; ``_batches_that_stepped`` is the step the loggers write at."""
    loop = trainer.fit_loop.epoch_loop
    batches = loop.batch_progress
    last = batches.is_last_batch or batches.current.ready + 1 >= trainer.num_training_batches
    batches.increment_by(1, is_last_batch=last)
    loop._batches_that_stepped += 1
    if trainer.lightning_module.automatic_optimization:
        progress = loop.automatic_optimization.optim_progress.optimizer
        progress.zero_grad.increment_by(optimizer_steps)
        progress.step.increment_by(optimizer_steps)
    else:  # manual optimisation counts the steps of a training_step only
        loop.manual_optimization.optim_step_progress.increment_by(optimizer_steps)


def rebuild_train_loader(trainer) -> None:
    """Make the fit loop build its training loader again when the fit starts (after ``on_fit_start``).

    Why: a schedule that asks for ``trainer.estimated_stepping_batches`` in ``configure_optimizers``
    (cosine, one-cycle) makes Lightning build the training loader then, before ``on_fit_start``, where
    the task hands the datamodule its execution plan (zoo.tasks.execution); that loader, kept for the
    fit, gave one batch a step whatever K was. Missing public API: ``trainer.train_dataloader`` only
    reads the loader; the fit loop rebuilds it only when ``_combined_loader`` is None."""
    if trainer.train_dataloader is not None:
        trainer.fit_loop._combined_loader = None


def checkpoint_every_n_train_steps(callback) -> int:
    """A ModelCheckpoint's ``every_n_train_steps`` (0 for any other callback or when it is off).

    Why: zoo.tasks.execution ends an execution on the batches a checkpoint is due. Missing public
    API: ModelCheckpoint keeps its constructor argument only as ``_every_n_train_steps``."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    if not isinstance(callback, ModelCheckpoint):
        return 0
    return int(callback._every_n_train_steps or 0)


TORCHMETRICS_OPTIONAL = ("_TORCHVISION_AVAILABLE", "_SCIPY_AVAILABLE", "_MATPLOTLIB_AVAILABLE")


def torchmetrics_without_optional_imports() -> None:
    """Make torchmetrics, when it is imported (by Lightning, on import), leave out what needs
    torchvision, scipy or matplotlib, so that a run imports those only when it uses them itself
    (torchvision for image data, matplotlib for a figure). Does nothing once torchmetrics is imported.

    Why: torchmetrics' ``__init__`` imports every metric family, and its image metrics import
    torchvision (which imports torch._dynamo and sympy), its audio ones scipy.signal and its plotting
    helpers matplotlib.pyplot: about 40% of what ``python train.py`` spends before its first step,
    for metrics no zoo task uses. Missing public API: torchmetrics has no switch; the availability
    flags of ``torchmetrics.utilities.imports`` (``lightning_utilities`` RequirementCaches) are read
    as its modules import, so they are set to "not installed" right after that module runs."""
    import importlib.abc
    import importlib.machinery
    import sys

    if "torchmetrics" in sys.modules:
        return

    class _FlagsOff(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "torchmetrics.utilities.imports":
                return None
            sys.meta_path.remove(self)
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is None or spec.loader is None:
                return spec
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                for flag in TORCHMETRICS_OPTIONAL:
                    cache = getattr(module, flag, None)
                    if cache is not None:
                        cache.available = False
                        cache.message = f"{flag} turned off by zoo.compat.torchmetrics_without_optional_imports"

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _FlagsOff())


def ddp_kwargs(strategy) -> dict | None:
    """The keyword arguments a DDPStrategy will pass to ``DistributedDataParallel`` (None for
    another strategy); changing the returned dict before the model is wrapped changes them.

    Why: a GAN's two backward passes each use one network, so DDP must be told
    ``find_unused_parameters=True`` when the task, not the config, knows it. Missing public API:
    DDPStrategy takes the arguments in its constructor only and keeps them in ``_ddp_kwargs``."""
    kwargs = getattr(strategy, "_ddp_kwargs", None)
    return kwargs if isinstance(kwargs, dict) else None


def subprocess_script_launcher() -> type:
    """Lightning's launcher that starts the other DDP ranks by running ``sys.argv`` again.

    Why: zoo.run.ddp replaces it (the command must be the Hydra job, not the sweep) and subclasses
    it to keep its process bookkeeping. Missing public API: launchers are not exported."""
    from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

    return _SubprocessScriptLauncher


def basic_subprocess_cmd() -> list[str]:
    """The command Lightning uses to start another rank outside Hydra (``python script.py args``,
    or ``python -m module args``).

    Why: the same command as Lightning when no Hydra job is running. Missing public API: none
    exported."""
    from lightning.fabric.strategies.launchers.subprocess_script import _basic_subprocess_cmd

    return list(_basic_subprocess_cmd())


def set_num_threads_if_needed(num_processes: int) -> None:
    """Lightning's rule for torch's thread count when several ranks share a machine.

    Why: the replacement launcher does what Lightning's does. Missing public API: not exported."""
    from lightning.fabric.utilities.distributed import _set_num_threads_if_needed

    _set_num_threads_if_needed(num_processes=num_processes)


@functools.cache
def ddp_strategy_with_hooks() -> type:
    """Lightning's DDPStrategy with two of its private steps opened as public hooks:
    ``replace_launcher(launcher)`` (return the launcher to use) and ``before_wrap(model)`` (called
    just before the model is wrapped in DistributedDataParallel).

    Why: zoo.run.ddp starts ranks as the Hydra job and keeps per-process buffers out of DDP's
    broadcast. Missing public API: the strategy builds its launcher in ``_configure_launcher`` and
    wraps the model in ``_setup_model``, neither of them a documented hook."""
    from lightning.pytorch.strategies import DDPStrategy

    class DDPStrategyWithHooks(DDPStrategy):
        def _configure_launcher(self) -> None:
            super()._configure_launcher()
            self._launcher = self.replace_launcher(self._launcher)

        def _setup_model(self, model):
            self.before_wrap(model)
            return super()._setup_model(model)

        def replace_launcher(self, launcher):
            return launcher

        def before_wrap(self, model) -> None:
            pass

    return DDPStrategyWithHooks


# The tip Lightning logs whenever a Trainer has no LitLogger, and the logger it goes through (the one
# behind lightning.pytorch.utilities.rank_zero_info).
LITLOGGER_TIP = "💡 Tip: For seamless cloud logging"
RANK_ZERO_LOGGER = "lightning.pytorch.utilities.rank_zero"


class _WithoutLitLoggerTip:
    def filter(self, record) -> bool:
        return not str(record.msg).startswith(LITLOGGER_TIP)


def hide_litlogger_tip() -> None:
    """Keeps Lightning's advertisement for its hosted logging service ("💡 Tip: For seamless cloud
    logging ... try installing litlogger") out of every run's console; its other messages stay.

    Why: it is printed on every run, between the lines a user reads (GPU available, the model
    summary), and says nothing about the run. Missing public API: no setting turns it off; this
    matches its text on the logger ``rank_zero_info`` writes to, so a release that rewords it shows it
    again (tests/test_compat.py says so)."""
    import logging

    log = logging.getLogger(RANK_ZERO_LOGGER)
    if not any(isinstance(f, _WithoutLitLoggerTip) for f in log.filters):
        log.addFilter(_WithoutLitLoggerTip())


# Deprecation warnings raised inside a library about its own use of another (nothing a user of zoo
# can change): Lightning's pytree helper asks torch's old LeafSpec question on every batch.
LIBRARY_WARNINGS = (r".*isinstance\(treespec, LeafSpec\).*",)
# Lightning's advice to lower trainer.log_every_n_steps when an epoch has fewer batches than it (a
# small table, the digits): zoo logs every epoch's train/* from sums over all its batches, so a short
# epoch loses no curve; only the per-batch train/loss_step comes every log_every_n_steps batches,
# across epochs, as the config says.
LIGHTNING_ADVICE = (r"The number of training batches \(\d+\) is smaller than the logging interval",)


def quiet_libraries() -> None:
    """What every command (train.py, eval.py, generate.py) keeps off its console: the litlogger tip
    (``hide_litlogger_tip``), the libraries' warnings about each other (``LIBRARY_WARNINGS``) and
    Lightning's advice that zoo already answers (``LIGHTNING_ADVICE``)."""
    import warnings

    hide_litlogger_tip()
    for pattern in (*LIBRARY_WARNINGS, *LIGHTNING_ADVICE):
        warnings.filterwarnings("ignore", message=pattern)


# -- PyTorch ------------------------------------------------------------------------------------


def non_persistent_buffer_names(module) -> list[str]:
    """The qualified names of a module's buffers registered with ``persistent=False``.

    Why: those are per-process accumulators DDP must not broadcast. Missing public API:
    ``named_buffers()`` does not say which buffers are persistent; the module keeps them in
    ``_non_persistent_buffers_set``."""
    return [
        f"{prefix}.{name}" if prefix else name
        for prefix, sub in module.named_modules()
        for name in sub._non_persistent_buffers_set
    ]


def ddp_ignore(model, names: list[str]) -> None:
    """Have DistributedDataParallel leave these parameters and buffers alone (no broadcast, no
    gradient sync), adding to those already set.

    Why: see ``non_persistent_buffer_names``. Missing public API: the static method is DDP's
    documented way in its docstring but named private."""
    from torch.nn.parallel import DistributedDataParallel

    already = list(getattr(model, "_ddp_params_and_buffers_to_ignore", []))
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, already + list(names))


# -- Hydra --------------------------------------------------------------------------------------


def hydra_basic_sweeper() -> type:
    """Hydra's grid sweeper, which hydra_plugins/zoo_sweepers/basic_sweeper.py extends.

    Why: the sweeper keeps Hydra's grid parsing and batching. Missing public API: Hydra's core
    plugins live in ``hydra._internal``."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    return BasicSweeper


def job_exception(ret) -> BaseException | None:
    """The exception a failed Hydra job raised (None for a job that did not fail).

    Why: the sweepers record why a job failed and go on. Missing public API:
    ``JobReturn.return_value`` re-raises the exception and writes to stderr."""
    from hydra.core.utils import JobStatus

    return ret._return_value if ret.status == JobStatus.FAILED else None


# -- Optuna -------------------------------------------------------------------------------------


def trial_id(trial) -> int:
    """The storage's id of a trial (``optuna.trial.Trial`` or ``FrozenTrial``).

    Why: heartbeats and re-opening a running trial go through the storage, which speaks in trial
    ids. Missing public API: trials expose only their number within the study."""
    return trial._trial_id


def running_trial(study, number: int):
    """The trial ``number`` of the study as an ``optuna.trial.Trial`` to report to, or None when the
    study has no such trial or it is not running.

    Why: a job of a search reports intermediate values (pruning) to the trial its sweeper asked
    for in another process. Missing public API: ``optuna.trial.Trial(study, trial_id)`` is public
    but the id of a trial number is found through the study's private storage."""
    import optuna
    from optuna.trial import TrialState

    try:
        tid = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    except KeyError:
        return None
    if study._storage.get_trial(tid).state != TrialState.RUNNING:
        return None
    return optuna.trial.Trial(study, tid)


def heartbeat_storage(study):
    """The study's storage when it records heartbeats (an RDB storage opened with
    ``heartbeat_interval``), else None; the storage has ``record_heartbeat(trial_id)``.

    Why: the sweeper beats for the trials its launcher runs in other processes. Missing public API:
    ``Study`` does not expose its storage, and ``is_heartbeat_enabled`` lives in a private module."""
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return study._storage if is_heartbeat_enabled(study._storage) else None
