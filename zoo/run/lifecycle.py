"""The parts of one run that train.py's ``train()`` calls in order, besides building and fitting:
the callbacks every run gets, the resume point (checked before anything is cut), how each way a run
stops is recorded (metrics.json's ``status`` and the exit status), and the summary of a finished run.
"""

from __future__ import annotations

import contextlib
import math
import os
import shlex
import signal

import lightning as L
from omegaconf import DictConfig, OmegaConf

from zoo.errors import UserError
from zoo.run.files import write_json_atomic
from zoo.run.folder import is_rank_zero
from zoo.run.reliability import RESUME_FILE, Diverged, RunStopped, relocated_callback_states

# ---- the callbacks every run gets --------------------------------------------------------------


class RunCallbacks:
    """The callbacks every run gets, whatever ``callbacks=`` says: the run itself needs them.
    ``callbacks=none`` turns off the optional, observability ones of conf/callbacks/ only.

    - ``history`` (ValidationHistory): each epoch's validation metrics, so metrics.json reports the
      validation metrics of the epoch the best checkpoint comes from.
    - ``startup`` (StartupTimer): ``first_step_s`` in metrics.json, the time to the first step.
    - ``accelerator_check`` (CheapAcceleratorCheck): skips a per-step CUDA probe that costs a few
      percent of a small model's step when no GPU is used.
    - ``run_state`` (RunState): ``checkpoints/resume.ckpt`` between epochs, what ``resume=true`` continues.
    - ``graceful_stop`` (GracefulStop): Ctrl-C / SIGTERM stop after the current step with a resume checkpoint.
    - ``divergence`` (DivergenceGuard): stops a run whose loss is NaN, inf or grown ``divergence.factor``
      times over its best, before a checkpoint of the broken weights is written.
    - ``step_budget`` (StepBudgetEnd): a ``trainer.max_steps`` reached mid-epoch validates the last
      weights before the fit ends, as a ``trainer.max_time`` that runs out does.
    - ``last_weights`` (LastWeights): ``last.ckpt`` holds the weights the fit ended with, whether or
      not its last epochs improved.
    - ``threads`` (ThreadTuner): the intra-op threads, measured (``threads=auto``) or fixed; a busy
      machine can make PyTorch's default count many times slower than one thread.
    """

    def __init__(self, cfg: DictConfig, ckpt_dir: str):
        from zoo.callbacks.history import StartupTimer, ValidationHistory
        from zoo.run.reliability import DivergenceGuard, GracefulStop, RunState
        from zoo.tasks.execution import CheapAcceleratorCheck
        from zoo.tasks.threads import ThreadTuner

        self.history = ValidationHistory()
        self.startup = StartupTimer()
        self.accelerator_check = CheapAcceleratorCheck()
        self.run_state = RunState(ckpt_dir)
        self.graceful_stop = GracefulStop(ckpt_dir)
        self.divergence = DivergenceGuard(factor=float(cfg.get("divergence", {}).get("factor", 1e3)))
        self.step_budget = StepBudgetEnd()
        self.last_weights = LastWeights()
        self.threads = ThreadTuner(
            cfg.get("threads", "auto"), deterministic=bool(cfg.get("trainer", {}).get("deterministic"))
        )

    def all(self) -> list:
        return [
            self.history,
            self.startup,
            self.accelerator_check,
            self.run_state,
            self.graceful_stop,
            self.divergence,
            self.step_budget,
            self.last_weights,
            self.threads,
        ]


class StepBudgetEnd(L.Callback):
    """The step budget (``trainer.max_steps``) reached mid-epoch: the Trainer is asked to stop, and so
    validates the last weights (the annealed end of a budget schedule) before the fit ends, as it
    does when ``max_time`` runs out. Without it the fit ended unvalidated: the best checkpoint missed
    the last steps, and early stopping found no validation metric in a run shorter than an epoch."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.max_steps is not None and 0 < trainer.max_steps <= trainer.global_step:
            trainer.should_stop = True


class LastWeights(L.Callback):
    """``last.ckpt`` is the weights at the end of the run, ``best-*.ckpt`` the best epoch's. Lightning's
    ModelCheckpoint (``save_last``) rewrites ``last.ckpt`` only when it saves a checkpoint by its
    metric, so after epochs that did not improve (early stopping's patience) it held the best epoch's
    weights under the name of the last. When fitting ends (finished, stopped by a budget, by early
    stopping or gracefully by a signal; not when it diverged or failed) it is written again with the
    weights the fit ended with."""

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.fast_dev_run:  # Lightning writes no checkpoint in a fast_dev_run
            return
        for callback in trainer.checkpoint_callbacks:
            if getattr(callback, "save_last", False) and callback.dirpath:
                last = os.path.join(callback.dirpath, callback.CHECKPOINT_NAME_LAST + callback.FILE_EXTENSION)
                trainer.save_checkpoint(last, weights_only=bool(getattr(callback, "save_weights_only", False)))


# ---- resume ------------------------------------------------------------------------------------


def resume_point(cfg: DictConfig, ckpt_dir: str, out_dir: str, task, folder=None) -> str | None:
    """The checkpoint ``resume=true`` continues, after checking that it fits ``task`` (its network and
    optimizers); only then are the event files cut back to the checkpoint's step, so the replayed
    steps are not logged twice. A checkpoint that does not fit is refused before anything is cut.
    ``folder`` (the RunFolder held) keeps the event files as they were before the cut, so a run
    refused later, before its first training step, puts them back (``RunFolder.undo``)."""
    from zoo.run.checkpoints import load_checkpoint
    from zoo.run.rebuild import check_file
    from zoo.run.reliability import event_files, rewind_event_files

    if not cfg.get("resume"):
        return None
    path = os.path.join(ckpt_dir, RESUME_FILE)
    if not os.path.isfile(path):
        print(f"resume=true, but {path} does not exist: starting a fresh run in {out_dir}.")
        return None
    # Nothing it names is built: refused, as eval.py would refuse it, before anything changes; what this
    # run's own command line adds (a callback of the user's) is theirs, not the file's.
    current = OmegaConf.to_container(cfg, resolve=True)
    check_file(path, current)
    ckpt = load_checkpoint(path)
    check_fits(ckpt, task, path)
    check_settings(ckpt, current, path)
    check_restored_state(ckpt, task, path)
    relocated_callback_states(ckpt.get("callbacks"), path)  # every stored path lies in the run's checkpoints
    step = ckpt["global_step"]
    if is_rank_zero():
        if folder is not None:
            folder.keep(event_files(out_dir))
        rewind_event_files(out_dir, step)
    print(f"Resuming {out_dir} from epoch {ckpt.get('epoch')}, step {step}.")
    return path


# What a resumed run may change: where its data lives (its own command's paths), how it is loaded,
# and the budget and observability (trainer, callbacks, logger). Everything that decides what is
# trained (the network, the data, the optimizer, the schedule, the seed) is the run's own.
RESUME_FIXED = ("model", "data", "optimizer", "scheduler", "seed", "steps_per_execution")
RESUME_FREE = {
    "data": (
        "data_dir",
        "path",
        "root",
        "url",
        "mirror",
        "download",
        "checksum",
        "num_workers",
        "eval_batch_size",
        "data_on_device",
        "pin_memory",
        "persistent_workers",
    )
}


def _flat(value, prefix: str) -> dict:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(_flat(item, f"{prefix}.{key}"))
        return out
    return {prefix: value}


def check_settings(ckpt: dict, current: dict, path: str) -> None:
    """A resumed run trains with the settings it was started with: a changed network, data, optimizer,
    learning rate, schedule or seed is refused, never recorded in the run while the restored state
    trains on with the old (Lightning restores the optimizer's own learning rate from the checkpoint).
    Only settings both configs have are compared (a checkpoint from before an option existed)."""
    stored = ckpt["hyper_parameters"].get("config") or {}
    found_lr = bool((stored.get("tuner") or {}).get("lr_find")) if isinstance(stored.get("tuner"), dict) else False
    for section in RESUME_FIXED:
        if section not in stored or section not in current:
            continue
        theirs, ours = _flat(stored[section], section), _flat(current[section], section)
        free = {f"{section}.{k}" for k in RESUME_FREE.get(section, ())}
        if found_lr:
            free.add("optimizer.lr")  # the learning-rate finder's choice is the run's
        for key in sorted(set(theirs) & set(ours)):
            if key in free or any(key.startswith(f + ".") for f in free) or theirs[key] == ours[key]:
                continue
            raise UserError(
                f"resume=true continues the run as it was trained, and {key} is {ours[key]!r} here but "
                f"{theirs[key]!r} in {path}; resume with the run's own settings (leave that override out), "
                f"or start a new run with overwrite=true or another hydra.run.dir."
            )


def _counts(value, where: str, path: str) -> None:
    """Every counter of Lightning's loop state is a whole number of 0 or more (or a plain flag)."""
    if isinstance(value, dict):
        for key, item in value.items():
            _counts(item, f"{where}.{key}", path)
    elif isinstance(value, bool) or value is None or isinstance(value, str):
        return
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _counts(item, f"{where}[{i}]", path)
    elif not (isinstance(value, int) and 0 <= value < 2**53) and not (
        isinstance(value, float) and math.isfinite(value) and value >= 0
    ):
        if hasattr(value, "shape") and getattr(value, "numel", lambda: 2)() == 1:
            return  # a tensor kept by a loop (Lightning's own results): read by Lightning, not counted
        raise UserError(
            f"{path} stores {where}={repr(value)[:40]}, not a count; this resume checkpoint is damaged: "
            f"start the run again with overwrite=true."
        )


def check_restored_state(ckpt: dict, task, path: str) -> None:
    """What Lightning restores besides the weights, tried before anything in the run folder changes:
    the step and epoch counters, the random generators' states (set, then put back) and the optimizers'
    states (loaded into fresh optimizers of this task, every tensor of the parameter's shape)."""
    import copy

    from zoo.run.reliability import check_rng_state, rng_state, set_rng_state

    damaged = "this resume checkpoint is damaged: start the run again with overwrite=true."
    for key in ("epoch", "global_step"):
        value = ckpt.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**53:
            raise UserError(f"{path} stores {key}={repr(value)[:40]}, not a count; {damaged}")
    loops = ckpt.get("loops")
    if not isinstance(loops, dict) or not isinstance(loops.get("fit_loop"), dict):
        raise UserError(f"{path} stores no training-loop state; {damaged}")
    _counts(loops, "loops", path)
    states = ckpt.get("callbacks")
    if not isinstance(states, dict):
        raise UserError(f"{path} stores no callback states; {damaged}")
    run_state = states.get("RunState")
    if run_state is not None:
        saved = rng_state()
        try:
            check_rng_state(run_state.get("rng") if isinstance(run_state, dict) else None)
            set_rng_state(run_state["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as e:
            raise UserError(
                f"{path} stores random-generator states that cannot be restored ({str(e).splitlines()[0][:80]}); "
                f"{damaged}"
            ) from None
        finally:
            set_rng_state(saved)
    if task is None:
        return
    stored = ckpt.get("optimizer_states")
    if not stored:
        return
    factory, task.scheduler_factory = getattr(task, "scheduler_factory", None), None
    try:
        built = task.configure_optimizers()
    finally:
        task.scheduler_factory = factory
    optimizers = built if isinstance(built, (list, tuple)) else [built]
    if not isinstance(stored, list) or len(stored) != len(optimizers):
        raise UserError(
            f"{path} stores {len(stored) if isinstance(stored, list) else 'no list of'} optimizer states for "
            f"this task's {len(optimizers)} optimizers; {damaged}"
        )
    for optimizer, state in zip(optimizers, stored):
        try:
            optimizer.load_state_dict(copy.deepcopy(state))
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as e:
            raise UserError(
                f"{path} stores an optimizer state this run's optimizer cannot take "
                f"({str(e).splitlines()[0][:80]}); resume with the run's own optimizer, or start again with "
                f"overwrite=true."
            ) from None
        for group in optimizer.param_groups:
            for name, value in group.items():
                if isinstance(value, float) and not math.isfinite(value):
                    raise UserError(f"{path} stores the optimizer setting {name}={value}; {damaged}")
            for parameter in group["params"]:
                for name, value in optimizer.state.get(parameter, {}).items():
                    if hasattr(value, "shape") and value.numel() != 1 and value.shape != parameter.shape:
                        raise UserError(
                            f"{path} stores an optimizer state '{name}' of shape {tuple(value.shape)} for a "
                            f"parameter of shape {tuple(parameter.shape)}; {damaged}"
                        )


def check_fits(ckpt: dict, task, path: str) -> None:
    """Refuse a checkpoint whose weights (names and shapes) or number of optimizers differ from the task's."""
    own = {k: tuple(v.shape) for k, v in task.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in ckpt["state_dict"].items() if hasattr(v, "shape")}
    differ = sorted(set(own) ^ set(theirs)) or sorted(k for k in own if own[k] != theirs[k])
    if not differ:  # the optimizers' parameter lists: as many tensors as the task trains
        groups = [g for o in ckpt.get("optimizer_states", []) for g in o.get("param_groups", [])]
        stored = sum(len(g.get("params", [])) for g in groups)
        trained = sum(1 for p in task.parameters() if p.requires_grad)
        if stored and stored != trained:
            differ = [f"the optimizers hold {stored} parameter tensors, this model trains {trained}"]
    if differ:
        first = differ[0]
        detail = (
            f"{first}: {theirs.get(first)} in the checkpoint, {own.get(first)} here"
            if first in own or first in theirs
            else first
        )
        raise UserError(
            f"{path} does not fit this run's model or optimizer ({detail}); resume with the same "
            f"overrides as the run that wrote it, or start again with overwrite=true."
        )


# ---- how a run stops ---------------------------------------------------------------------------


def resume_command(out_dir: str) -> str:
    """The shell command that continues this run: its overrides, ``resume=true`` and its folder, each
    shell-quoted (a folder name holding ``$(...)`` stays text when pasted), the folder quoted for Hydra
    too (a comma in it would make a sweep)."""
    from hydra.core.hydra_config import HydraConfig

    from zoo.run.config import hydra_quoted

    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    overrides = [o for o in overrides if o.lstrip("+~").split("=")[0] not in ("resume", "overwrite")]
    command = ["python", "train.py", *overrides, "resume=true", f"hydra.run.dir={hydra_quoted(out_dir)}"]
    return " ".join(shlex.quote(a) for a in command)


def refused_before_training(error: BaseException, trainer, startup, resumed: bool) -> bool:
    """Whether ``error`` is a refusal (a UserError, not a divergence) before this run trained: no
    batch of this process began (``startup``: the run's StartupTimer) and, for a fresh run, no
    optimizer step was taken. Such a run records nothing: its folder is put back as it found it."""
    if not isinstance(error, UserError) or isinstance(error, Diverged):
        return False
    return startup.first_step_s is None or (trainer.global_step == 0 and not resumed)


@contextlib.contextmanager
def recorded_outcome(out_dir: str, progress, refused=lambda error: False):
    """Record in metrics.json how the run inside the ``with`` block stopped, if not by finishing:
    ``interrupted`` (a signal: RunStopped, exit 130 for SIGINT, 143 for SIGTERM, with the command
    that continues it), ``diverged`` (exit 2) or ``failed`` (any other error, exit 2 for a UserError).
    ``progress()`` gives the epochs and global step reached, or {} before the trainer exists.
    ``refused(error)``: an error that is a refusal before the run trained (``refused_before_training``),
    which writes nothing (the folder may be an earlier run's, whose metrics.json stays as it was)."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    try:
        yield
    except BaseException as error:
        if refused(error):
            raise
        if isinstance(error, (SIGTERMException, KeyboardInterrupt)):  # Lightning's own stops, outside a step
            name = "SIGTERM" if isinstance(error, SIGTERMException) else "SIGINT"
            error = RunStopped(f"stopped by {name}", 128 + getattr(signal, name))
        status = (
            "interrupted" if isinstance(error, RunStopped) else "diverged" if isinstance(error, Diverged) else "failed"
        )
        if is_rank_zero():
            write_json_atomic(
                os.path.join(out_dir, "metrics.json"),
                {"status": status, "error": str(error) or type(error).__name__, **progress()},
            )
        if isinstance(error, RunStopped):
            has_checkpoint = os.path.isfile(os.path.join(out_dir, "checkpoints", RESUME_FILE))
            how = (
                f"continue with: {resume_command(out_dir)}"
                if has_checkpoint
                else "it stopped before its first resume checkpoint; start it again with overwrite=true"
            )
            raise RunStopped(f"{error}; {how}", error.exit_code) from None
        raise


# ---- the summary of a finished run -------------------------------------------------------------


def finished_summary(trainer, callbacks: RunCallbacks, test_results: dict, seconds: float) -> dict:
    """metrics.json of a finished run: the validation metrics of the best checkpoint's epoch, the test
    metrics of that checkpoint, and where the run got to."""
    checkpoint = trainer.checkpoint_callback
    best_path = checkpoint.best_model_path if checkpoint is not None and checkpoint.best_model_path else None
    history = callbacks.history
    best_val = (
        history.best(checkpoint.monitor, checkpoint.mode)
        if checkpoint and checkpoint.monitor
        else (history.epochs[-1] if history.epochs else {})
    )
    metrics = {
        k: float(v) for k, v in {**{k: v for k, v in best_val.items() if k.startswith("val/")}, **test_results}.items()
    }
    return {
        **metrics,
        "status": "finished",
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "best_epoch": best_val.get("epoch"),
        "best_checkpoint": best_path,
        "seconds": round(seconds, 2),
        "first_step_s": callbacks.startup.first_step_s,
        "diagnoses": diagnoses_of(trainer),
        # the batches per Lightning step it trained with (steps_per_execution=auto: the one chosen)
        "steps_per_execution": getattr(getattr(trainer.lightning_module, "execution", None), "trained_with", 1),
        # the intra-op threads it trained with and, with threads=auto, the times they were chosen by
        "threads": callbacks.threads.summary(),
    }


def diagnoses_of(trainer) -> list[dict]:
    """What the diagnosing callbacks (zoo/callbacks/diagnostics.py) found: [{kind, step, layer, message}]."""
    return [dict(d) for cb in getattr(trainer, "callbacks", []) for d in getattr(cb, "diagnoses", None) or []]


def check_training_data(datamodule, data_name: str) -> None:
    """Refuse a run whose training split is empty (e.g. data.val_size larger than the dataset)."""
    sizes = datamodule.split_sizes() if hasattr(datamodule, "split_sizes") else {}
    if sizes.get("train", 1) == 0:
        raise UserError(
            f"the training split of data={data_name} is empty ({sizes}): no training step could run; "
            f"lower data.val_size (a fraction below 1, or a count smaller than the dataset)."
        )
