"""GANs (issue 5): both networks on every image dataset, conditional and every loss, the quality
metric improving on digits, TensorBoard, generate.py's PNG and array, and bad input in one sentence."""

from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from datamodules.spec import DataSpec
from tests.helpers import QUIET, ROOT, cli, command, run_train
from zoo.callbacks.logger import tensorboard_tag as tb
from zoo.errors import UserError
from zoo.nets.gan import DCGAN, GAN
from zoo.tasks.quality import frechet_distance
from zoo.tasks.registry import build_net


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small networks in many small kernels: on 2 cores that other work also uses, OpenMP threads
    spin-waiting on each other make them many times slower than one thread (see the CHANGELOG for
    issue 4). One thread here; the setting is put back after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


FEW_STEPS = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "data.val_size=16",
    "data.batch_size=16",
    "callbacks.samples.num_samples=16",
]


# ---- the networks -----------------------------------------------------------------------------


@pytest.mark.parametrize("conditional", [False, True])
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize("net", [GAN, DCGAN])
def test_networks_size_themselves_from_the_spec(net, shape, conditional):
    spec = DataSpec(name="x", kind="image", shape=shape, num_classes=10, class_names=tuple("abcdefghij"))
    model = net(spec, latent_dim=16, dropout=0.25, conditional=conditional)
    labels = model.cycle_labels(6)
    assert (labels is not None) == conditional
    images = model.generate(model.noise(6), labels)
    assert images.shape == (6, *shape) and images.min() >= -1 and images.max() <= 1
    assert model.discriminate(images, labels).shape == (6,)
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.25 for m in model.discriminator.modules())
    assert not any(isinstance(m, torch.nn.Dropout) for m in model.generator.modules())


@pytest.mark.parametrize("net", [GAN, DCGAN])
def test_conditional_auto_is_conditional_exactly_when_the_data_has_classes(net):
    """``model.conditional=auto`` (the default): told the class where the data has classes, so that
    every class is drawn (docs/guide/gans.md: rarest digit 3.3-6.5% unconditional, 8.9-9.2% so);
    unconditional on images without classes; any other value is one sentence."""
    labelled = DataSpec(name="x", kind="image", shape=(1, 8, 8), num_classes=10, class_names=tuple("abcdefghij"))
    unlabelled = DataSpec(name="faces", kind="image", shape=(1, 8, 8))
    assert net(labelled, latent_dim=8, dropout=0.0).conditional
    assert net(labelled, latent_dim=8, dropout=0.0, conditional="auto").num_classes == 10
    assert not net(labelled, latent_dim=8, dropout=0.0, conditional=False).conditional
    assert not net(unlabelled, latent_dim=8, dropout=0.0).conditional
    with pytest.raises(ValueError, match=r"^model.conditional must be true, false or auto, got 'yes'$"):
        net(labelled, latent_dim=8, dropout=0.0, conditional="yes")
    with pytest.raises(ValueError, match="model.conditional=true needs class labels and faces has none"):
        net(unlabelled, latent_dim=8, dropout=0.0, conditional=True)


def test_dcgan_starts_from_the_map_the_image_size_allows():
    for shape, first in (((3, 32, 32), (256, 4, 4)), ((1, 28, 28), (128, 7, 7)), ((1, 8, 8), (64, 4, 4))):
        model = DCGAN(DataSpec(name="x", kind="image", shape=shape), width=64)
        assert model.generator[1].unflattened_size == first
        assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in model.generator.modules()) == int(
            math.log2(shape[1] // first[1])
        )


def test_wgan_gp_discriminator_has_no_batchnorm():
    spec = DataSpec(name="x", kind="image", shape=(1, 28, 28), num_classes=10)
    auto = DCGAN(spec, loss="wgan-gp")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in auto.discriminator.modules())
    assert any(isinstance(m, torch.nn.GroupNorm) for m in auto.discriminator.modules())
    with pytest.raises(ValueError, match="set model.d_norm=layer"):
        DCGAN(spec, loss="wgan-gp", d_norm="batch")


def test_frechet_distance_of_known_gaussians():
    mu1, mu2 = torch.zeros(3), torch.tensor([1.0, 2.0, 2.0])
    cov1, cov2 = torch.eye(3), 4 * torch.eye(3)
    # |mu1 - mu2|^2 + tr(I + 4I - 2 * 2I) = 9 + 3
    assert frechet_distance(mu1, cov1, mu2, cov2) == pytest.approx(12.0)
    assert frechet_distance(mu2, cov2, mu2, cov2) == pytest.approx(0.0, abs=1e-9)


def test_the_judge_on_data_without_classes_measures_distances_only():
    from zoo.tasks.quality import QualityMeter, train_judge

    x = torch.rand(64, 1, 8, 8) * 2 - 1
    judge, stats = train_judge(x, torch.zeros(64, dtype=torch.long), 0, "cpu")
    meter = QualityMeter(judge, stats, 0)
    meter.update(x[:32], torch.zeros(32, 1, 8, 8))
    values = meter.compute()
    assert set(values) == {"fid", "fid_real", "fid_coverage", "precision", "recall"} and stats["steps"] == 0
    assert values["fid_coverage"] == values["fid"]  # no classes: nothing to divide by


def test_precision_and_recall_see_a_collapsed_generator():
    """Kynkaanniemi et al.: samples from one mode of the data keep their precision, lose their recall."""
    from zoo.tasks.quality import precision_recall

    g = torch.Generator().manual_seed(0)
    centres = torch.randn(10, 8, generator=g) * 10
    real = (centres[torch.arange(500) % 10] + torch.randn(500, 8, generator=g)).float()
    everywhere = (centres[torch.arange(500) % 10] + torch.randn(500, 8, generator=g)).float()
    one_mode = (centres[0] + torch.randn(500, 8, generator=g)).float()
    p, r = precision_recall(real, everywhere)
    assert p > 0.8 and r > 0.8
    p, r = precision_recall(real, one_mode)
    assert p > 0.8 and r < 0.2
    off = (torch.randn(500, 8, generator=g) * 10 + 100).float()  # nowhere near the data
    assert precision_recall(real, off)[0] == 0.0


def test_class_shares_entropy_and_the_rarest_class_of_the_samples():
    from zoo.tasks.quality import QualityMeter

    class FixedJudge(torch.nn.Module):
        """Calls every image the class of its first pixel."""

        def forward(self, x):
            labels = x.flatten(1)[:, 0].long()
            return x.flatten(1)[:, :4].float(), torch.nn.functional.one_hot(labels, 4).float() * 20

    stats = {"mu": torch.zeros(4), "cov": torch.eye(4)}
    meter = QualityMeter(FixedJudge(), stats, 4)
    real = torch.arange(4).repeat(25).float().reshape(100, 1, 1, 1).expand(100, 1, 2, 2).contiguous()
    fake = torch.tensor([0] * 70 + [1] * 20 + [2] * 10).float().reshape(100, 1, 1, 1).expand(100, 1, 2, 2).contiguous()
    meter.update(real, fake)
    v = meter.compute()
    assert [v[f"class_share/{k}"] for k in range(4)] == pytest.approx([0.7, 0.2, 0.1, 0.0])
    assert v["rarest_share"] == 0.0  # class 3 never drawn
    shares = torch.tensor([0.7, 0.2, 0.1])
    assert v["entropy"] == pytest.approx(float(-(shares * shares.log()).sum() / math.log(4)))
    assert v["coverage"] == pytest.approx(float((-(shares * shares.log()).sum()).exp() / 4))
    assert v["fid_coverage"] == pytest.approx(v["fid"] / v["coverage"])
    assert v["confidence"] == pytest.approx(1.0) and v["confidence_real"] == pytest.approx(1.0)


def test_mode_collapse_is_diagnosed_when_a_class_stays_rare():
    from zoo.callbacks.diagnostics import Diagnoser

    d = Diagnoser()
    fair = {str(k): 0.1 for k in range(10)}
    rare = {**fair, "3": 0.013, "7": 0.187}
    for step in (1, 2, 3):  # the first epochs' blurs, read as a few classes: not yet a collapse
        assert d.observe_class_shares(step, rare) == []
    assert d.observe_class_shares(10, fair) == []
    assert d.observe_class_shares(20, rare) == []  # once is not a stretch
    assert d.observe_class_shares(25, rare) == []
    assert d.observe_class_shares(28, fair) == []  # and the streak is broken
    assert d.observe_class_shares(30, rare) == []
    assert d.observe_class_shares(35, rare) == []
    (found,) = d.observe_class_shares(40, rare)
    assert found["kind"] == "mode_collapse" and found["step"] == 40
    assert "class 3 (1.3%)" in found["message"] and "mode collapse" in found["message"]
    assert "3 validations running" in found["message"]
    assert d.observe_class_shares(50, rare) == []  # said once
    assert "model.conditional=true" in found["message"]  # not told the class: telling it is the surest fix
    told = Diagnoser()
    for step in range(1, 7):
        found = told.observe_class_shares(step, rare, conditional=True)
    assert "asked for every class equally often" in found[0]["message"]
    assert "model.conditional=true" not in found[0]["message"]


# ---- training on every image dataset ----------------------------------------------------------


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    """One data folder for the runs on digits (which ship with scikit-learn), so they share a judge."""
    return tmp_path_factory.mktemp("digits_data")


# The other image datasets only change the data's shape (as in tests/test_models.py's matrix of
# classifiers, which is slow as a whole): slow, digits stays in the fast subset.
@pytest.mark.parametrize(
    "data", ["digits", *(pytest.param(d, marks=pytest.mark.slow) for d in ("mnist", "fashion_mnist", "cifar10"))]
)
@pytest.mark.parametrize("model", ["gan", "dcgan"])
def test_every_gan_trains_on_every_image_dataset(model, data, image_data, digits_dir, tmp_path):
    out = tmp_path / "run"
    data_dir = digits_dir if data == "digits" else image_data  # digits' judge is trained once for both
    metrics = run_train([f"model={model}", f"data={data}", *FEW_STEPS], out, data_dir=data_dir)
    assert metrics["global_step"] == 6  # a discriminator and a generator step per batch
    for stage in ("val", "test"):
        assert metrics[f"{stage}/fid"] > 0 and metrics[f"{stage}/fid_real"] >= 0
        assert 0 < metrics[f"{stage}/confidence"] <= 1 and 0 < metrics[f"{stage}/coverage"] <= 1
        assert 0 <= metrics[f"{stage}/d_real"] <= 1 and 0 <= metrics[f"{stage}/d_fake"] <= 1
    assert (out / "checkpoints" / "last.ckpt").is_file() and "best-epoch000" in metrics["best_checkpoint"]
    assert list((data_dir / "judges").glob("*.pt"))  # the quality judge is cached beside the data


@pytest.mark.parametrize(
    "model, options",
    [
        ("gan", ["model.loss=hinge", "model.n_critic=2", "trainer.gradient_clip_val=0.01", "steps_per_execution=2"]),
        ("dcgan", ["model.loss=wgan-gp", "model.n_critic=3", "model.d_lr_scale=2", "scheduler=cosine"]),
        ("dcgan", ["model.label_smoothing=0.1", "data.hflip=true", "data.random_crop=2"]),
        (
            "dcgan",
            [
                "model.spectral_norm=true",
                "model.minibatch_std=true",
                "model.ema=0.99",
                "model.augment=[translation,cutout,color]",
                "steps_per_execution=2",
            ],
        ),
        (
            "gan",
            ["model.spectral_norm=true", "model.minibatch_std=true", "model.ema=0.9", "model.augment=[translation]"],
        ),
    ],
    ids=["gan-hinge-clip", "dcgan-wgan-gp-cosine", "dcgan-smoothing", "dcgan-remedies", "gan-remedies"],
)
def test_conditional_gans_with_every_loss(model, options, image_data, tmp_path):
    out = tmp_path / "run"
    metrics = run_train(
        [
            f"model={model}",
            "data=mnist",
            "model.conditional=true",
            *FEW_STEPS,
            "trainer.limit_train_batches=6",
            *options,
        ],
        out,
        data_dir=image_data,
    )
    n_critic = next((int(o.split("=")[1]) for o in options if o.startswith("model.n_critic")), 1)
    batches = 80 // 16  # the training split of the small MNIST files, whatever steps_per_execution is
    assert metrics["global_step"] == batches + batches // n_critic  # D steps every batch, G every n_critic
    assert 0 <= metrics["val/cond_acc"] <= 1 and math.isfinite(metrics["val/fid"])
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["task"] == "adversarial"
    assert ckpt["hyper_parameters"]["config"]["model"]["conditional"] is True
    assert any(k.startswith("net.embed.") for k in ckpt["state_dict"])  # the projection
    assert not any("judge" in k for k in ckpt["state_dict"])  # not part of the model
    if "model.ema=0.99" in options or "model.ema=0.9" in options:
        assert any(k.startswith("net.generator_ema.") for k in ckpt["state_dict"])
        from zoo.run.rebuild import rebuild

        net = rebuild(str(out / "checkpoints" / "last.ckpt")).net.eval()  # checkpoints stay data
        assert net.generator_ema is not None
        z = torch.randn(4, net.latent_dim)
        labels = torch.arange(4) % net.num_classes
        # in eval mode the samples come from the moving average, not from G's last weights
        assert not torch.allclose(net.generate(z, labels), net.generator(net._with_label(z, labels)))
    if "model.spectral_norm=true" in options:
        assert any("parametrizations.weight.original" in k for k in ckpt["state_dict"])
    for k in range(10):
        assert 0 <= metrics[f"val/class_share/{k}"] <= 1
    assert 0 <= metrics["val/precision"] <= 1 and 0 <= metrics["val/recall"] <= 1


EMA = ["model=gan", "data=mnist", "model.ema=0.9", *FEW_STEPS]


@pytest.mark.slow  # trains or starts processes: seconds each (the fast subset stays under 2 minutes)
def test_a_resumed_gan_continues_the_moving_average_where_it_stopped(image_data, tmp_path):
    # Two epochs of three generator steps, in one go and as one epoch then resume=true: the average's
    # warm-up (decay min(ema, (1 + t) / (10 + t))) continues at t = 3 instead of starting again at 0,
    # so the resumed run's averaged generator (what validation, samples and generate.py use) is the
    # uninterrupted run's.
    whole = tmp_path / "whole"
    run_train([*EMA, "trainer.max_epochs=2"], whole, data_dir=image_data)
    out = tmp_path / "run"
    run_train(EMA, out, data_dir=image_data)
    first = torch.load(out / "checkpoints" / "resume.ckpt", map_location="cpu", weights_only=True)
    assert first["zoo_ema_steps"] == 3  # a plain number beside the weights: loaded as data
    (out / "metrics.json").unlink()  # a stopped run, continued
    metrics = run_train([*EMA, "trainer.max_epochs=2", "resume=true"], out, data_dir=image_data)
    assert metrics["status"] == "finished" and metrics["global_step"] == 12
    ckpts = [
        torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True) for run in (whole, out)
    ]
    assert ckpts[0]["zoo_ema_steps"] == ckpts[1]["zoo_ema_steps"] == 6
    averaged = [{k: v for k, v in c["state_dict"].items() if k.startswith("net.generator_ema.")} for c in ckpts]
    assert averaged[0] and averaged[0].keys() == averaged[1].keys()
    for name, value in averaged[0].items():
        torch.testing.assert_close(averaged[1][name], value, msg=name)


@pytest.mark.slow  # trains or starts processes: seconds each (the fast subset stays under 2 minutes)
def test_a_gan_checkpoint_without_its_moving_average_steps_still_resumes(image_data, tmp_path):
    from zoo.tasks.adversarial import ema_steps_of

    out = tmp_path / "run"
    run_train(EMA, out, data_dir=image_data)
    path = out / "checkpoints" / "resume.ckpt"
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    del ckpt["zoo_ema_steps"]  # as written before the steps were stored
    torch.save(ckpt, path)
    (out / "metrics.json").unlink()
    metrics = run_train([*EMA, "trainer.max_epochs=2", "resume=true"], out, data_dir=image_data)
    assert metrics["status"] == "finished"
    # counted from the generator's optimizer (Adam's step: one per step of G, as the average takes)
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["zoo_ema_steps"] == 6
    assert ema_steps_of({**ckpt, "optimizer_states": []}) == 0  # an optimizer that keeps no count
    with pytest.raises(UserError, match="zoo_ema_steps='3', not a count"):
        ema_steps_of({**ckpt, "zoo_ema_steps": "3"})


# ---- a real run on digits: quality, TensorBoard, checkpoints, generate.py ---------------------

DIGITS = [
    "experiment=digits_gan",
    "trainer.max_epochs=6",
    "callbacks.gradient_norms.every_n_steps=10",
    "callbacks.histograms=null",
]


def fid_at_initialisation(tmp_path: Path, data_dir: Path) -> dict:
    """The validation metrics of the run's network before its first step (same seed, same weights)."""
    import lightning as L
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from zoo.run.config import compose_run
    from zoo.tasks.registry import build_task

    cfg = compose_run(DIGITS, str(tmp_path / "init"), str(data_dir))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = instantiate(cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    net = build_net(instantiate(cfg.model), dm.spec)
    task = build_task(
        "adversarial",
        dm.spec,
        net,
        instantiate(cfg.optimizer),
        {},
        {"config": OmegaConf.to_container(cfg, resolve=True)},
    )
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return trainer.validate(task, datamodule=dm, verbose=False)[0]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits_gan")
    out, data = root / "run", root / "data"
    metrics = run_train(DIGITS, out, data_dir=data, views=True)
    return out, data, metrics


@pytest.mark.slow  # trains a GAN (the module's digits run) or runs a command
def test_quality_on_digits_is_clearly_better_than_at_initialisation(digits_run, tmp_path):
    _out, data, metrics = digits_run
    init = fid_at_initialisation(tmp_path, data)
    assert metrics["val/fid"] < init["val/fid"] / 4, (metrics["val/fid"], init["val/fid"])
    assert metrics["val/coverage"] > init["val/coverage"] + 0.3
    assert metrics["val/cond_acc"] > 0.5  # conditional by default on digits: it draws the digit asked for
    assert metrics["val/fid"] > metrics["val/fid_real"]  # samples are not better than real images
    assert metrics["test/fid"] < init["val/fid"] / 4
    assert metrics["epochs"] == 6 and metrics["best_epoch"] is not None
    assert Path(metrics["best_checkpoint"]).is_file()


@pytest.mark.slow  # trains a GAN (the module's digits run) or runs a command
def test_tensorboard_shows_both_losses_d_outputs_gradients_and_samples(digits_run):
    out, _, metrics = digits_run
    ea = EventAccumulator(str(out), size_guidance={"scalars": 0, "images": 0})
    ea.Reload()
    scalars = set(ea.Tags()["scalars"])
    for tag in (
        tb("train/d_loss_step"),
        tb("train/g_loss_step"),
        tb("train/d_real_step"),
        tb("train/d_fake_step"),
        tb("train/d_loss"),
        tb("train/g_loss"),
        tb("train/d_real"),
        tb("train/d_fake"),
        tb("val/fid"),
        tb("val/fid_real"),
        tb("val/confidence"),
        tb("val/coverage"),
        tb("val/d_real"),
        tb("val/d_fake"),
        tb("test/fid"),
        tb("watch/grad_norm/generator/total"),
        tb("watch/grad_norm/discriminator/total"),
        tb("lr/generator"),
        tb("lr/discriminator"),
    ):
        assert tag in scalars, (tag, sorted(scalars))
    assert len(ea.Scalars(tb("val/fid"))) == 6
    # Both networks' gradient norms at the same steps, every 10 batches (the loggers' step).
    batches = metrics["global_step"] // 2
    for net in ("generator", "discriminator"):
        assert [e.step for e in ea.Scalars(tb(f"watch/grad_norm/{net}/total"))] == list(range(0, batches, 10))
        assert tb(f"watch/grad_norm/{net}/fc1") in scalars or tb(f"watch/grad_norm/{net}/conv1") in scalars, scalars
    assert [e.step for e in ea.Scalars(tb("train/d_loss_step"))][-1] < batches
    images = ea.Tags()["images"]
    assert len(ea.Images(tb("samples/fixed_noise"))) == 6 and len(ea.Images(tb("samples/real"))) == 1
    grid = ea.Images(tb("samples/fixed_noise"))[-1]
    assert (
        grid.encoded_image_string[:4] == b"\x89PNG" and grid.width > 200 and tb("test/confusion_matrix") not in images
    )


@pytest.mark.slow
def test_a_gan_trains_with_ddp_on_two_processes(digits_run, tmp_path):
    _, data, _ = digits_run  # the same digits split, so both processes find the judge cached
    out = tmp_path / "run"
    r = cli(
        "train.py",
        "model=gan",
        "trainer=ddp_cpu",
        "trainer.devices=2",
        "model.conditional=true",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=4",
        *QUIET,
        f"hydra.run.dir={out}",
        f"paths.data_dir={data}",
        env={"OMP_WAIT_POLICY": "PASSIVE"},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["global_step"] == 8 and math.isfinite(metrics["val/fid"]) and "test/cond_acc" in metrics


@pytest.mark.slow  # trains a GAN (the module's digits run) or runs a command
def test_eval_of_a_gan_checkpoint_gives_the_same_test_metrics(digits_run):
    from omegaconf import OmegaConf

    import eval as evaluate_module

    _, _, metrics = digits_run
    cfg = OmegaConf.create(
        {
            "ckpt_path": metrics["best_checkpoint"],
            "data_dir": None,
            "split": "test",
            "accelerator": "cpu",
            "batch_size": None,
            "out": None,
        }
    )
    again = evaluate_module.evaluate(cfg)
    assert again["test/fid"] == pytest.approx(metrics["test/fid"], rel=1e-4)
    assert again["test/coverage"] == pytest.approx(metrics["test/coverage"], rel=1e-4)


@pytest.mark.slow  # trains a GAN (the module's digits run) or runs a command
def test_generate_writes_a_png_grid_and_an_array_in_0_1(digits_run, tmp_path):
    from matplotlib.image import imread
    from omegaconf import OmegaConf

    import generate as generate_module

    _, _, metrics = digits_run
    png = tmp_path / "grid.png"
    r = command("generate.py", f"ckpt_path={metrics['best_checkpoint']}", "num_samples=64", f"out={png}")
    assert r.returncode == 0, r.stderr[-3000:]
    grid = imread(png)
    # the digits have classes, so the GAN is class-conditional (model.conditional=auto): a class per
    # column, 64 samples in 7 rows of 10, each 8 px image shown at 32 px, 2 px apart
    assert grid.shape[:2] == (7 * (32 + 2) + 2, 10 * (32 + 2) + 2)

    array = tmp_path / "samples.npy"
    cfg = OmegaConf.create(
        {
            "ckpt_path": metrics["best_checkpoint"],
            "seed": 3,
            "accelerator": "cpu",
            "num_samples": 50,
            "out": str(array),
            "label": None,
        }
    )
    generate_module.generate(cfg)
    samples = np.load(array)
    assert samples.shape == (50, 1, 8, 8) and samples.dtype == np.float32
    assert samples.min() >= 0 and samples.max() <= 1 and samples.std() > 0.05
    generate_module.generate(cfg)
    assert np.array_equal(np.load(array), samples)  # the same seed, the same samples


@pytest.mark.slow  # trains or starts processes: seconds each (the fast subset stays under 2 minutes)
def test_generate_one_class_of_a_conditional_gan(image_data, tmp_path):
    from omegaconf import OmegaConf

    import generate as generate_module

    metrics = run_train(
        ["model=gan", "data=mnist", "model.conditional=true", *FEW_STEPS], tmp_path / "run", data_dir=image_data
    )
    base = {"ckpt_path": metrics["best_checkpoint"], "seed": 0, "accelerator": "cpu", "num_samples": 4}
    generate_module.generate(OmegaConf.create({**base, "out": str(tmp_path / "s.npy"), "label": 7}))
    assert np.load(tmp_path / "s.npy").shape == (4, 1, 28, 28)
    with pytest.raises(UserError, match=r"^label=12 is not a class of mnist; give an index 0-9"):
        generate_module.generate(OmegaConf.create({**base, "out": str(tmp_path / "s.npy"), "label": 12}))
    with pytest.raises(UserError, match=r"must end in \.png \(a grid of images\) or \.npy"):
        generate_module.generate(OmegaConf.create({**base, "out": str(tmp_path / "s.jpg"), "label": None}))


# ---- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("net, name", [(GAN, "gan"), (DCGAN, "dcgan")])
def test_a_gan_on_non_image_data_names_both_sides(net, name):
    spec = DataSpec(name="sine", kind="series", shape=(96, 3))
    with pytest.raises(
        UserError, match=rf"^model={name} cannot take data=sine: it needs images, and sine yields numeric series"
    ):
        build_net(partial(net, dropout=0.1), spec, name, "sine")


@pytest.mark.slow
@pytest.mark.skipif(not (ROOT / "conf" / "data" / "sine.yaml").is_file(), reason="no non-image dataset yet")
def test_a_gan_on_a_time_series_from_the_command_line(tmp_path):
    r = command(
        "train.py",
        "model=dcgan",
        "data=sine",
        f"hydra.run.dir={tmp_path / 'run'}",
        f"paths.data_dir={tmp_path / 'data'}",
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        "error: model=dcgan cannot take data=sine: it needs images, and "
        "sine yields numeric series; pick another model or dataset."
    )


@pytest.mark.slow
def test_latent_size_zero(tmp_path):
    r = command("train.py", "model=gan", "model.latent_dim=0", f"hydra.run.dir={tmp_path / 'run'}")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    # answered by the config check, before torch is imported
    assert r.stderr.strip().splitlines()[-1] == (
        "error: model.latent_dim must be a positive whole number, got 0; try model.latent_dim=64."
    )
    spec = DataSpec(name="digits", kind="image", shape=(1, 8, 8), num_classes=10)
    with pytest.raises(UserError, match="model.latent_dim must be a positive whole number, got 0"):
        build_net(partial(DCGAN, latent_dim=0), spec, "dcgan", "digits")


@pytest.mark.slow  # trains a GAN (the module's digits run) or runs a command
def test_generate_refuses_a_classifier_checkpoint(tmp_path):
    metrics = run_train(
        ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "callbacks.histograms=null"], tmp_path / "run"
    )
    r = command("generate.py", f"ckpt_path={metrics['best_checkpoint']}", f"out={tmp_path / 'x.png'}")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith(
        f"error: {metrics['best_checkpoint']} was trained by the 'classify' task, which does not "
        f"generate anything; give a checkpoint of a generative task ("
    )
    assert "adversarial" in line and not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["trainer.accumulate_grad_batches=2"], "trainer.accumulate_grad_batches=2 does not apply to GANs"),
        (
            ["callbacks=default"],
            "callbacks.early_stopping.monitor=val/loss is not a metric the adversarial task logs; watch one of val/fid",
        ),
        (
            ["model.loss=wasserstein"],
            "model=gan cannot be built for data=digits: model.loss=wasserstein is not a GAN loss",
        ),
        (
            ["model.label_smoothing=0.1", "model.loss=hinge"],
            "model.label_smoothing applies to the non_saturating loss only",
        ),
    ],
)
def test_settings_a_gan_cannot_use_get_one_sentence(overrides, message, tmp_path):
    with pytest.raises(UserError, match=message.replace(".", r"\.")):
        run_train(["model=gan", "trainer.max_epochs=1", "trainer.limit_train_batches=2", *overrides], tmp_path / "run")
