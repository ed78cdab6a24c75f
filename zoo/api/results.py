"""What a run left in its folder, read back in Python: ``Run`` (``zoo.open_run``) and ``compare``.

A run folder (``logs/runs/<name>/``) holds ``metrics.json`` (the run's outcome, its best epoch's
validation metrics, test metrics, diagnoses), ``.hydra/`` (its config and overrides) and one
TensorBoard events file (every scalar it logged). ``Run.history`` is read from the events with
TensorBoard's own ``EventAccumulator``: the epoch-end scalars of the ``train`` and ``val`` sections,
one row per epoch. The figures are Matplotlib's: ``Run.plot`` (learning curves, the best epoch
marked), ``Run.plot_gradients`` (the gradient-flow figure of zoo/callbacks/signals.py, from the
per-layer scalars the run logged), ``compare`` (several runs' curves on one figure).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.errors import UserError
from zoo.run.files import read_json

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from zoo.run.predict import Predictor

EVENTS_PREFIX = "events.out.tfevents."


def _plain_tag(tag: str) -> str:
    """A TensorBoard tag back in the names metrics.json uses: ``2_val/acc`` -> ``val/acc``."""
    from zoo.callbacks.logger import SECTIONS

    numbered = {v: k for k, v in SECTIONS.items()}
    section, slash, rest = tag.partition("/")
    return numbered[section] + slash + rest if slash and section in numbered else tag


def read_scalars(folder: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the run folder's events files: ``{plain tag: [(step, value), ...]}``, in the
    order the run first wrote each tag (per-layer tags: input to output), steps ascending."""
    events = _events(folder, "scalars")
    if events is None:
        return {}
    out: dict[str, list[tuple[int, float]]] = {}
    for tag in events.Tags()["scalars"]:
        points = {e.step: e.value for e in events.Scalars(tag)}  # a step written again (resume) counts once
        out[_plain_tag(tag)] = sorted(points.items())
    return out


def _events(folder, kind: str):
    """TensorBoard's EventAccumulator over the run folder, keeping every event of ``kind`` (None: no events)."""
    from tensorboard.backend.event_processing import event_accumulator as ea

    folder = str(folder)
    if not any(n.startswith(EVENTS_PREFIX) for n in os.listdir(folder)):
        return None
    guidance = {ea.SCALARS: 0, ea.IMAGES: 0, ea.TENSORS: 0} if kind != "scalars" else {ea.SCALARS: 0}
    events = ea.EventAccumulator(folder, size_guidance=guidance)  # 0: keep every point
    events.Reload()
    return events


def history_of(scalars: dict[str, list[tuple[int, float]]]) -> pd.DataFrame:
    """One row per epoch (index ``epoch``, from 0): the epoch's ``train/*`` and ``val/*`` metrics (the
    epoch-end values, not the ``*_step`` ones), the ``lr/*`` in use at its end, and ``step``: the
    training step at which the epoch ended."""
    import pandas as pd

    epoch_tags = [t for t in scalars if t.split("/", 1)[0] in ("train", "val") and "/" in t and not t.endswith("_step")]
    if not epoch_tags:
        return pd.DataFrame(index=pd.RangeIndex(0, name="epoch"))
    steps = sorted({s for t in epoch_tags for s, _ in scalars[t]})
    table = pd.DataFrame({t: pd.Series(dict(scalars[t])) for t in epoch_tags}).reindex(steps)
    for tag in (t for t in scalars if t.startswith("lr/")):
        series = pd.Series(dict(scalars[tag])).sort_index()
        table[tag] = [series[series.index <= s].iloc[-1] if (series.index <= s).any() else math.nan for s in steps]
    ordered = sorted(epoch_tags, key=lambda t: (t.split("/", 1)[0] != "train", t)) + [
        c for c in table.columns if c not in epoch_tags
    ]
    table = table[ordered]
    table.insert(0, "step", steps)
    table.index = pd.RangeIndex(len(steps), name="epoch")
    return table


class Run:
    """A run folder, read back: ``zoo.train`` returns one, ``zoo.open_run(folder)`` opens one.

    Attributes read the folder each time, so a run still training shows its epochs so far.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder).resolve()

    def __repr__(self) -> str:
        m = self.metrics
        shown = ", ".join(f"{k}={v:.4g}" for k, v in m.items() if k.startswith(("val/", "test/")) and _number(v))
        return f"Run('{self.folder}', {m.get('status', 'running')}{', ' + shown if shown else ''})"

    # ---- what the run recorded -------------------------------------------------------------------

    @property
    def metrics(self) -> dict:
        """metrics.json: ``status``, the best epoch's ``val/*``, the ``test/*`` of its checkpoint,
        ``epochs``, ``best_epoch``, ``best_checkpoint``, ``seconds``, ``diagnoses`` (empty while it runs)."""
        return read_json(str(self.folder / "metrics.json")) or {}

    @property
    def status(self) -> str | None:
        """finished, interrupted, diverged or failed (None: still running, or never started)."""
        return self.metrics.get("status")

    @property
    def diagnoses(self) -> list[dict]:
        """What the run's diagnostics found (zoo/callbacks/diagnostics.py): one dict per finding, with
        its ``kind``, ``step``, ``layer`` and the ``message`` that says what to try."""
        return list(self.metrics.get("diagnoses") or [])

    @property
    def overrides(self) -> list[str]:
        """The overrides the run was started with (``.hydra/overrides.yaml``)."""
        from omegaconf import OmegaConf

        path = self.folder / ".hydra" / "overrides.yaml"
        return [str(o) for o in OmegaConf.load(path)] if path.is_file() else []

    @property
    def config(self):
        """The run's composed config (``.hydra/config.yaml``), an OmegaConf DictConfig; None if absent."""
        from omegaconf import OmegaConf

        path = self.folder / ".hydra" / "config.yaml"
        return OmegaConf.load(path) if path.is_file() else None

    def scalars(self) -> dict[str, list[tuple[int, float]]]:
        """Every scalar the run logged to TensorBoard, ``{tag: [(step, value), ...]}`` (plain tags: ``val/acc``)."""
        return read_scalars(self.folder)

    def images(self, tag: str) -> list[tuple[int, object]]:
        """The images the run logged under ``tag`` (TensorBoard's Images tab, plain tag: ``samples/fixed_noise``,
        ``test/saliency``, ``test/misclassified``, ``watch/gradient_flow``): ``[(step, array), ...]``, each
        an (H, W, channels) NumPy array of floats in [0, 1], in step order."""
        import io

        import matplotlib.image as mpimg

        found = _events(self.folder, "images")
        if not found:
            return []
        tags = {_plain_tag(t): t for t in found.Tags()["images"]}
        if tag not in tags:
            raise UserError(f"{tag!r} is not an image of this run; it has: {', '.join(sorted(tags)) or 'none'}.")
        return [
            (e.step, mpimg.imread(io.BytesIO(e.encoded_image_string), format="png")) for e in found.Images(tags[tag])
        ]

    def texts(self, tag: str) -> list[tuple[int, str]]:
        """The texts the run logged under ``tag`` (TensorBoard's Text tab, plain tag: ``samples/generated``,
        ``watch/diagnoses/<kind>``): ``[(step, text), ...]`` in step order."""
        found = _events(self.folder, "tensors")
        if not found:
            return []
        tags = {_plain_tag(t): t for t in found.Tags()["tensors"] if t.endswith("/text_summary")}
        key = f"{tag}/text_summary"
        if key not in tags:
            shown = sorted(t.removesuffix("/text_summary") for t in tags)
            raise UserError(f"{tag!r} is not a text of this run; it has: {', '.join(shown) or 'none'}.")
        out = []
        for e in found.Tensors(tags[key]):
            values = e.tensor_proto.string_val
            out.append((e.step, "\n".join(v.decode("utf-8", "replace") for v in values)))
        return out

    @property
    def history(self) -> pd.DataFrame:
        """A pandas DataFrame, one row per epoch (index ``epoch`` from 0): ``step`` (the training step it
        ended at) and every epoch metric the run logged (``train/loss``, ``train/acc``, ``val/loss``,
        ``val/acc``, ..., ``lr/net``), read from its TensorBoard events."""
        return history_of(self.scalars())

    @property
    def monitor(self) -> str:
        """The metric the best checkpoint was chosen by (``val/acc`` for a classifier, else ``val/loss``)."""
        from omegaconf import OmegaConf

        cfg = self.config
        found = OmegaConf.select(cfg, "callbacks.checkpoint.monitor", default=None) if cfg is not None else None
        return str(found) if found else "val/loss"

    # ---- figures ---------------------------------------------------------------------------------

    def plot(self, metric: str | None = None) -> Figure:
        """Learning curves (a Matplotlib figure): the loss and the main metric (the one the best
        checkpoint was chosen by, or ``metric``, e.g. ``"acc"``), train against validation per epoch,
        the best epoch marked."""
        history = self.history
        if history.empty:
            raise UserError(
                f"{self.folder} holds no epoch metrics in TensorBoard events (logger=none, or no epoch "
                f"ended yet); train with the default logger=tensorboard to plot its curves."
            )
        names = _curve_names(history, metric or self.monitor)
        fig, axes = _figure(len(names))
        best = self.metrics.get("best_epoch")
        for ax, name in zip(axes, names):
            for column in _columns_of(history, name):
                style = "o-" if column.startswith("train/") else "s-"
                label = column.split("/", 1)[0] if column.endswith(f"/{name}") else column  # a GAN's d_loss, g_loss
                ax.plot(history.index, history[column], style, markersize=3, label=label)
            if best is not None:
                ax.axvline(best, color="grey", linestyle="--", linewidth=1, label=f"best epoch ({best})")
            ax.set_title(name)
            _epoch_axis(ax)
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
        fig.suptitle(self.folder.name, fontsize=9)
        fig.tight_layout()
        return fig

    def plot_gradients(self, epoch: int | None = None, network: str | None = None) -> Figure:
        """The gradient-flow figure of an epoch (the last by default), as TensorBoard's Images tab
        shows it (``watch/gradient_flow``): per layer, input to output, the median gradient norm and
        update ratio of the epoch's readings on a log scale, the 1e-3 rule of thumb marked.
        ``network``: ``"generator"`` or ``"discriminator"`` for a GAN (the first by default)."""
        from zoo.callbacks.signals import gradient_flow_figure

        scalars = self.scalars()
        profiles = gradient_profiles(scalars)
        if not profiles:
            raise UserError(
                f"{self.folder} logged no per-layer gradient norms (callbacks.gradient_norms and "
                f"callbacks.signals were off, or no reading step ran); train with the default callbacks."
            )
        if network is not None and network not in profiles:
            names = ", ".join(repr(p) for p in profiles)
            raise UserError(f"network={network!r} is not one of this run's networks: {names}.")
        name = network if network is not None else next(iter(profiles))
        grads, ratios = profiles[name]
        ends = list(history_of(scalars)["step"]) if "step" in history_of(scalars) else []
        last = max(s for points in grads.values() for s, _ in points)
        chosen = len(ends) - 1 if epoch is None else epoch
        if ends and not 0 <= chosen < len(ends):
            raise UserError(f"epoch={epoch} is not an epoch of this run; give one from 0 to {len(ends) - 1}.")
        high = ends[chosen] if ends else last
        low = ends[chosen - 1] if ends and chosen > 0 else -1
        if epoch is None and ends and last > high:  # readings after the last epoch's end (a stopped run)
            low, high = high, last

        def median(points):
            values = [v for s, v in points if low < s <= high and math.isfinite(v)]
            if not values:  # no reading in that epoch (a short epoch): its latest reading before
                values = [v for s, v in points if s <= high][-1:]
            return sorted(values)[len(values) // 2] if values else math.nan

        layers = list(grads)
        title = f"{name + ' ' if name else ''}epoch {chosen}" if ends else name
        from zoo.api.launch import kept_matplotlib_backend

        with kept_matplotlib_backend():  # the figure's function selects Agg; a notebook keeps its own
            fig = gradient_flow_figure(
                layers, [median(grads[n]) for n in layers], [median(ratios.get(n, [])) for n in layers], title
            )
        _detach(fig)
        return fig

    # ---- the trained model and the run's continuation ------------------------------------------------

    def load(self, checkpoint: str = "best", **options: Any) -> Predictor:
        """The trained model, as ``zoo.load`` gives it: a ``Predictor`` whose ``predict(x)`` answers new
        inputs (images, texts, series) with a DataFrame, its network in ``.task.net``.

        Args:
            checkpoint: ``"best"`` (the checkpoint the run kept by its monitored metric, as metrics.json
                names it), ``"last"``, or a file name in the run's ``checkpoints/``.
            **options: ``zoo.load``'s options (``data_dir``, ``accelerator``, ``batch_size``, ...).
        """
        from zoo.run.predict import load

        folder = self.folder / "checkpoints"
        if checkpoint == "best" and self.metrics.get("best_checkpoint"):
            path = Path(self.metrics["best_checkpoint"])
            if not path.is_absolute() or not path.is_file():  # a moved run folder: the same name in it
                path = folder / path.name
        else:
            path = folder / ("last.ckpt" if checkpoint in ("best", "last") else checkpoint)
        if not path.is_file():
            kept = sorted(p.name for p in folder.glob("*.ckpt")) if folder.is_dir() else []
            raise UserError(
                f"{self.folder} has no checkpoint {path.name}; it has: {', '.join(kept) or 'none'} "
                f"(a run keeps checkpoints unless callbacks.checkpoint=null)."
            )
        return load(str(path), **options)

    def resume(self, *overrides: str):
        """Continue this run (stopped by the stop button, Ctrl-C, or a budget you now raise with
        ``overrides``, e.g. ``"trainer.max_epochs=20"``) from its ``checkpoints/resume.ckpt``."""
        from zoo.api.launch import _RUN_KEYS, _key, quoted_folder, train

        kept = [o for o in self.overrides if _key(o) not in _RUN_KEYS]
        return train(*kept, *overrides, "resume=true", quoted_folder("hydra.run.dir", str(self.folder)))

    def tensorboard(self) -> str:
        """The command that shows this run in TensorBoard (in a notebook: ``%load_ext tensorboard``, then
        ``%tensorboard --logdir <folder>``)."""
        return f"tensorboard --logdir {self.folder}"


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _columns_of(history, name: str) -> list[str]:
    """The train and val columns of a panel: ``train/acc``, ``val/acc``; for ``loss`` every loss (a GAN
    logs ``train/d_loss`` and ``train/g_loss``, no ``train/loss``)."""
    out = []
    for split in ("train", "val"):
        for column in history.columns:
            leaf = column.split("/", 1)[1] if column.startswith(f"{split}/") else None
            if leaf is None or not history[column].notna().any():
                continue
            if leaf == name or (name == "loss" and leaf.endswith("_loss") and f"{split}/loss" not in history):
                out.append(column)
    return out


def _curve_names(history, metric: str) -> list[str]:
    """The loss, and the main metric when it is another one (``val/acc`` -> ``acc``)."""
    leaf = metric.split("/", 1)[1] if "/" in metric else metric
    names = ["loss"]
    if leaf != "loss":
        if not any(c.endswith(f"/{leaf}") for c in history.columns):
            logged = sorted({c.split("/", 1)[1] for c in history.columns if "/" in c and not c.startswith("lr/")})
            raise UserError(f"metric={metric!r} is not a metric of this run; choose one of: {', '.join(logged)}.")
        names.append(leaf)
    return names


def _figure(panels: int, height: float = 3.4):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, panels, figsize=(4.8 * panels, height), squeeze=False)
    _detach(fig)
    return fig, list(axes[0])


def _epoch_axis(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _detach(fig) -> None:
    """Leave the figure out of pyplot's list of open figures: a notebook then shows it once (as the value
    returned), not twice, and many runs' figures hold no memory after use."""
    import matplotlib.pyplot as plt

    plt.close(fig)


def gradient_profiles(scalars: dict) -> dict[str, tuple[dict, dict]]:
    """Per network (``""``, or a GAN's ``"generator"``, ``"discriminator"``): ``({layer: [(step, grad
    norm)]}, {layer: [(step, update ratio)]})``, layers input to output as the run logged them."""
    grad_tag = re.compile(r"^watch/grad_norm/(?:(generator|discriminator)/)?([^/]+)$")
    profiles: dict[str, tuple[dict, dict]] = {}
    for tag, points in scalars.items():
        m = grad_tag.match(tag)
        if m and m.group(2) != "total":
            profiles.setdefault(m.group(1) or "", ({}, {}))[0][m.group(2)] = points
    for name, (grads, ratios) in profiles.items():
        prefix = f"{name}/" if name else ""
        for layer in grads:
            ratios[layer] = scalars.get(f"watch/update_ratio/{prefix}{layer}", [])
    return profiles


def open_run(folder: str | os.PathLike) -> Run:
    """A finished (or stopped, or running) run folder, from ``python train.py`` or ``zoo.train``,
    as a :class:`Run`."""
    path = Path(folder)
    if not path.is_dir():
        raise UserError(f"{folder} is not a folder; give a run folder, e.g. logs/runs/<name>.")
    if not (path / "metrics.json").is_file() and not any(n.startswith(EVENTS_PREFIX) for n in os.listdir(path)):
        raise UserError(
            f"{folder} holds no run (no metrics.json, no TensorBoard events); give a run folder, e.g. "
            f"logs/runs/<name>, or a sweep's job folder."
        )
    return Run(path)


def runs_of(what) -> list[Run]:
    """The runs ``compare`` draws: Runs, run folders, a sweep folder (its job folders, in job order) or
    the DataFrame ``zoo.sweep`` returned."""
    if hasattr(what, "attrs") and "folder" in getattr(what, "attrs", {}):
        what = what.attrs["folder"]
    if isinstance(what, (str, os.PathLike)):
        path = Path(what)
        if path.is_dir() and not (path / "metrics.json").is_file():
            jobs = [p for p in path.iterdir() if p.is_dir() and (p / "metrics.json").is_file()]
            if not jobs:
                raise UserError(f"{what} holds no runs (no folder with a metrics.json); give a sweep or run folder.")
            return [Run(p) for p in sorted(jobs, key=_job_order)]
        return [open_run(path)]
    if isinstance(what, Run):
        return [what]
    if isinstance(what, Iterable):
        return [r for item in what for r in runs_of(item)]
    raise UserError(f"compare takes runs, run folders or a sweep folder, got {type(what).__name__}.")


def _job_order(path: Path) -> tuple[int, str]:
    """A sweep's job folders by job number (``10_...`` after ``9_...``)."""
    number = re.match(r"^(\d+)", path.name)
    return (int(number.group(1)) if number else -1, path.name)


def labels_of(runs: list[Run]) -> list[str]:
    """Each run's label: the overrides that differ between the runs (``optimizer=sgd``), else its folder's name."""
    overrides = [dict(o.split("=", 1) for o in r.overrides if "=" in o) for r in runs]
    keys = sorted({k for o in overrides for k in o})
    varied = [
        k for k in keys if len({o.get(k) for o in overrides}) > 1 and k.lstrip("+~") not in ("resume", "overwrite")
    ]
    if len(runs) > 1 and varied:
        return [" ".join(f"{k}={o[k]}" for k in varied if k in o) or r.folder.name for r, o in zip(runs, overrides)]
    return [r.folder.name for r in runs]


def compare(
    runs: Run | str | os.PathLike | Iterable | pd.DataFrame, metric: str | None = None, train: bool = False
) -> Figure:
    """One Matplotlib figure of several runs' validation curves per epoch: the loss and the main metric
    (the first run's, or ``metric``), one colour per run, labelled by what differs between them.

    Args:
        runs: Runs, run folders, a sweep folder, or the DataFrame ``zoo.sweep`` returned.
        metric: the second panel's metric (``"acc"``, ``"val/acc"``); by default the first run's monitor.
        train: draw the training curves too (dashed).
    """
    chosen = runs_of(runs)
    if not chosen:
        raise UserError("compare needs at least one run.")
    histories = [r.history for r in chosen]
    with_epochs = [h for h in histories if not h.empty]
    if not with_epochs:
        raise UserError("none of these runs logged epoch metrics to TensorBoard; nothing to compare.")
    names = _curve_names(with_epochs[0], metric or chosen[0].monitor)
    fig, axes = _figure(len(names), height=3.8)
    import matplotlib as mpl

    colours = mpl.colormaps["tab10"].colors
    for i, (history, label) in enumerate(zip(histories, labels_of(chosen))):
        colour = colours[i % len(colours)]
        for ax, name in zip(axes, names):
            for split, style in (("val", "-"), ("train", "--")) if train else (("val", "-"),):
                column = f"{split}/{name}"
                if column in history:
                    ax.plot(
                        history.index, history[column], style, color=colour, label=label if split == "val" else None
                    )
    for ax, name in zip(axes, names):
        ax.set_title(f"val/{name}" + (" (train dashed)" if train else ""))
        _epoch_axis(ax)
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig
