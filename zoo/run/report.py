"""What a finished run reports: metrics.json, the results table on the console and the HParams tab in TensorBoard."""

from __future__ import annotations

import os
import shlex
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import lightning as L


# Group choices worth a column: what a run is. callbacks, logger, trainer, paths, debug do not
# change what is learnt (the trainer values that do are listed below).
HPARAM_CHOICES = ("model", "data", "optimizer", "scheduler", "experiment")
# Keys that say where or how fast, not what: never a column.
NOT_HPARAMS = (
    "_target_",
    "_partial_",
    "data_dir",
    "mirror",
    "download",
    "seed",
    "data_on_device",
    "num_workers",
    "eval_batch_size",
)
BEST = "best/"  # the best epoch's validation metrics (metrics.json's val/*) as their own tags: best/val/acc


def flat_hparams(config: dict, choices: dict[str, str]) -> dict:
    """The hyper-parameters shown in TensorBoard's HParams tab: the group choices that say what a
    run is (``choice/model``, ``choice/data``, ...) and every value of the data, model, optimizer and
    scheduler configs, plus the trainer settings that change results and the seed."""
    flat: dict = {f"choice/{k}": v for k, v in choices.items() if k in HPARAM_CHOICES}

    def walk(prefix: str, node) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k not in NOT_HPARAMS:
                    walk(f"{prefix}.{k}", v)
        elif node is not None:
            flat[prefix] = node if isinstance(node, (int, float, str, bool)) else str(node)

    for group in ("data", "model", "optimizer", "scheduler"):
        walk(group, config.get(group, {}))
    for key in ("max_epochs", "max_steps", "max_time", "precision", "accumulate_grad_batches", "gradient_clip_val"):
        walk(f"trainer.{key}", config["trainer"].get(key))
    flat["seed"] = config.get("seed")
    return flat


def report(summary: dict, out_dir: str | None = None) -> None:
    """The metrics as a small table; for a run, where its folder is and how to look at it."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Results")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k in sorted(k for k in summary if "/" in k):
        table.add_row(k, f"{summary[k]:.4f}")
    for k in ("epochs", "best_epoch", "seconds", "first_step_s", "steps_per_execution"):
        if k in summary:
            table.add_row(k, str(summary[k]))
    threads = summary.get("threads")
    if isinstance(threads, dict) and threads.get("chosen") is not None:
        times = ", ".join(f"{n}: {ms:g} ms" for n, ms in threads.get("batch_ms", {}).items())
        others = threads.get("other_cores")
        untimed = threads.get("not_timed")
        if untimed and times:  # counts the busy cores left no room for (zoo/tasks/threads.py)
            times += f"; {', '.join(map(str, untimed))} not timed"
        busy = f"; other processes busy on {others:g} cores" if others is not None and times else ""
        table.add_row("threads", f"{threads['chosen']}" + (f" (per batch {times}{busy})" if times else ""))
    console = Console()
    console.print(table)
    if out_dir:
        console.print(f"Run folder: {out_dir}", soft_wrap=True, markup=False)
        if has_events(out_dir):  # logger=csv or none: nothing for TensorBoard to show
            console.print(f"TensorBoard: tensorboard --logdir {shlex.quote(out_dir)}", soft_wrap=True, markup=False)


def has_events(folder: str) -> bool:
    """Whether TensorBoard would find an event file in ``folder`` (at any depth)."""
    import os

    return any(n.startswith("events.out.tfevents.") for _, _, names in os.walk(folder) for n in names)


def write_hparams(trainer: L.Trainer, params: dict, summary: dict) -> None:
    """The HParams tab: the run's hyper-parameters next to its real final metrics.

    Each run writes its session (its hyper-parameters and that it ended) and, as scalars, the
    validation metrics of its best epoch (``best/val/acc``: the ``val/*`` of metrics.json; the
    ``val/*`` curves end at the last epoch) and ``best/epoch``. No run writes the tab's columns (an
    "experiment"): TensorBoard then builds them itself from every run in the logs folder it reads,
    whatever their task (each run's metrics and hyper-parameters, refreshed as runs are added),
    and puts the hyper-parameters whose values differ between runs first: in a sweep, the swept ones.
    There is no ``hp_metric = -1`` placeholder. The writer is closed here: the run's events are complete."""
    from torch.utils.tensorboard.summary import hparams
    from torch.utils.tensorboard.writer import FileWriter

    from zoo.callbacks.common import logging_step, tensorboards

    best = {f"{BEST}{k}": v for k, v in summary.items() if k.startswith("val/") and isinstance(v, (int, float))}
    if summary.get("best_epoch") is not None:
        best[f"{BEST}epoch"] = summary["best_epoch"]
    for logger in trainer.loggers:
        if best:
            logger.log_metrics(best, step=logging_step(trainer))
    for w in tensorboards(trainer):
        _, ssi, sei = hparams(params, {})
        # A logger other than zoo's may have closed its writer by now: then a new events file.
        writer = w.file_writer or FileWriter(w.get_logdir())
        for item in (ssi, sei):
            writer.add_summary(item)
        if writer is not w.file_writer:
            writer.close()
    for logger in trainer.loggers:
        close = getattr(logger, "close", None)
        if callable(close):
            close()
        else:
            logger.finalize("success")


def publish(trainer: L.Trainer, summary: dict, config: dict, choices: dict[str, str], out_dir: str) -> None:
    """A finished run's report: metrics.json, the HParams tab (its hyper-parameters next to its final
    validation and test metrics) and the table on the console."""
    from zoo.run.files import write_json_atomic

    write_json_atomic(os.path.join(out_dir, "metrics.json"), summary)
    write_hparams(trainer, flat_hparams(config, choices), summary)
    report(summary, out_dir)
