"""What a run shows on the console while it trains: the progress bar and the model summary.

Both are Lightning's rich ones, told what zoo's runs are: a task trains several batches per
Lightning step (zoo/tasks/execution.py), so the bar counts batches, not steps; a task holds its
metrics (torchmetrics modules) beside its network, so the summary lists the network's layers, not
the metrics, and no FLOPs column (Lightning counts FLOPs only for a module with an example input,
and printed 0 for every row and in total)."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import RichModelSummary, RichProgressBar
from lightning.pytorch.utilities.model_summary import summarize
from torch import nn
from typing_extensions import override


class ProgressBar(RichProgressBar):
    """Lightning's rich progress bar, counting the batches of the epoch: with several batches per
    Lightning step, ``batch_idx`` counts steps, so Lightning's bar stopped short of the epoch's end
    (11/20); the fit loop's batch counter counts every batch (zoo.compat.count_inner_batch)."""

    @override
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, trainer.fit_loop.epoch_loop.batch_idx)


def _is_metric(module: nn.Module) -> bool:
    """A torchmetrics metric, or a container holding only metrics (a ModuleDict of them)."""
    from torchmetrics import Metric

    children = list(module.children())
    return isinstance(module, Metric) or (
        isinstance(module, (nn.ModuleDict, nn.ModuleList)) and bool(children) and all(map(_is_metric, children))
    )


class ModelSummary(RichModelSummary):
    """Lightning's rich model summary of the network: its layers to ``max_depth``, their parameters
    and mode, and the totals; the task's metric modules and the FLOPs Lightning cannot count
    without an example input are left out."""

    def __init__(self, max_depth: int = 1, **summarize_kwargs) -> None:
        super().__init__(max_depth, **summarize_kwargs)
        self.depth = max_depth

    @override
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.depth or not trainer.is_global_zero:
            return
        summary = summarize(pl_module, max_depth=self.depth)
        modules = dict(pl_module.named_modules())
        metrics = [n for n, m in modules.items() if n and _is_metric(m)]
        keep = [
            i
            for i, name in enumerate(summary.layer_names)
            if not any(name == m or name.startswith(f"{m}.") for m in metrics)
        ]
        counts = summary.param_nums
        self.print_table(
            [
                (str(n), summary.layer_names[i], summary.layer_types[i], counts[i], summary.training_modes[i])
                for n, i in enumerate(keep)
            ],
            summary.trainable_parameters,
            summary.total_parameters,
            summary.model_size,
        )

    @staticmethod
    def print_table(rows: list[tuple], trainable: int, total: int, size_mb: float) -> None:
        from lightning.pytorch.utilities.model_summary.model_summary import (
            get_formatted_model_size,
            get_human_readable_count,
        )
        from rich import get_console
        from rich.table import Table

        table = Table(header_style="bold magenta")
        table.add_column(" ", style="dim")
        table.add_column("Name", justify="left", no_wrap=True)
        table.add_column("Type")
        table.add_column("Params", justify="right")
        table.add_column("Mode")
        for index, name, kind, params, training in rows:
            table.add_row(index, name, kind, get_human_readable_count(params), "train" if training else "eval")
        console = get_console()
        console.print(table)
        grid = Table.grid(expand=True)
        grid.add_column()
        grid.add_row(f"[bold]Trainable params[/]: {get_human_readable_count(trainable)}")
        grid.add_row(f"[bold]Non-trainable params[/]: {get_human_readable_count(total - trainable)}")
        grid.add_row(f"[bold]Total params[/]: {get_human_readable_count(total)}")
        grid.add_row(f"[bold]Total estimated model params size (MB)[/]: {get_formatted_model_size(size_mb)}")
        console.print(grid)
