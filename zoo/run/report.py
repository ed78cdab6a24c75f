"""What a finished run reports: metrics.json, the results table on the console and the HParams tab in TensorBoard."""

from __future__ import annotations

import os
import shlex
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import lightning as L


def flat_hparams(config: dict, choices: dict[str, str]) -> dict:
    """The hyper-parameters shown in TensorBoard's HParams tab: the group choices and every value
    of the data, model, optimizer and scheduler configs, plus the trainer settings that change results."""
    flat: dict = {f"choice/{k}": v for k, v in choices.items()}

    def walk(prefix: str, node) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k not in ("_target_", "_partial_", "data_dir", "mirror"):
                    walk(f"{prefix}.{k}", v)
        else:
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
    for k in ("epochs", "best_epoch", "seconds", "first_step_s"):
        if k in summary:
            table.add_row(k, str(summary[k]))
    console = Console()
    console.print(table)
    if out_dir:
        console.print(f"Run folder: {out_dir}", soft_wrap=True, markup=False)
        console.print(f"TensorBoard: tensorboard --logdir {shlex.quote(out_dir)}", soft_wrap=True, markup=False)


def write_hparams(trainer: L.Trainer, params: dict, metrics: dict[str, float]) -> None:
    """The HParams tab: the run's hyper-parameters next to its real final metrics.

    The metric values come from the scalars of the same names already in the event file, so
    nothing is written twice and there is no ``hp_metric = -1`` placeholder. In a sweep, the
    columns of the tab (the "experiment") are written once for all runs by zoo.sweeps.summary.SweepSummary."""
    from torch.utils.tensorboard.summary import hparams
    from torch.utils.tensorboard.writer import FileWriter

    from zoo.callbacks.common import tensorboards
    from zoo.run.job import in_multirun

    for w in tensorboards(trainer):
        exp, ssi, sei = hparams(params, metrics)
        # The logger has closed its writer by now (file_writer is None): a new events file in the same folder.
        writer = w.file_writer or FileWriter(w.get_logdir())
        for summary in (ssi, sei) if in_multirun() else (exp, ssi, sei):
            writer.add_summary(summary)
        if writer is w.file_writer:
            writer.flush()
        else:
            writer.close()


def publish(trainer: L.Trainer, summary: dict, config: dict, choices: dict[str, str], out_dir: str) -> None:
    """A finished run's report: metrics.json, the HParams tab (its hyper-parameters next to its final
    validation and test metrics) and the table on the console."""
    from zoo.run.files import write_json_atomic

    write_json_atomic(os.path.join(out_dir, "metrics.json"), summary)
    write_hparams(
        trainer, flat_hparams(config, choices), {k: v for k, v in summary.items() if k.startswith(("test/", "val/"))}
    )
    report(summary, out_dir)
