"""Views of a network on a table (data=tabular and the table presets): the predicted value against
the true one, and which columns the predictions depend on (permutation feature importance)."""

from __future__ import annotations

import lightning as L
import torch
from typing_extensions import override

from zoo.callbacks.common import FigureBudget, logging_step, tensorboards


def _spec(trainer):
    spec = getattr(trainer.datamodule, "spec", None) if trainer.datamodule is not None else None
    return spec if getattr(spec, "kind", None) == "table" else None


class PredictedVsTrue(L.Callback):
    """A regression's predictions against the truth, one dot per row, with the line y = x and the
    split's R2 in the title: ``val/predicted_vs_true`` after validation epochs (within
    ``figure_budget`` of the run's time, the last epoch's always) and ``test/predicted_vs_true`` after
    the test. Reads ``outputs["prediction"]`` and ``outputs["truth"]`` (the target's own scale) of the
    task's steps; does nothing for a classifier. ``max_points``: the rows drawn (the first ones)."""

    def __init__(self, max_points: int = 2000, figure_budget: float | None = 0.05):
        self.max_points = max_points
        self.budget = FigureBudget(figure_budget)
        self.points: list[tuple[torch.Tensor, torch.Tensor]] = []

    def _collect(self, trainer, outputs) -> None:
        if trainer.sanity_checking or not isinstance(outputs, dict) or "prediction" not in outputs:
            return
        if sum(len(p) for p, _ in self.points) < self.max_points:
            self.points.append((outputs["prediction"].float().cpu(), outputs["truth"].float().cpu()))

    @override
    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self.points = []

    @override
    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self.points = []

    @override
    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(trainer, outputs)

    @override
    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(trainer, outputs)

    def _values(self):
        pred = torch.cat([p for p, _ in self.points])[: self.max_points]
        truth = torch.cat([t for _, t in self.points])[: self.max_points]
        return pred, truth

    @override
    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not self.points or not tensorboards(trainer):
            return
        pred, truth = self._values()
        step, epoch = logging_step(trainer), trainer.current_epoch
        self.budget.draw(trainer, lambda: self.write(trainer, "val", pred, truth, step, f"validation, epoch {epoch}"))

    @override
    def on_fit_end(self, trainer, pl_module) -> None:
        self.budget.finish()

    @override
    def on_test_epoch_end(self, trainer, pl_module) -> None:
        if not self.points or not tensorboards(trainer):
            return
        pred, truth = self._values()
        self.write(trainer, "test", pred, truth, trainer.global_step, "test")

    def write(self, trainer, stage: str, pred: torch.Tensor, truth: torch.Tensor, step: int, title: str) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        spec = _spec(trainer)
        name = spec.target if spec is not None and spec.target else "target"
        total = ((truth - truth.mean()) ** 2).sum()
        r2 = 1 - ((truth - pred) ** 2).sum() / total if total > 0 else float("nan")
        fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
        ax.scatter(truth.numpy(), pred.numpy(), s=6, alpha=0.5, color="tab:blue", edgecolors="none")
        lo, hi = float(min(truth.min(), pred.min())), float(max(truth.max(), pred.max()))
        ax.plot([lo, hi], [lo, hi], color="0.3", lw=1, ls="--", label="predicted = true")
        ax.set_xlabel(f"true {name}", fontsize=8)
        ax.set_ylabel(f"predicted {name}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="upper left")
        ax.set_title(f"{title}: R2 {float(r2):.3f}, {len(truth):,} rows", fontsize=9)
        fig.tight_layout()
        for w in tensorboards(trainer):
            w.add_figure(f"{stage}/predicted_vs_true", fig, step, close=False)
        plt.close(fig)


class PermutationImportance(L.Callback):
    """Permutation feature importance (Breiman 2001; scikit-learn's permutation_importance) on the
    test split: for each column of the table, its values are shuffled across the rows (its missing
    indicator with it) ``repeats`` times, and the drop of the score from the unshuffled one is the
    column's importance: accuracy for a classifier, R2 for a regression. A bar chart
    (``test/permutation_importance`` in the Images tab) and a table with the spread over the repeats
    (the Text tab); ``importances`` holds {column: (mean, std)}. ``max_rows``: the test rows used."""

    def __init__(self, repeats: int = 5, max_rows: int = 5000, seed: int = 0):
        self.repeats, self.max_rows, self.seed = repeats, max_rows, seed
        self.batches: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.importances: dict[str, tuple[float, float]] = {}
        self.score_name = ""

    @override
    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self.batches = []

    @override
    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if _spec(trainer) is not None and sum(len(x) for x, _ in self.batches) < self.max_rows:
            self.batches.append((batch[0].detach(), batch[1].detach()))

    def score(self, net, x: torch.Tensor, y: torch.Tensor, classify: bool) -> float:
        out = net(x)
        if classify:
            return float((out.argmax(dim=1) == y).float().mean())
        pred = out.reshape(len(out), -1)[:, 0]
        total = ((y - y.mean()) ** 2).sum()
        return float(1 - ((y - pred) ** 2).sum() / total) if total > 0 else 0.0

    @override
    def on_test_epoch_end(self, trainer, pl_module) -> None:
        spec, writers = _spec(trainer), tensorboards(trainer)
        if spec is None or not self.batches or self.repeats < 1 or not writers:
            return
        x = torch.cat([b[0] for b in self.batches])[: self.max_rows]
        y = torch.cat([b[1] for b in self.batches])[: self.max_rows]
        classify = spec.task == "classify"
        self.score_name = "accuracy" if classify else "R2"
        net, training = pl_module.net, pl_module.net.training
        net.eval()
        g = torch.Generator().manual_seed(self.seed)
        groups: dict[str, list[int]] = {}
        for i, column in enumerate(spec.columns):
            groups.setdefault(column, []).append(i)
        try:
            with torch.no_grad():
                base = self.score(net, x, y, classify)
                for column, index in groups.items():
                    cols = torch.tensor(index, device=x.device)
                    drops = []
                    for _ in range(self.repeats):
                        order = torch.randperm(len(x), generator=g).to(x.device)
                        shuffled = x.clone()
                        shuffled[:, cols] = x[order][:, cols]
                        drops.append(base - self.score(net, shuffled, y, classify))
                    d = torch.tensor(drops)
                    self.importances[column] = (float(d.mean()), float(d.std()) if len(d) > 1 else 0.0)
        finally:
            net.train(training)
        self.write(writers, trainer.global_step, base, len(x))

    def write(self, writers: list, step: int, base: float, rows: int) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        ranked = sorted(self.importances.items(), key=lambda kv: kv[1][0], reverse=True)
        lines = [
            f"Test {self.score_name} {base:.4f} on {rows:,} rows; the drop when a column is shuffled "
            f"({self.repeats} repeats):",
            "",
            "| column | importance | std |",
            "|---|---:|---:|",
        ] + [f"| {c.replace('|', '/')} | {m:.4f} | {s:.4f} |" for c, (m, s) in ranked]
        shown = ranked[:30][::-1]  # the most important at the top
        fig, ax = plt.subplots(figsize=(6, 0.25 * len(shown) + 1.2), dpi=100)
        ax.barh([c for c, _ in shown], [m for _, (m, _) in shown], xerr=[s for _, (_, s) in shown], color="tab:blue")
        ax.axvline(0, color="0.3", lw=0.8)
        ax.set_xlabel(f"drop of test {self.score_name} when shuffled", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_title(f"permutation importance (test {self.score_name} {base:.3f})", fontsize=9)
        fig.tight_layout()
        for w in writers:
            w.add_figure("test/permutation_importance", fig, step, close=False)
            w.add_text("test/permutation_importance", "\n".join(lines), step)
        plt.close(fig)
