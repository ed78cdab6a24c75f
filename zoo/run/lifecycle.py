"""The parts of one run that train.py's ``train()`` calls in order, besides building and fitting:
the callbacks every run gets, the resume point (checked before anything is cut), how each way a run
stops is recorded (metrics.json's ``status`` and the exit status), and the summary of a finished run.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal

import lightning as L
from omegaconf import DictConfig, OmegaConf

from zoo.errors import UserError
from zoo.run.files import write_json_atomic
from zoo.run.folder import is_rank_zero
from zoo.run.reliability import RESUME_FILE, Diverged, RunStopped

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
        self.threads = ThreadTuner(cfg.get("threads", "auto"))

    def all(self) -> list:
        return [
            self.history,
            self.startup,
            self.accelerator_check,
            self.run_state,
            self.graceful_stop,
            self.divergence,
            self.step_budget,
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


# ---- resume ------------------------------------------------------------------------------------


def resume_point(cfg: DictConfig, ckpt_dir: str, out_dir: str, task) -> str | None:
    """The checkpoint ``resume=true`` continues, after checking that it fits ``task`` (its network and
    optimizers); only then are the event files cut back to the checkpoint's step, so the replayed
    steps are not logged twice. A checkpoint that does not fit is refused before anything is cut."""
    from zoo.run.checkpoints import load_checkpoint
    from zoo.run.rebuild import check_file
    from zoo.run.reliability import rewind_event_files

    if not cfg.get("resume"):
        return None
    path = os.path.join(ckpt_dir, RESUME_FILE)
    if not os.path.isfile(path):
        print(f"resume=true, but {path} does not exist: starting a fresh run in {out_dir}.")
        return None
    # Nothing it names is built: refused, as eval.py would refuse it, before anything changes; what this
    # run's own command line adds (a callback of the user's) is theirs, not the file's.
    check_file(path, OmegaConf.to_container(cfg, resolve=True))
    ckpt = load_checkpoint(path)
    check_fits(ckpt, task, path)
    step = int(ckpt.get("global_step", 0))
    if is_rank_zero():
        rewind_event_files(out_dir, step)
    print(f"Resuming {out_dir} from epoch {ckpt.get('epoch')}, step {step}.")
    return path


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
    shell-quoted (a folder name holding ``$(...)`` stays text when pasted)."""
    from hydra.core.hydra_config import HydraConfig

    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    overrides = [o for o in overrides if o.lstrip("+~").split("=")[0] not in ("resume", "overwrite")]
    command = ["python", "train.py", *overrides, "resume=true", f"hydra.run.dir={out_dir}"]
    return " ".join(shlex.quote(a) for a in command)


@contextlib.contextmanager
def recorded_outcome(out_dir: str, progress):
    """Record in metrics.json how the run inside the ``with`` block stopped, if not by finishing:
    ``interrupted`` (a signal: RunStopped, exit 130 for SIGINT, 143 for SIGTERM, with the command
    that continues it), ``diverged`` (exit 2) or ``failed`` (any other error, exit 2 for a UserError).
    ``progress()`` gives the epochs and global step reached, or {} before the trainer exists."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    try:
        yield
    except BaseException as error:
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
