"""What the observability callbacks share: the run's TensorBoard writers, the logging step, the
every-N-batches schedule, per-layer names (by type and position: conv1, bn1, fc2) and image grids.

Callbacks work with any task: gradients are read in ``on_before_optimizer_step``, after Lightning's
precision plugin has unscaled them, so the norms under mixed precision are the true ones."""

from __future__ import annotations

import math
import time
import weakref
from collections.abc import Callable

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from typing_extensions import override

from zoo import compat
from zoo.errors import UserError
from zoo.nets.naming import layer_names, parameter_names


class FigureBudget:
    """When a per-epoch figure is drawn. A matplotlib figure costs 0.1-1 s on a CPU whatever the
    epoch's length: a small forecaster's epoch takes a fraction of that, so drawing every epoch would
    more than double its run (benchmarks/bench_train.py). A figure is drawn when the time spent drawing
    stays within ``share`` of the time since the run's first figure was due; the first one is always
    drawn, and the last one skipped is drawn when fitting ends (``finish``), so the final epoch's
    figure is always there. Long epochs get a figure every epoch.

    The budget is the run's, not each callback's: the callbacks drawing in one fit (a forecaster's
    forecast plot and gradient-flow figure) split it evenly, each held to its ``share`` divided by
    their number, so a second figure does not double the time figures take.

    ``share=None`` draws every epoch: which epochs get a figure then does not depend on timing
    (tests that compare the events of two runs set it); such a callback takes no part of the others'
    budget."""

    # Per fit (the trainer, weakly held: a finished run's ledger goes with it): when the first figure
    # was due, and each budget's drawing time.
    _ledgers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __init__(self, share: float | None = 0.05):
        if share is not None and not 0 < share <= 1:
            raise UserError(
                f"figure_budget must be a share of the run's time in (0, 1] or null (every epoch), got {share}; "
                "e.g. 0.05."
            )
        self.share = share
        self.skipped: Callable[[], None] | None = None

    def draw(self, trainer, make: Callable[[], None]) -> None:
        """Calls ``make`` (which draws and writes one figure) now if the budget of ``trainer``'s fit
        allows, else keeps it for ``finish``: ``make`` must hold the values it draws, not read them later."""
        now = time.perf_counter()
        ledger = self._ledgers.setdefault(trainer, {"since": now, "spent": {}})
        spent: dict[FigureBudget, float] = ledger["spent"]
        if self.share is not None:
            spent.setdefault(self, 0.0)
            allowed = self.share * (now - ledger["since"]) / len(spent)
            if spent[self] > allowed:
                self.skipped = make
                return
        self.skipped = None
        make()
        if self.share is not None:
            spent[self] += time.perf_counter() - now

    def finish(self) -> None:
        """Draws the last figure that was skipped (at the end of fitting)."""
        make, self.skipped = self.skipped, None
        if make is not None:
            make()


def tensorboards(trainer: L.Trainer) -> list:
    """The SummaryWriters of the run's TensorBoard loggers (none when TensorBoard is off)."""
    return [lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]


def named_params_of(pl_module: L.LightningModule, optimizer) -> list[tuple[str, torch.nn.Parameter]]:
    """The named parameters this optimizer steps (one network of a GAN, or all of a classifier)."""
    stepped = {id(p) for group in optimizer.param_groups for p in group["params"]}
    return [(n, p) for n, p in pl_module.named_parameters() if id(p) in stepped]


def optimizer_prefix(trainer: L.Trainer, optimizer) -> str:
    """'' with one optimizer; with several, the name of the optimizer's parameter group
    ('generator/', 'discriminator/': a GAN names them), else 'opt<i>/'."""
    opts = [getattr(o, "optimizer", o) for o in trainer.optimizers]
    if len(opts) < 2:
        return ""
    inner = getattr(optimizer, "optimizer", optimizer)
    name = inner.param_groups[0].get("name") if inner.param_groups else None
    return f"{name}/" if name else f"opt{next((i for i, o in enumerate(opts) if o is inner), 0)}/"


def logging_step(trainer: L.Trainer) -> int:
    """The step Lightning's loggers write ``self.log`` scalars at: one per training batch, however
    many optimizers step in it (``global_step`` counts both of a GAN's steps). With one optimizer
    it equals ``global_step``."""
    return compat.batches_that_stepped(trainer)


def epoch_end_step(trainer: L.Trainer) -> int:
    """The step of what a callback writes at a training epoch's end: the epoch's last step, where
    Lightning writes the epoch's metrics (so a run resumed from that epoch's end writes it once)."""
    return max(logging_step(trainer) - 1, 0)


def resumed(trainer: L.Trainer) -> bool:
    """Whether this fit continues a run from a checkpoint (what a run writes once is already there)."""
    return bool(trainer.ckpt_path) or trainer.global_step > 0 or logging_step(trainer) > 0


class OnFirstBatch(L.Callback):
    """For the views a run writes once, from its first training batch (the model graph, the input
    samples, a GAN's real images): ``write`` is called once with the run's TensorBoard writers; not
    at all without TensorBoard, or when the fit resumes a run (its first fit wrote them already)."""

    done = False

    @override
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.done:
            return
        self.done = True
        writers = [] if resumed(trainer) else tensorboards(trainer)
        if writers:
            self.write(writers, trainer, pl_module, batch)

    def write(self, writers: list, trainer: L.Trainer, pl_module: L.LightningModule, batch) -> None:
        raise NotImplementedError


class EveryNSteps:
    """For callbacks that act in ``on_before_optimizer_step`` every ``every_n_steps`` batches:
    each optimizer at its first step in every such window, so a network that does not step on every
    batch (a GAN's generator with n_critic > 1) is still seen, at the same interval as the others."""

    every_n_steps: int

    def batch_interval(self) -> tuple[int, int] | None:
        """The batches b this acts on with one optimizer, b % n == 0: an execution of several batches
        per step (zoo/tasks/execution.py) ends on them, so this hook sees them."""
        return (self.every_n_steps, 0) if self.every_n_steps > 0 else None

    def _due(self, trainer: L.Trainer, optimizer) -> bool:
        if self.every_n_steps <= 0:
            return False
        last = self.__dict__.setdefault("_last_window", {})
        batch = logging_step(trainer)
        window = batch // self.every_n_steps
        key = id(getattr(optimizer, "optimizer", optimizer))
        # A run resumed inside a window has had that window's turn already (unless it starts on it).
        if last.get(key, (batch - 1) // self.every_n_steps) >= window:
            return False
        last[key] = window
        return True


# The tags of the diagnostics (per-layer gradient norms, histograms, step time, and the training
# diagnostics of other callbacks) start with this; TensorBoard shows them as 20_watch/..., the last
# section, after the train, val and test a user reads first (zoo.callbacks.logger.SECTIONS).
WATCH = "watch/"


def layer_names_of(pl_module: L.LightningModule, named: list[tuple[str, torch.nn.Parameter]]) -> dict[str, str]:
    """For each of these named parameters (one optimizer's), its layer by type and position among
    them (``conv1``, ``bn1``, ``fc2``: zoo/nets/naming.py)."""
    return layer_names(pl_module, [n for n, _ in named])


def layer_layout(
    cache: dict, pl_module: L.LightningModule, named: list[tuple[str, torch.nn.Parameter]], stepped: list[str]
) -> tuple[list[str], torch.Tensor]:
    """The layers of the parameters ``stepped`` (named by type and position among ``named``: conv1,
    bn1, fc2) and each one's layer index, kept in ``cache`` per network and set of names: naming walks
    the network, and the per-layer readings ask on every reading."""
    key = (id(pl_module), *stepped)
    if key not in cache:
        names = layer_names_of(pl_module, named)
        layers = list(dict.fromkeys(names[n] for n in stepped))
        cache[key] = (layers, torch.tensor([layers.index(names[n]) for n in stepped]))
    return cache[key]


def parameter_tags_of(pl_module: L.LightningModule, named: list[tuple[str, torch.nn.Parameter]]) -> dict[str, str]:
    """For each of these named parameters, ``<layer>.<parameter>`` (``conv1.weight``, ``lstm2.bias_hh``)."""
    return {
        full: f"{layer}.{leaf}" for full, (layer, leaf) in parameter_names(pl_module, [n for n, _ in named]).items()
    }


def image_grid(images: torch.Tensor, columns: int) -> torch.Tensor:
    """(N, C, H, W) in [0, 1] -> one (C, H', W') image, small images enlarged to >= 28 px so
    TensorBoard shows 8x8 digits at a visible size."""
    from torchvision.utils import make_grid

    scale = max(1, math.ceil(28 / images.shape[-1]))
    if scale > 1:
        images = torch.nn.functional.interpolate(images, scale_factor=scale, mode="nearest")
    return make_grid(images.detach().float().cpu(), nrow=columns, padding=2, pad_value=1.0)
