"""AdversarialTask: trains a GAN (zoo/nets/gan.py) with manual optimisation, one optimizer per network.

Each batch: the discriminator D takes a step on real images and on images of the generator G;
every ``n_critic``-th batch G then takes a step to fool the updated D. Losses (``model.loss``):

- ``non_saturating`` (default): D minimises BCE(D(x), 1 - smoothing) + BCE(D(G(z)), 0); G minimises
  BCE(D(G(z)), 1), i.e. -log D(G(z)), whose gradient does not vanish when D wins (Goodfellow 2014).
- ``hinge``: D minimises relu(1 - D(x)) + relu(1 + D(G(z))); G minimises -D(G(z)) (Lim & Ye 2017).
- ``wgan-gp``: the critic minimises D(G(z)) - D(x) + gp_weight * (|grad D(x_hat)| - 1)^2 on points
  between real and generated images; G minimises -D(G(z)) (Gulrajani et al. 2017).

Both optimizers come from the run's optimizer group (the discriminator's lr times ``d_lr_scale``),
each with its own copy of the scheduler. Image quality (``val/fid`` and friends, zoo/tasks/quality.py) is
measured in every validation pass on as many generated images as there are real ones, from the
same noise every epoch, so the curve shows the generator's changes and nothing else.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from typing_extensions import override

from zoo import compat
from zoo.errors import UserError
from zoo.tasks.base import Task
from zoo.tasks.schedules import schedule_arguments

EVAL_NOISE_SEED = 2024  # the noise of every validation pass
# The steps of the generator's moving average so far (its warm-up), stored beside Lightning's keys.
EMA_STEPS = "zoo_ema_steps"


class AdversarialTask(Task):
    train_sum_names = ("d_loss * n", "d_real * n", "d_fake * n", "n", "g_loss * m", "m")
    default_monitor = "val/fid"

    def __init__(self, *args, judge_dir: str | None = None, data_name: str = "data", **kwargs):
        """``judge_dir``: where the quality judge of ``data_name`` is kept (zoo/tasks/quality.py).
        ``args`` and ``kwargs``: those of ``Task``."""
        super().__init__(*args, automatic_optimization=False, **kwargs)
        net = self.net
        self.objective = dict(net.objective)
        self.judge_dir, self.data_name = judge_dir, data_name
        channels = net.image_shape[0]
        # Real images arrive normalised per channel; x * scale + shift puts them in G's [-1, 1].
        # Set from the datamodule's statistics in setup(); identity for data already in [-1, 1].
        self.register_buffer("pixel_scale", torch.ones(1, channels, 1, 1), persistent=False)
        self.register_buffer("pixel_shift", torch.zeros(1, channels, 1, 1), persistent=False)
        self._last_g_loss: torch.Tensor | None = None
        self._judge: dict = {}  # plain attribute: the judge is no part of the checkpoint
        self._meter = None
        self._eval_sums = None
        self.clip_val, self.clip_algorithm = None, "norm"
        self.grid_columns = net.num_classes if net.conditional else None  # sample grids: a class per column

    @classmethod
    @override
    def options_from(cls, spec, net, hparams) -> dict:
        if not hasattr(net, "objective"):
            raise UserError(
                f"the adversarial task trains a generator and a discriminator, and {type(net).__name__} "
                f"is not a GAN; use model=gan or model=dcgan."
            )
        return {"judge_dir": hparams.get("config", {}).get("paths", {}).get("data_dir"), "data_name": spec.name}

    # -- set-up ---------------------------------------------------------------------------------
    @override
    def configure_callbacks(self):
        # Lightning refuses trainer.gradient_clip_val and accumulate_grad_batches under manual
        # optimisation; this is the first hook that sees the trainer, before that check. The task
        # takes clipping over (each network's gradients, after the gradient-norm callback has read
        # them) and explains why accumulation does not apply.
        trainer = self.trainer
        if trainer.gradient_clip_val:
            self.clip_val, self.clip_algorithm = trainer.gradient_clip_val, trainer.gradient_clip_algorithm
            trainer.gradient_clip_val = None
        if trainer.accumulate_grad_batches != 1:
            raise UserError(
                f"trainer.accumulate_grad_batches={trainer.accumulate_grad_batches} does not apply to "
                f"GANs, which step their two optimizers themselves; use a larger data.batch_size instead."
            )
        # Under DDP each of the two backward passes of a step uses one network only: DDP must be
        # told to expect parameters without gradients (set before it wraps the model, in setup).
        ddp_kwargs = compat.ddp_kwargs(trainer.strategy)
        if isinstance(ddp_kwargs, dict):
            ddp_kwargs["find_unused_parameters"] = True
        return []

    @override
    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule
        self._data_classes = dm.spec.num_classes
        mean, std = getattr(dm, "pixel_mean", None), getattr(dm, "pixel_std", None)
        if mean is not None and std is not None:
            self.pixel_scale.copy_((2 * std).reshape(self.pixel_scale.shape))
            self.pixel_shift.copy_((2 * mean - 1).reshape(self.pixel_shift.shape))
        if stage == "fit" and getattr(dm, "crop_padding", 0):
            print(
                f"Note: data.random_crop={dm.crop_padding} is off for GAN training: it pads real images with "
                f"black borders that the generator would learn to draw (flips stay on)."
            )
            dm.crop_padding = 0

    @override
    def on_fit_start(self) -> None:
        logged = self.logged_metrics()
        for cb in self.trainer.callbacks:
            monitor = getattr(cb, "monitor", None)
            if monitor and monitor not in logged:
                raise UserError(
                    f"callback {type(cb).__name__} watches {monitor}, which a GAN does not log; "
                    f"watch one of {', '.join(m for m in logged if m.startswith('val/'))} "
                    f"(callbacks=gan watches val/fid_coverage)."
                )
        plateau = any(
            isinstance(c.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
            for c in self.trainer.lr_scheduler_configs
        )
        if plateau and self.scheduler_monitor not in logged:
            raise UserError(
                f"the plateau scheduler watches {self.scheduler_monitor}, which a GAN does not log; "
                f"add scheduler.monitor=val/fid."
            )
        super().on_fit_start()

    def logged_metrics(self) -> list[str]:
        """Every metric this task logs: what checkpoints, early stopping and schedulers can watch."""
        val = ["fid", "fid_real", "fid_coverage", "precision", "recall", "d_real", "d_fake"]
        if self.net.num_classes >= 2 or getattr(self, "_data_classes", 0) >= 2:
            val += ["confidence", "confidence_real", "coverage", "entropy", "rarest_share"]
        val += ["cond_acc"] if self.net.conditional else []
        train = [f"{k}{s}" for k in ("d_loss", "g_loss", "d_real", "d_fake") for s in ("", "_step")]
        return [f"val/{k}" for k in val] + [f"train/{k}" for k in train]

    def to_model_range(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised real images -> [-1, 1], the generator's range."""
        return torch.addcmul(self.pixel_shift, x, self.pixel_scale)

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised real images -> [0, 1], for display."""
        return ((self.to_model_range(x) + 1) / 2).clamp(0, 1)

    # -- losses ---------------------------------------------------------------------------------
    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        loss = self.objective["loss"]
        if loss == "non_saturating":
            target = torch.full_like(real, 1.0 - self.objective["label_smoothing"])  # one-sided smoothing
            return F.binary_cross_entropy_with_logits(real, target) + F.softplus(fake).mean()
        if loss == "hinge":
            return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
        return fake.mean() - real.mean()

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        if self.objective["loss"] == "non_saturating":
            return F.softplus(-fake).mean()  # BCE(D(G(z)), 1)
        return -fake.mean()

    def gradient_penalty(self, real: torch.Tensor, fake: torch.Tensor, labels) -> torch.Tensor:
        eps = torch.rand(len(real), 1, 1, 1, device=real.device, dtype=real.dtype)
        between = (eps * real + (1 - eps) * fake).requires_grad_(True)
        scores = self.net.discriminate(between, labels)
        (grad,) = torch.autograd.grad(scores.sum(), between, create_graph=True)
        return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()

    def score_as_d(self, scores: torch.Tensor) -> torch.Tensor:
        """D(x) as reported: a probability for the non-saturating loss, the raw score otherwise."""
        return scores.sigmoid() if self.objective["loss"] == "non_saturating" else scores

    # -- training -------------------------------------------------------------------------------
    @override
    def training_step(self, batch, batch_idx):
        opt_g, opt_d = self.optimizers()
        d_loss, d_real, d_fake = self._adversarial_step(self.last_batch(batch), self._batch_index(), opt_g, opt_d)
        if compat.should_update_logs(self.trainer):
            logs = {"train/d_loss_step": d_loss, "train/d_real_step": d_real.mean(), "train/d_fake_step": d_fake.mean()}
            if self._last_g_loss is not None:
                logs["train/g_loss_step"] = self._last_g_loss
            self.log_dict(logs, on_step=True, on_epoch=False, prog_bar=True, batch_size=len(d_real))

    @override
    def train_inner_batch(self, batch) -> int:  # one batch of an execution trained before its last
        index = self._batch_index()
        # The raw optimizers, stepped as Lightning would but without its per-step hooks: no callback
        # acts on a batch inside an execution (zoo/tasks/execution.py ends executions before those),
        # and the hooks were most of the GAN's overhead over a plain loop. Clipping is the task's own.
        opt_g, opt_d = (o.optimizer for o in self.optimizers())
        with self.trainer.precision_plugin.train_step_context():  # as Lightning wraps training_step
            self._adversarial_step(batch, index, opt_g, opt_d, inner=True)
        return 1 + int((index + 1) % self.objective["n_critic"] == 0)  # D's step, and G's on its turn

    def _batch_index(self) -> int:
        """The index in its epoch of the batch being trained (n_critic counts them)."""
        return self.trainer.fit_loop.epoch_loop.batch_idx

    def _backward_and_step(self, loss: torch.Tensor, optimizer, inner: bool) -> None:
        """Lightning's manual step, or inside an execution the plain one (loss scaling under fp16 and
        the task's clipping kept)."""
        optimizer.zero_grad(set_to_none=True)
        if not inner:
            self.manual_backward(loss)
            optimizer.step()
            return
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        (scaler.scale(loss) if scaler is not None else loss).backward()
        if self.clip_val:
            if scaler is not None:
                scaler.unscale_(optimizer)
            self.clip_gradients(optimizer, gradient_clip_val=self.clip_val, gradient_clip_algorithm=self.clip_algorithm)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()

    def _adversarial_step(self, batch, index: int, opt_g, opt_d, inner: bool = False):
        """One discriminator step and, on every n_critic-th batch, one generator step; returns D's
        loss and its D(x) and D(G(z)) on this batch (detached). ``inner``: a batch inside an
        execution, stepped with the raw optimizers."""
        net, n_critic = self.net, self.objective["n_critic"]
        real = self.to_model_range(batch[0])
        labels = batch[1] if net.conditional else None
        n = len(real)
        g_turn = (index + 1) % n_critic == 0
        z = torch.randn(n, net.latent_dim, device=self.device)
        with torch.set_grad_enabled(g_turn):  # the graph through G is kept only when G steps too
            fake = net.generate(z, labels)

        d_real, d_fake = (
            net.discriminate(net.augment(real), labels),
            net.discriminate(net.augment(fake.detach()), labels),
        )
        d_loss = self.d_loss(d_real, d_fake)
        if self.objective["loss"] == "wgan-gp":
            d_loss = d_loss + self.objective["gp_weight"] * self.gradient_penalty(real, fake.detach(), labels)
        self._backward_and_step(d_loss, opt_d, inner)
        self._step_scheduler(1)

        with torch.no_grad():
            self.train_sums[:4] += torch.stack(
                [d_loss.detach() * n, self.score_as_d(d_real).sum(), self.score_as_d(d_fake).sum(), real.new_tensor(n)]
            )
        if g_turn:
            net.discriminator.requires_grad_(False)  # G's step needs gradients through D, not D's own
            net.head.requires_grad_(False)
            if net.embed is not None:
                net.embed.requires_grad_(False)
            g_loss = self.g_loss(net.discriminate(net.augment(fake), labels))
            self._backward_and_step(g_loss, opt_g, inner)
            net.update_ema()
            self._step_scheduler(0)
            net.requires_grad_(True)
            with torch.no_grad():
                self.train_sums[4:] += torch.stack([g_loss.detach() * n, real.new_tensor(n)])
            self._last_g_loss = g_loss.detach()
        return d_loss.detach(), self.score_as_d(d_real.detach()), self.score_as_d(d_fake.detach())

    @override
    def on_before_optimizer_step(self, optimizer) -> None:
        if self.clip_val:  # after the callbacks (gradient norms) have seen the unclipped gradients
            self.clip_gradients(optimizer, gradient_clip_val=self.clip_val, gradient_clip_algorithm=self.clip_algorithm)

    @override
    def log_train_sums(self, d_loss, d_real, d_fake, n, g_loss, m) -> None:
        n, m = n.clamp_min(1), m.clamp_min(1)
        self.log_dict(
            {
                "train/d_loss": d_loss / n,
                "train/d_real": d_real / n,
                "train/d_fake": d_fake / n,
                "train/g_loss": g_loss / m,
            },
            sync_dist=True,
        )

    @override
    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        if self.scheduler_factory is not None and self.scheduler_interval == "epoch":
            self._step_scheduler(0, epoch_end=True)
            self._step_scheduler(1, epoch_end=True)

    # -- schedules ------------------------------------------------------------------------------
    def _step_scheduler(self, which: int, epoch_end: bool = False) -> None:
        if self.scheduler_factory is None or (self.scheduler_interval == "epoch") != epoch_end:
            return
        scheduler = self.lr_schedulers()[which]
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            value = self.trainer.callback_metrics.get(self.scheduler_monitor)
            if value is not None:  # none yet when validation runs less often than every epoch
                scheduler.step(value)
        else:
            scheduler.step()

    @override
    def configure_optimizers(self):
        net = self.net
        d_params = [
            *net.discriminator.parameters(),
            *net.head.parameters(),
            *(net.embed.parameters() if net.embed is not None else []),
        ]
        opt_g = self.optimizer_factory([{"params": list(net.generator.parameters()), "name": "generator"}])
        opt_d = self.optimizer_factory([{"params": d_params, "name": "discriminator"}])
        for group in opt_d.param_groups:
            group["lr"] *= self.objective["d_lr_scale"]
        if self.scheduler_factory is None:
            return [opt_g, opt_d]
        schedulers = []
        batches = int(self.trainer.estimated_stepping_batches)  # batches, whatever steps_per_execution
        for opt, steps in ((opt_g, max(1, batches // self.objective["n_critic"])), (opt_d, batches)):
            kwargs = schedule_arguments(self.scheduler_factory, lambda: self.trainer, steps)
            schedulers.append({"scheduler": self.scheduler_factory(opt, **kwargs), "interval": self.scheduler_interval})
        return [opt_g, opt_d], schedulers

    # -- checkpoints ----------------------------------------------------------------------------
    @override
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[EMA_STEPS] = int(self.net.ema_steps)  # a plain number: checkpoints stay data

    @override
    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.net.ema_steps = ema_steps_of(checkpoint)  # resume=true continues the warm-up, not restarts it

    # -- quality --------------------------------------------------------------------------------
    def judge(self):
        """The quality judge for this data (zoo/tasks/quality.py), trained or loaded on first use."""
        from zoo.tasks.quality import load_or_train_judge

        if "net" not in self._judge:
            dm = self.trainer.datamodule
            # Evaluation runs under torch.inference_mode, in which nothing can be trained.
            with torch.inference_mode(False), torch.enable_grad():
                x, y = dm.splits["train"][:2]
                x = torch.cat([self.to_model_range(b.to(self.device)) for b in x.split(4096)])
                net, stats = load_or_train_judge(
                    x, y.to(self.device), dm.spec.num_classes, self.judge_dir, self.data_name, self.device
                )
            self._judge.update(net=net, stats=stats)
        self._judge["net"].to(self.device)
        return self._judge["net"], self._judge["stats"]

    def _start_eval(self) -> None:
        from zoo.tasks.quality import QualityMeter

        judge, stats = self.judge()
        self._meter = QualityMeter(judge, stats, self.trainer.datamodule.spec.num_classes)
        self._eval_sums = torch.zeros(3, device=self.device)  # D(x) sum, D(G(z)) sum, n

    def _eval_step(self, batch, batch_idx) -> None:
        net = self.net
        real = self.to_model_range(batch[0])
        labels = batch[1] if net.conditional else None
        g = torch.Generator().manual_seed(EVAL_NOISE_SEED + batch_idx)
        fake = net.generate(net.noise(len(real), g, self.device), labels)
        self._meter.update(real, fake, labels)
        scores = self.score_as_d(torch.stack([net.discriminate(real, labels), net.discriminate(fake, labels)]))
        self._eval_sums += torch.cat([scores.sum(1), scores.new_tensor([len(real)])])

    def _end_eval(self, stage: str) -> None:
        names = self.trainer.datamodule.spec.class_names
        values = {f"{stage}/{class_share_tag(k, names)}": v for k, v in self._meter.compute().items()}
        d_real, d_fake, n = self._eval_sums
        values[f"{stage}/d_real"], values[f"{stage}/d_fake"] = d_real / n.clamp_min(1), d_fake / n.clamp_min(1)
        fid = values.pop(f"{stage}/fid", None)
        self.log_dict(values, sync_dist=True)
        if fid is not None:
            self.log(f"{stage}/fid", fid, prog_bar=True, sync_dist=True)
        self._meter = None

    @override
    def on_validation_epoch_start(self) -> None:
        self._start_eval()

    @override
    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, batch_idx)

    @override
    def on_validation_epoch_end(self) -> None:
        self._end_eval("val")

    @override
    def on_test_epoch_start(self) -> None:
        self._start_eval()

    @override
    def test_step(self, batch, batch_idx):
        self._eval_step(batch, batch_idx)

    @override
    def on_test_epoch_end(self) -> None:
        self._end_eval("test")

    # -- sampling -------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, seed: int = 0, labels: torch.Tensor | None = None) -> torch.Tensor:
        """``n`` images in [0, 1] from the noise of ``seed`` (the sample-grid callback's fixed noise);
        a conditional model cycles through the classes unless given ``labels``."""
        return sample_images(self.net, n, seed, labels, self.device)


def ema_steps_of(checkpoint: dict) -> int:
    """The generator's moving-average steps a checkpoint stores (``EMA_STEPS``). A checkpoint written
    before they were stored counts them as its generator optimizer's steps (Adam's ``step``: one per step
    of G, as the average takes), or 0 when that optimizer keeps no count."""
    value = checkpoint.get(EMA_STEPS)
    if value is None:
        return _generator_steps(checkpoint.get("optimizer_states"))
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**53:
        raise UserError(
            f"this checkpoint stores {EMA_STEPS}={repr(value)[:40]}, not a count; it is damaged: "
            f"use another checkpoint of the run, or start again with overwrite=true."
        )
    return value


def _generator_steps(optimizer_states) -> int:
    if not isinstance(optimizer_states, list) or not optimizer_states or not isinstance(optimizer_states[0], dict):
        return 0
    state = optimizer_states[0].get("state")  # the generator's optimizer comes first (configure_optimizers)
    for param_state in state.values() if isinstance(state, dict) else ():
        step = param_state.get("step") if isinstance(param_state, dict) else None
        if isinstance(step, torch.Tensor) and step.numel() == 1:
            step = step.item()
        if isinstance(step, (int, float)) and not isinstance(step, bool) and 0 <= step < 2**53:
            return int(step)
    return 0


def class_share_tag(key: str, class_names) -> str:
    """``class_share/3`` -> ``class_share/<the class's name>`` (a ``/`` in a name would open a section)."""
    if not key.startswith("class_share/"):
        return key
    k = int(key.split("/")[1])
    name = str(class_names[k]) if k < len(class_names) else str(k)
    return f"class_share/{name.replace('/', '_').replace(' ', '_')}"


def sample_images(
    net, n: int, seed: int = 0, labels: torch.Tensor | None = None, device=None, batch_size: int = 1024
) -> torch.Tensor:
    """``n`` images in [0, 1] from a GAN in eval mode (BatchNorm on its running statistics), the
    same for the same seed on the same device."""
    g = torch.Generator().manual_seed(seed)
    z = net.noise(n, g)
    if labels is None:
        labels = net.cycle_labels(n)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = [
                net.generate(zb.to(device), None if labels is None else lb.to(device))
                for zb, lb in zip(
                    z.split(batch_size),
                    labels.split(batch_size) if labels is not None else [None] * len(z.split(batch_size)),
                )
            ]
    finally:
        net.train(was_training)
    return ((torch.cat(out) + 1) / 2).clamp(0, 1)
