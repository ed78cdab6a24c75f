"""Train a network: ``python train.py [group=choice ...] [key=value ...]``.

Reads top to bottom as the flow of one run (ARCHITECTURE.md): compose the config (Hydra), check it before
torch is imported, build the data and publish its spec, build the network from the spec, wrap it
in the task for that kind of data, fit, test the best checkpoint, write metrics.json.
"""
from __future__ import annotations

import os
import sys
import time
import warnings

import hydra
from omegaconf import DictConfig, OmegaConf

from zoo.run.config import check_config, preflight, user_errors

# Noise from Lightning's internals that says nothing about the user's run.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from zoo.run.reliability import RunStopped

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
    import lightning as L
    from hydra.utils import instantiate

    from zoo.callbacks.history import StartupTimer, ValidationHistory
    from zoo.run.checkpoints import load_weights
    from zoo.run.files import write_json_atomic
    from zoo.run.job import group_choices
    from zoo.run.reliability import AtomicCheckpointIO, Diverged, DivergenceGuard, GracefulStop, RunState, RunStopped
    from zoo.run.report import flat_hparams, report, write_hparams
    from zoo.tasks.execution import CheapAcceleratorCheck, Unprofiled
    from zoo.tasks.registry import build_net, build_task, task_name

    choices = group_choices()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    out_dir = cfg.paths.output_dir

    # Data first: it publishes the spec every model is sized from.
    datamodule = instantiate(cfg.data)
    steps_per_execution = int(cfg.get("steps_per_execution", 1))
    datamodule.steps_per_execution = steps_per_execution
    datamodule.prepare_data()
    datamodule.setup("fit")
    spec = datamodule.spec

    model_factory = instantiate(cfg.model)
    net = build_net(model_factory, spec, choices.get("model", "the model"), choices.get("data", spec.name))
    if cfg.get("compile"):
        net.compile()
    if cfg.get("init_from"):
        skipped = load_weights(net, cfg.init_from)
        print(f"Initialised from {cfg.init_from}" + (f" (kept fresh: {', '.join(skipped)})" if skipped else ""))

    # Stored in every checkpoint as plain data: enough to rebuild the run's data and network.
    hparams = {"config": OmegaConf.to_container(cfg, resolve=True), "choices": choices, "spec": spec.to_dict()}
    scheduler = {**cfg.scheduler, "factory": instantiate(cfg.scheduler.factory) if cfg.scheduler.get("factory") else None}
    task = build_task(task_name(spec, model_factory), spec, net, instantiate(cfg.optimizer), scheduler, hparams,
                      {"steps_per_execution": steps_per_execution} if steps_per_execution > 1 else None)

    # resume=true continues this run folder's resume.ckpt exactly; the event files are first cut
    # back to where that checkpoint was written, so the replayed steps are not logged twice.
    ckpt_dir = os.path.join(out_dir, "checkpoints")
    resume_from = resume_point(cfg, ckpt_dir, out_dir)

    history, startup = ValidationHistory(), StartupTimer()
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    callbacks += [history, startup, CheapAcceleratorCheck(), RunState(ckpt_dir), GracefulStop(ckpt_dir), DivergenceGuard(), *extra_callbacks]
    loggers = [instantiate(c) for c in cfg.logger.values() if c is not None]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False,
                                     plugins=[AtomicCheckpointIO()],
                                     **({} if cfg.trainer.get("profiler") else {"profiler": Unprofiled()}))

    # tuner.lr_find=true: Lightning's learning-rate finder picks the learning rate (zoo/tuning.py);
    # the run's recorded config then holds the rate it trained with.
    if OmegaConf.select(cfg, "tuner.lr_find", default=False) and not resume_from:
        from zoo.run.tuning import find_lr

        found = find_lr(trainer, task, datamodule, cfg.tuner)
        if found is not None:
            hparams["config"]["optimizer"]["lr"] = found

    try:
        trainer.fit(task, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    except (RunStopped, Diverged) as stop:
        if trainer.is_global_zero:
            write_json_atomic(os.path.join(out_dir, "metrics.json"), {
                "status": "interrupted" if isinstance(stop, RunStopped) else "diverged", "error": str(stop),
                "epochs": trainer.current_epoch, "global_step": trainer.global_step})
        if isinstance(stop, RunStopped):
            raise RunStopped(f"{stop}; continue with: python {' '.join(sys.argv)} resume=true "
                             f"hydra.run.dir={out_dir}", stop.exit_code) from None
        raise
    except RuntimeError as e:
        if resume_from and "state_dict" in str(e):
            from zoo.errors import UserError

            raise UserError(f"{resume_from} does not fit this run's model or optimizer ({str(e).splitlines()[0]}); "
                            f"resume with the same overrides as the run that wrote it.") from None
        raise

    checkpoint = trainer.checkpoint_callback
    best_path = checkpoint.best_model_path if checkpoint is not None and checkpoint.best_model_path else None
    best_val = history.best(checkpoint.monitor, checkpoint.mode) if checkpoint and checkpoint.monitor else (
        history.epochs[-1] if history.epochs else {})
    metrics: dict = {k: v for k, v in best_val.items() if k.startswith("val/")}
    if cfg.get("test", True):
        results = trainer.test(task, datamodule=datamodule, ckpt_path=best_path, verbose=False, weights_only=True)
        metrics.update(results[0] if results else {})
    metrics = {k: float(v) for k, v in metrics.items()}
    summary = {**metrics, "status": "finished", "epochs": trainer.current_epoch, "global_step": trainer.global_step,
               "best_epoch": best_val.get("epoch"), "best_checkpoint": best_path,
               "seconds": round(time.perf_counter() - started, 2), "first_step_s": startup.first_step_s}
    if trainer.is_global_zero:
        write_json_atomic(os.path.join(out_dir, "metrics.json"), summary)
        write_hparams(trainer, flat_hparams(hparams["config"], choices),
                      {k: v for k, v in metrics.items() if k.startswith(("test/", "val/"))})
        report(summary, out_dir)
    return summary


def resume_point(cfg: DictConfig, ckpt_dir: str, out_dir: str) -> str | None:
    """The checkpoint to resume from, if ``resume=true`` and the run folder has one."""
    from zoo.run.rebuild import check_file
    from zoo.run.reliability import read_resume_state, rewind_event_files

    if not cfg.get("resume"):
        return None
    path = os.path.join(ckpt_dir, "resume.ckpt")
    if not os.path.isfile(path):
        print(f"resume=true, but {path} does not exist: starting a fresh run in {out_dir}.")
        return None
    check_file(path)  # refused, as eval.py would refuse it, before anything in the folder changes
    state = read_resume_state(path)
    rewind_event_files(out_dir, state["global_step"])
    print(f"Resuming {out_dir} from epoch {state['epoch']}, step {state['global_step']}.")
    return path


if __name__ == "__main__":
    preflight("train", sys.argv[1:])
    main()
