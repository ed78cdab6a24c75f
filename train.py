"""Train a network: ``python train.py [group=choice ...] [key=value ...]``.

Reads top to bottom as the flow of one run (ARCHITECTURE.md): compose the config (Hydra), check it before
torch is imported, take the run folder (zoo/run/folder.py), build the data and publish its spec, build
the network from the spec, wrap it in the task for that kind of data, fit, test the best checkpoint,
report (metrics.json, TensorBoard's HParams, the table). How a run that does not finish is recorded
is in zoo/run/lifecycle.py.
"""

from __future__ import annotations

import os
import sys
import time

import hydra
from omegaconf import DictConfig, OmegaConf

from zoo import compat
from zoo.run.config import check_config, check_monitors, expand_seeds, preflight, user_errors

# Before Lightning imports torchmetrics: torchvision, scipy and matplotlib are then imported only by the
# code that uses them (image data, figures), not with every metric family torchmetrics has.
compat.torchmetrics_without_optional_imports()

# Noise from Lightning's internals that says nothing about the user's run.
compat.quiet_libraries()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from zoo.errors import RunStopped

    with user_errors():
        check_config(cfg)
        try:
            metrics = train(cfg)
        except RunStopped as stop:
            sys.stderr.write(f"{stop}\n")
            sys.exit(stop.exit_code)
    return metrics.get(cfg.get("optimized_metric"))


def train(cfg: DictConfig, extra_callbacks: tuple = ()) -> dict:
    """Fit, test and report one run; ``extra_callbacks`` lets a script (the benchmark) watch it."""
    started = time.perf_counter()
    from zoo.errors import UserError
    from zoo.run.folder import interrupted, run_folder

    out_dir = cfg.paths.output_dir
    ckpt_dir = os.path.join(out_dir, "checkpoints")
    try:  # seconds of imports: a Ctrl-C here stops the run as "interrupted", as one later does
        import lightning as L

        from zoo.run.job import group_choices
        from zoo.run.lifecycle import (
            RunCallbacks,
            finished_summary,
            recorded_outcome,
            refused_before_training,
            resume_point,
        )
        from zoo.run.report import publish
    except KeyboardInterrupt:
        raise interrupted(out_dir, "while starting") from None
    # The folder is this run's alone while it runs (zoo/run/folder.py); a run refused after Hydra
    # wrote .hydra/ and the job log into it puts them back as they were.
    with run_folder(out_dir, bool(cfg.get("resume")), bool(cfg.get("overwrite"))) as folder:
        try:
            choices = group_choices()
            L.seed_everything(cfg.seed, workers=True, verbose=False)
            datamodule = build_data(cfg, choices)  # first: it publishes the spec every model is sized from
            task, hparams = build_task(cfg, datamodule.spec, choices)
            resume_from = resume_point(cfg, ckpt_dir, out_dir, task, folder)  # checked before anything is cut
            run = RunCallbacks(cfg, ckpt_dir)
            trainer = build_trainer(cfg, [*run.all(), *extra_callbacks])
        except UserError:
            if folder is not None:
                folder.undo()  # a refused run leaves no folder behind (nor changes an earlier one)
            raise
        except KeyboardInterrupt:
            raise interrupted(out_dir, "while building the data and the model") from None

        def refused(error: BaseException) -> bool:
            return refused_before_training(error, trainer, run.startup, bool(resume_from))

        try:
            with (
                run.graceful_stop,
                recorded_outcome(out_dir, lambda: run_progress(trainer), refused),
            ):
                find_lr(cfg, trainer, task, datamodule, hparams, resume_from)
                trainer.fit(task, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
                run.graceful_stop.check()  # a signal after the last training step still stops the run
                results = test(cfg, trainer, task, datamodule)
        except UserError as error:
            # Refused before its first training step (a setting the trainer cannot use, no training
            # data, a resume whose settings the fit refuses): nothing of the run is left, and a folder
            # that existed (a resumed run's) is as it was. A run that trained, or diverged, keeps its record.
            if folder is not None and refused(error):
                folder.undo()
            raise
        summary = finished_summary(trainer, run, results, time.perf_counter() - started)
        if trainer.is_global_zero:
            publish(trainer, summary, hparams["config"], choices, out_dir)
    return summary


def run_progress(trainer) -> dict:
    """Where a run that did not finish got to, and what it had diagnosed (metrics.json)."""
    from zoo.run.lifecycle import diagnoses_of

    return {"epochs": trainer.current_epoch, "global_step": trainer.global_step, "diagnoses": diagnoses_of(trainer)}


def build_data(cfg: DictConfig, choices: dict):
    """The datamodule, prepared and set up for fitting (its ``spec`` then describes the data), once
    the model is known to take its kind of data."""
    from hydra.utils import get_class, instantiate

    from zoo.run.lifecycle import check_training_data
    from zoo.tasks.registry import check_pairing

    model_factory = instantiate(cfg.model)
    check_pairing(  # before any download: model=linear data=shakespeare offline names the pair
        getattr(model_factory, "func", model_factory),
        getattr(get_class(cfg.data._target_), "kind", None),
        choices.get("model", "the model"),
        choices.get("data", "the data"),
    )
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    check_training_data(datamodule, choices.get("data", datamodule.spec.name))
    return datamodule


def build_task(cfg: DictConfig, spec, choices: dict):
    """The network sized from the data's spec, wrapped in the task for that kind of data; and the
    hyper-parameters stored in every checkpoint as plain data (enough to rebuild data and network)."""
    from hydra.utils import instantiate

    from zoo.run.checkpoints import load_weights
    from zoo.tasks.registry import build_net, task_name
    from zoo.tasks.registry import build_task as task_for

    model_factory = instantiate(cfg.model)
    net = build_net(model_factory, spec, choices.get("model", "the model"), choices.get("data", spec.name))
    if cfg.get("compile"):
        net.compile()
    if cfg.get("init_from"):
        skipped = load_weights(net, cfg.init_from)
        print(f"Initialised from {cfg.init_from}" + (f" (kept fresh: {', '.join(skipped)})" if skipped else ""))
    hparams = {"config": OmegaConf.to_container(cfg, resolve=True), "choices": choices, "spec": spec.to_dict()}
    scheduler = {
        **cfg.scheduler,
        "factory": instantiate(cfg.scheduler.factory) if cfg.scheduler.get("factory") else None,
    }
    steps_per_execution = cfg.get("steps_per_execution", "auto")
    task = task_for(
        task_name(spec, model_factory),
        spec,
        net,
        instantiate(cfg.optimizer),
        scheduler,
        hparams,
        {"steps_per_execution": steps_per_execution} if steps_per_execution != 1 else None,
    )
    check_monitors(cfg, task, task_name(spec, model_factory))  # before any epoch runs
    return task, hparams


def build_trainer(cfg: DictConfig, run_callbacks: list):
    """The Trainer with the optional callbacks of conf/callbacks/, the run's own (zoo/run/lifecycle.py)
    and the loggers; checkpoints are written atomically."""
    from hydra.utils import instantiate
    from lightning.pytorch.callbacks import ProgressBar

    from zoo.run.reliability import AtomicCheckpointIO
    from zoo.tasks.execution import Unprofiled

    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None] + run_callbacks
    loggers = [instantiate(c) for c in cfg.logger.values() if c is not None]
    # Lightning adds its own progress bar (redrawn every step) and model summary when none is among
    # the callbacks: callbacks.progress_bar=null, callbacks.model_summary=null and callbacks=none
    # mean none at all (unless trainer.enable_progress_bar / enable_model_summary say otherwise). A
    # configured summary runs as a callback; enable_model_summary=True beside it only made Lightning
    # say "Trainer already configured with model summary callbacks".
    defaults = {
        "enable_progress_bar": any(isinstance(c, ProgressBar) for c in callbacks),
        "enable_model_summary": False,
    }
    if not cfg.trainer.get("profiler"):
        defaults["profiler"] = Unprofiled()
    return instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers or False,
        plugins=[AtomicCheckpointIO(cfg.paths.output_dir)],
        **{k: v for k, v in defaults.items() if cfg.trainer.get(k) is None},
    )


def find_lr(cfg: DictConfig, trainer, task, datamodule, hparams: dict, resume_from: str | None) -> None:
    """tuner.lr_find=true: Lightning's learning-rate finder picks the learning rate (zoo/run/tuning.py);
    the run's recorded config then holds the rate it trained with."""
    if OmegaConf.select(cfg, "tuner.lr_find", default=False) and not resume_from:
        from zoo.run.tuning import find_lr as lightning_find_lr

        found = lightning_find_lr(trainer, task, datamodule, cfg.tuner)
        if found is not None:
            hparams["config"]["optimizer"]["lr"] = found


def test(cfg: DictConfig, trainer, task, datamodule) -> dict:
    """The test metrics of the best checkpoint (of the last weights when no checkpoint is kept by a
    metric); a fit that ran no training batch is an error, not a finished run."""
    from zoo.errors import UserError

    if trainer.num_training_batches == 0:
        raise UserError(
            "the fit ran no training batch (trainer.limit_train_batches or the training split is 0); "
            "give the run some training data."
        )
    if not cfg.get("test", True):
        return {}
    checkpoint = trainer.checkpoint_callback
    best_path = checkpoint.best_model_path if checkpoint is not None and checkpoint.best_model_path else None
    results = trainer.test(task, datamodule=datamodule, ckpt_path=best_path, verbose=False, weights_only=True)
    return results[0] if results else {}


if __name__ == "__main__":
    with user_errors():
        sys.argv[1:] = expand_seeds(sys.argv[1:])  # seeds=5: a multirun over 5 seeds, summarised as mean ± std
    composed = preflight("train", sys.argv[1:])
    if composed is not None:  # a single run: its folder is taken (or refused) before Hydra writes into it
        from zoo.run.folder import claim_before_hydra

        sys.argv += claim_before_hydra(composed, sys.argv[1:])
    try:
        main()
    except KeyboardInterrupt:  # before the run took its folder (composing the config, starting Hydra)
        sys.stderr.write("stopped by SIGINT before the run began; nothing was written.\n")
        sys.exit(130)
