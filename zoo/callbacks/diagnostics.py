"""Diagnoses: rules that read the training signals and say, in one plain sentence, what is wrong and
what a teacher would suggest, once, when they first hold.

The rules (``Diagnoser``, plain Python, no Lightning) and the callback that feeds them
(``Diagnostics``): it reads the training loss every ``every_n_steps`` batches (the per-step losses
are kept on the device and read back together), the validation loss every epoch and, when
``LayerSignals`` (zoo/callbacks/signals.py) runs, its per-layer readings. Each diagnosis is printed,
written to TensorBoard's Text tab (``watch/diagnoses/<kind>``) and kept in ``diagnoses`` as
``{"kind", "step", "layer", "message"}``, which the run writes to metrics.json.

| kind                  | when it holds                                                                 |
|-----------------------|-------------------------------------------------------------------------------|
| vanishing_gradients   | a layer's gradient norm 100x below the median layer's, for 4 readings running |
| exploding_gradients   | the total gradient norm 10x its running median, 100x the weights' norm or not finite, and not clipped |
| dead_units            | half of a ReLU's units output zero for the whole batch, 3 readings running     |
| saturation            | half of a sigmoid's or tanh's outputs within 1% of its bounds, 3 readings      |
| lr_too_high           | the loss not finite or 10x its first value, 1.5x its best for 2 windows, or updates 10% of the weights for 2 readings |
| lr_too_low            | updates below 1e-4 of the weights (rule of thumb 1e-3) while the loss stands still |
| plateau               | the loss has not moved 1% below its start for 8 windows                        |
| overfitting           | validation loss 10% above its best for 2 epochs while the training loss fell 10% |
| mode_collapse         | a GAN draws a class in under a third of its fair share of the samples (the quality judge's view, zoo/tasks/quality.py), 3 validations running after the first 3 |
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import lightning as L
import torch
from typing_extensions import override

from zoo.callbacks.common import WATCH, logging_step, tensorboards
from zoo.callbacks.signals import LayerSignals, Reading, short_name

KINDS = (
    "vanishing_gradients",
    "exploding_gradients",
    "dead_units",
    "saturation",
    "lr_too_high",
    "lr_too_low",
    "plateau",
    "overfitting",
    "mode_collapse",
)


@dataclass
class Thresholds:
    """Where each rule draws its line (the defaults are the table in the module's docstring)."""

    vanishing_factor: float = 1e-2  # a layer's gradient norm below this x the median layer's
    vanishing_readings: int = 4
    exploding_factor: float = 10.0  # the total gradient norm above this x its running median
    exploding_history: int = 8  # readings before the running median counts
    exploding_vs_weights: float = 100.0  # or above this x the norm of the weights themselves
    dead_fraction: float = 0.5
    saturated_fraction: float = 0.5
    unit_readings: int = 3
    loss_rise: float = 1.5  # a window's median loss above this x the best window's
    rise_windows: int = 2
    loss_rise_of_start: float = 0.1
    ratio_high: float = 0.1  # update / weight: the median layer's, for `ratio_readings` running
    ratio_low: float = 1e-4  # an order of magnitude below the rule of thumb
    ratio_readings: int = 4
    ratio_high_readings: int = 2
    loss_spike: float = 10.0  # a step's loss above this x the first step's
    flat: float = 0.01  # "stands still": less than 1% better
    low_lr_windows: int = 4
    plateau_windows: int = 8
    overfit_rise: float = 1.1  # validation loss above this x its best
    overfit_epochs: int = 2  # epochs after the best
    overfit_train_fall: float = 0.1  # while the training loss fell by at least this share
    collapse_share: float = 1 / 3  # a class drawn in under this x its fair share of the samples ...
    collapse_epochs: int = 3  # ... for this many validations running,
    collapse_warmup: int = 3  # not counting the first validations: a generator's first epochs draw
    # blurs the judge reads as a few classes (measured: every DCGAN on MNIST had a class under 2% at
    # epochs 1-2, the runs that drew every class later included), which is not yet a collapse


MIN_WINDOW = 4  # losses in a window of the loss rules, at the least (one cut short by an epoch's end is carried)


def _fmt(x: float) -> str:
    return f"{x:.2g}" if math.isfinite(x) else str(x)


def _median(values) -> float:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.median(values) if values else float("nan")


class Diagnoser:
    """Turns readings, loss windows and epochs into diagnoses, each kind once."""

    def __init__(self, thresholds: Thresholds | None = None):
        self.t = thresholds or Thresholds()
        self.diagnoses: list[dict] = []
        self.windows: list[tuple[int, float]] = []  # (step, median training loss of the window)
        self.epochs: list[tuple[int, float | None, float]] = []  # (epoch, training loss, validation loss)
        self._totals: dict[str, list[float]] = {}
        self._streaks: dict[tuple, int] = {}
        self._ratios: list[float] = []  # the median layer's update ratio of each reading
        self._peak_lr: dict[str, float] = {}
        self._ever_high = False
        self._first_loss: float | None = None
        self._share_readings = 0  # validations that measured the class shares of a GAN's samples

    # ---- bookkeeping ----------------------------------------------------------------------------

    def _say(self, kind: str, step: int, layer: str | None, message: str) -> dict | None:
        if any(d["kind"] == kind for d in self.diagnoses):
            return None
        d = {"kind": kind, "step": int(step), "layer": layer, "message": message}
        self.diagnoses.append(d)
        return d

    def _streak(self, key: tuple, holds: bool) -> int:
        self._streaks[key] = self._streaks.get(key, 0) + 1 if holds else 0
        return self._streaks[key]

    def _flat(self, windows: int) -> bool:
        """The loss of the last ``windows`` windows is not 1% below the best before them."""
        if len(self.windows) <= windows:
            return False
        before = min(v for _, v in self.windows[:-windows])
        recent = min(v for _, v in self.windows[-windows:])
        return math.isfinite(before) and recent > before * (1 - self.t.flat)

    # ---- the rules ------------------------------------------------------------------------------

    def observe_reading(self, r: Reading) -> list[dict]:
        """The per-layer rules on one reading of ``LayerSignals``."""
        out = [self._vanishing(r), self._exploding(r), *self._units(r), self._update_ratio(r)]
        return [d for d in out if d]

    def _vanishing(self, r: Reading) -> dict | None:
        named = [(n, g) for n, g in zip(r.layers, r.grad) if math.isfinite(g) and g > 0]
        if len(named) < 3:
            return None
        median = _median(g for _, g in named)
        low = [(n, g) for n, g in named if g < self.t.vanishing_factor * median]
        if self._streak(("vanishing", r.prefix), bool(low)) < self.t.vanishing_readings:
            return None
        layer, g = low[0]  # nearest the input
        orders = math.log10(median / g)
        more = f" (and {len(low) - 1} more)" if len(low) > 1 else ""
        return self._say(
            "vanishing_gradients",
            r.step,
            layer,
            f"Gradients vanished at step {r.step}: layer {short_name(layer)}{more} gets a gradient "
            f"{orders:.1f} orders of magnitude below the median layer's ({_fmt(g)} vs {_fmt(median)}) "
            f"for {self.t.vanishing_readings} readings running, so the layers near the input barely learn. "
            f"Try ReLU activations (model.activation=relu), batch norm (model.batchnorm=true), "
            f"residual connections (model.residual=true) or a better initialisation (model.init=kaiming).",
        )

    def _exploding(self, r: Reading) -> dict | None:
        history = self._totals.setdefault(r.prefix, [])
        total = r.total_grad
        usual = _median(history) if len(history) >= self.t.exploding_history else float("nan")
        history.append(total)
        weights = math.sqrt(sum(w * w for w in r.weight if math.isfinite(w)))
        huge = weights > 0 and total > self.t.exploding_vs_weights * weights
        spiked = not math.isfinite(total) or huge or (math.isfinite(usual) and total > self.t.exploding_factor * usual)
        if not spiked:
            return None
        if r.clip is not None and math.isfinite(total):
            return None  # clipping caught it: the step taken had norm clip at most
        clip = f"{float(f'{2 * usual:.1g}'):g}" if math.isfinite(usual) and usual > 0 else "1.0"
        if math.isfinite(usual) and total > self.t.exploding_factor * usual:
            how = f"{total / usual:.0f}x its running median ({_fmt(usual)})"
        elif huge:
            how = f"{_fmt(total / weights)}x the norm of the weights themselves ({_fmt(weights)})"
        else:
            how = "not a finite number"
        return self._say(
            "exploding_gradients",
            r.step,
            None,
            f"Gradients exploded at step {r.step}: the total gradient norm reached {_fmt(total)}, {how}; "
            f"one such step can wreck the weights. Clip the gradient norm: trainer.gradient_clip_val={clip} "
            f"would have caught it; or lower the learning rate (optimizer.lr).",
        )

    def _units(self, r: Reading) -> list[dict | None]:
        out = []
        for name, a in r.activations.items():
            if "dead" in a:
                n = self._streak(("dead", name), a["dead"] >= self.t.dead_fraction)
                if n >= self.t.unit_readings:
                    out.append(
                        self._say(
                            "dead_units",
                            r.step,
                            name,
                            f"Dead units at step {r.step}: {a['dead']:.0%} of the units of {short_name(name)} "
                            f"({a['kind']}) output zero for every example of the batch, so no gradient flows "
                            f"through them and they will not recover. Lower the learning rate (optimizer.lr), "
                            f"use a leaky ReLU (model.activation=leaky_relu), batch norm (model.batchnorm=true) "
                            f"or He initialisation (model.init=kaiming).",
                        )
                    )
            if "saturated" in a and not a.get("output"):  # an output layer's bounds are its range, not a fault
                n = self._streak(("saturated", name), a["saturated"] >= self.t.saturated_fraction)
                if n >= self.t.unit_readings:
                    out.append(
                        self._say(
                            "saturation",
                            r.step,
                            name,
                            f"Saturated units at step {r.step}: {a['saturated']:.0%} of the outputs of "
                            f"{short_name(name)} ({a['kind']}) are within 1% of its bounds, where its slope is "
                            f"almost zero and the gradient through it vanishes. Scale the weights down "
                            f"(model.init=xavier), normalise the inputs to each layer (model.batchnorm=true) "
                            f"or use ReLU (model.activation=relu).",
                        )
                    )
        return out

    def _update_ratio(self, r: Reading) -> dict | None:
        ratio = _median(r.update_ratio)
        if not math.isfinite(ratio):
            return None
        self._ratios.append(ratio)
        lr = f" (optimizer.lr={r.lr:g})" if r.lr is not None else ""
        if ratio > self.t.ratio_high:
            self._ever_high = True
        if self._streak(("ratio_high", r.prefix), ratio > self.t.ratio_high) >= self.t.ratio_high_readings:
            return self._say(
                "lr_too_high",
                r.step,
                None,
                f"The learning rate looks too high at step {r.step}{lr}: each step changes the weights by "
                f"{ratio:.0%} of their size (the median layer's update / weight; about 1e-3 is the rule of "
                f"thumb), so training jumps around instead of descending. Lower optimizer.lr about tenfold.",
            )
        peak = self._peak_lr[r.prefix] = max(self._peak_lr.get(r.prefix, 0.0), r.lr or 0.0)
        decayed = r.lr is not None and r.lr < 0.5 * peak  # a schedule lowered it on purpose (cosine's end)
        # updates of exactly 0 move nothing whatever the lr (dead units); after large steps the lr was not low
        small = 0 < ratio < self.t.ratio_low and not decayed and not self._ever_high
        low = self._streak(("ratio_low", r.prefix), small)
        if low >= self.t.ratio_readings and self._flat(self.t.low_lr_windows):
            return self._say(
                "lr_too_low",
                r.step,
                None,
                f"The learning rate looks too low at step {r.step}{lr}: each step changes the weights by only "
                f"{_fmt(ratio)} of their size (about 1e-3 is the rule of thumb) and the training loss stands "
                f"still. Raise optimizer.lr about tenfold (or try tuner.lr_find=true).",
            )
        return None

    def observe_losses(self, step: int, losses: list[float]) -> list[dict]:
        """The loss rules on the training losses of the batches since the last window."""
        if not losses:
            return []
        bad = next((v for v in losses if not math.isfinite(v)), None)
        if bad is not None:
            return [
                d
                for d in [
                    self._say(
                        "lr_too_high",
                        step,
                        None,
                        f"The training loss became {bad} by step {step}: the steps were too large for the "
                        f"weights. Lower the learning rate (optimizer.lr) and clip the gradient norm "
                        f"(trainer.gradient_clip_val=1.0).",
                    )
                ]
                if d
            ]
        if self._first_loss is None:
            self._first_loss = losses[0]
        out = []
        peak = max(losses)
        if self._first_loss > 0 and peak > self.t.loss_spike * self._first_loss:
            out.append(
                self._say(
                    "lr_too_high",
                    step,
                    None,
                    f"The learning rate looks too high at step {step}: the training loss jumped to {_fmt(peak)}, "
                    f"{peak / self._first_loss:.0f}x its first value ({_fmt(self._first_loss)}), so the steps "
                    f"overshoot. Lower optimizer.lr about tenfold, or warm it up (scheduler=onecycle).",
                )
            )
        self.windows.append((step, statistics.median(losses)))
        best_step, best = min(self.windows[:-1], key=lambda w: w[1], default=(step, float("inf")))
        recent = [v for _, v in self.windows[-self.t.rise_windows :]]
        if (
            len(self.windows) > self.t.rise_windows + 1
            and best > 0
            and all(v > self.t.loss_rise * best for v in recent)
            # near convergence a loss of 0.03 that drifts to 0.05 is noise, not overshooting: the rise
            # must also be a tenth of where the loss started
            and recent[-1] - best > self.t.loss_rise_of_start * self.windows[0][1]
        ):
            out.append(
                self._say(
                    "lr_too_high",
                    step,
                    None,
                    f"The learning rate looks too high at step {step}: the training loss rose from "
                    f"{_fmt(best)} (step {best_step}) to {_fmt(recent[-1])} and stays there, so the steps "
                    f"overshoot. Lower optimizer.lr about tenfold, or warm it up (scheduler=onecycle).",
                )
            )
        first = self.windows[0][1]
        n = self.t.plateau_windows
        if len(self.windows) > n and first > 0 and self._flat(n) and not self._low_ratio_now():
            start = min(v for _, v in self.windows)
            if start > first * (1 - self.t.flat):
                out.append(
                    self._say(
                        "plateau",
                        step,
                        None,
                        f"The training loss has stood still since the start ({_fmt(first)} then, {_fmt(start)} "
                        f"at best by step {step}): the network is not learning. Try a higher learning rate "
                        f"(optimizer.lr), another optimizer (optimizer=adam), a better initialisation "
                        f"(model.init=kaiming) or check that the labels match the inputs.",
                    )
                )
        return [d for d in out if d]

    def _low_ratio_now(self) -> bool:
        n = self.t.ratio_readings
        return len(self._ratios) >= n and all(r < self.t.ratio_low for r in self._ratios[-n:])

    def observe_class_shares(self, step: int, shares: dict[str, float], conditional: bool = False) -> list[dict]:
        """A GAN's samples per class after a validation (``val/class_share/<class>``): mode_collapse.
        ``conditional``: the generator was told the classes it drew (then rare classes are classes it
        does not draw when asked, which the advice says)."""
        if len(shares) < 2:
            return []
        t, fair = self.t, 1 / len(shares)
        self._share_readings += 1
        if self._share_readings <= t.collapse_warmup:
            return []
        rare = {name: share for name, share in shares.items() if share < t.collapse_share * fair}
        if self._streak(("mode_collapse",), bool(rare)) < t.collapse_epochs:
            return []
        names = ", ".join(f"{name} ({share:.1%})" for name, share in sorted(rare.items(), key=lambda kv: kv[1]))
        found = [
            self._say(
                "mode_collapse",
                step,
                None,
                f"the generator has drawn too few of class {names} for {t.collapse_epochs} validations running "
                f"(a fair share is {fair:.0%}): "
                + (
                    "asked for every class equally often, it draws some as others (val/cond_acc), a generator "
                    "still learning them or one that ignores its label. Train for more steps (more epochs, a "
                    "smaller data.batch_size)"
                    if conditional
                    else "mode collapse, the generator settling on the classes that fool the discriminator best, "
                    "or a generator still learning to draw them. Tell it the class (model.conditional=true, "
                    "what the default auto does on data with classes; docs/guide/gans.md: every digit drawn), "
                    "or train for more steps (more epochs, a smaller data.batch_size)"
                )
                + " or with a higher learning rate (model=dcgan's 2e-3), then try "
                "model.minibatch_std=true, model.spectral_norm=true, model.ema=0.99 or model.loss=hinge; "
                "samples/fixed_noise in TensorBoard's Images tab shows which classes are missing.",
            )
        ]
        return [d for d in found if d]

    def observe_epoch(self, epoch: int, train_loss: float | None, val_loss: float) -> list[dict]:
        """The overfitting rule, on one epoch's training and validation loss."""
        if not math.isfinite(val_loss):
            return []
        self.epochs.append((epoch, train_loss, val_loss))
        best_epoch, best_train, best_val = min(self.epochs, key=lambda e: e[2])
        current = self.epochs[-1]
        after = [e for e in self.epochs if e[0] > best_epoch]
        if (
            len(after) >= self.t.overfit_epochs
            and all(e[2] > best_val * self.t.overfit_rise for e in after[-self.t.overfit_epochs :])
            and current[1] is not None
            and best_train is not None
            and current[1] < best_train * (1 - self.t.overfit_train_fall)
        ):
            d = self._say(
                "overfitting",
                epoch,
                None,
                f"Overfitting from epoch {best_epoch}: the validation loss rose from {_fmt(best_val)} to "
                f"{_fmt(current[2])} by epoch {epoch} while the training loss kept falling ({_fmt(best_train)} "
                f"to {_fmt(current[1])}): the network memorises the training set. Early stopping would keep "
                f"epoch {best_epoch} (callbacks.early_stopping); add dropout (model.dropout=0.5), weight decay "
                f"(optimizer.weight_decay), more data or augmentation.",
            )
            return [d] if d else []
        return []


class Diagnostics(L.Callback):
    """The diagnoses of a run (see the module's docstring): printed, in TensorBoard's Text tab as
    ``watch/diagnoses/<kind>`` and in ``diagnoses`` for metrics.json.

    ``every_n_steps``: how often the training loss is read (one host sync for the window). The
    per-layer rules need ``LayerSignals`` among the callbacks (callbacks.signals); without it only the
    loss rules run. A GAN (manual optimisation) gets the per-layer rules only: its players' losses
    rise and fall by design."""

    def __init__(self, every_n_steps: int = 25, verbose: bool = True, **thresholds):
        self.every_n_steps, self.verbose = every_n_steps, verbose
        self.diagnoser = Diagnoser(Thresholds(**thresholds))
        self._losses: list[torch.Tensor] = []
        self._epoch_loss: list[torch.Tensor] = []
        self._counted = 0  # how many of ``_losses`` (carried over an epoch's end) the epoch loss has counted
        self._epoch_train: float | None = None

    @property
    def diagnoses(self) -> list[dict]:
        return self.diagnoser.diagnoses

    @override
    def setup(self, trainer, pl_module, stage: str) -> None:
        for cb in trainer.callbacks:
            if isinstance(cb, LayerSignals) and self not in cb.listeners:
                cb.listeners.append(self)

    def on_reading(self, trainer, reading: Reading) -> None:
        self._publish(trainer, self.diagnoser.observe_reading(reading))

    @override
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        # A task that steps its optimizers itself (a GAN) returns one player's loss, which rises
        # and falls by design: the loss rules read only a loss that training minimises.
        if isinstance(loss, torch.Tensor) and pl_module.automatic_optimization:
            # With several batches a step (zoo/tasks/execution.py) the step's loss is its last batch's;
            # the others' losses come from the task, so a window counts batches whatever K is.
            for inner in getattr(pl_module, "inner_losses", ()):
                self._losses.append(inner.float().reshape(()))
            self._losses.append(loss.detach().float().reshape(()))
        if self.every_n_steps > 0 and len(self._losses) >= self.every_n_steps:
            self._flush(trainer)

    def _flush(self, trainer) -> None:
        if not self._losses:
            return
        stacked = torch.stack(self._losses)
        self._losses = []
        self._count(stacked[self._counted :])
        self._counted = 0
        self._publish(trainer, self.diagnoser.observe_losses(logging_step(trainer), stacked.tolist()))

    def _count(self, losses: torch.Tensor) -> None:
        """Adds losses to the epoch's training loss (summed on the device: no host sync)."""
        if len(losses):
            self._epoch_loss.append(losses.sum().reshape(1))
            self._epoch_loss.append(torch.tensor([float(len(losses))], device=losses.device))

    @override
    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # A window cut short by the epoch's end (a short epoch, or several batches a step) is carried
        # into the next one while it holds fewer than MIN_WINDOW losses: the median of two or three
        # noisy losses is no window, and comparing one against the best such made lr_too_high fire on
        # healthy runs (lesson_dropout with dropout 0.5). The epoch's training loss counts them either way.
        if len(self._losses) >= min(self.every_n_steps, MIN_WINDOW):
            self._flush(trainer)
        elif len(self._losses) > self._counted:
            self._count(torch.stack(self._losses[self._counted :]))
            self._counted = len(self._losses)
        if self._epoch_loss:
            sums = torch.cat(self._epoch_loss).tolist()
            total, n = sum(sums[0::2]), sum(sums[1::2])
            self._epoch_train = total / n if n else None
        self._epoch_loss = []
        self._overfitting(trainer)

    @override
    def on_train_end(self, trainer, pl_module) -> None:
        self._flush(trainer)  # what the last epoch carried

    @override
    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        val = trainer.callback_metrics.get("val/loss")
        self._val = float(val) if val is not None else None
        prefix = "val/class_share/"
        shares = {k[len(prefix) :]: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(prefix)}
        if shares:
            net = getattr(pl_module, "net", None)
            told = bool(getattr(net, "conditional", False))
            self._publish(trainer, self.diagnoser.observe_class_shares(logging_step(trainer), shares, told))

    def _overfitting(self, trainer) -> None:
        val = getattr(self, "_val", None)
        self._val = None
        if val is not None:
            self._publish(trainer, self.diagnoser.observe_epoch(trainer.current_epoch, self._epoch_train, val))

    @override
    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._flush(trainer)  # a run stopped for a NaN loss still says why

    def _publish(self, trainer, found: list[dict]) -> None:
        if not found or not trainer.is_global_zero:
            return
        for d in found:
            if self.verbose:
                print(f"diagnosis ({d['kind']}): {d['message']}", flush=True)
            for w in tensorboards(trainer):
                w.add_text(f"{WATCH}diagnoses/{d['kind']}", d["message"], logging_step(trainer))

    @override
    def state_dict(self) -> dict:  # a resumed run keeps what it has said, and does not say it again
        return {"diagnoses": list(self.diagnoses)}

    @override
    def load_state_dict(self, state: dict) -> None:
        # Merged, not replaced: testing the best checkpoint after fit restores that epoch's callback
        # state too, which would drop whatever was said after it (overfitting, always).
        said = {d["kind"] for d in self.diagnoser.diagnoses}
        self.diagnoser.diagnoses += [dict(d) for d in state.get("diagnoses", []) if d["kind"] not in said]
