"""Training speed of the framework against a plain PyTorch loop doing the same work, for every
model family on the data it is for, at default settings.

    python benchmarks/bench_train.py                      # every family, 3 interleaved rounds
    python benchmarks/bench_train.py --model mlp --rounds 5
    python benchmarks/bench_train.py --model lstm --model gan --steps 100
    python benchmarks/bench_train.py --callbacks --model mlp   # the cost of each observability callback
    python benchmarks/bench_train.py --device cuda        # both on the GPU

The families (``--model``, repeatable; default all): mlp, cnn, resnet on MNIST-sized images (60,000 +
10,000 synthetic 28x28 images written in MNIST's IDX format, 55,000 train); lstm, gru, rnn, linear
forecasting a synthetic multichannel series (data=sine); lstm-text, a character language model on
Tiny Shakespeare (only when ``--text-data`` or /work/shared/data holds it); gan, the GAN's
alternating discriminator and generator steps on the MNIST-sized images; transformer, the GPT-style
character model on Tiny Shakespeare (as lstm-text), and vit, the same network family as a small ViT
on the MNIST-sized images; table, the MLP on a synthetic table (50,000 rows: 8 numeric columns with
gaps, 3 categorical ones, a class to predict; data=tabular); mf, matrix factorisation on 100,000
synthetic ratings of MovieLens-100k's sizes (943 users, 1,682 items), whose validation also ranks
each held-out item among 100 candidates in both loops; audio, a CNN on log-mel spectrograms
(computed by the network's front end) of 2,000 synthetic one-second 8 kHz clips in class folders
(data=audio_folder), the plain loop shifting each training clip in time as the framework's data
does. The framework runs
``train.py model=<family> data=<its data>`` in process with its defaults (steps_per_execution=auto,
the default callbacks), but for early stopping (a benchmark runs its epochs) and histograms
(measured by --callbacks); the GAN also without validation (its FID judge is a model of its own).
The plain loop is written for each kind of task: the same network, data tensors, loss, optimizer
and gradient clipping, batches by randperm indexing, one validation pass an epoch.

The two run alternately in fresh processes. Each epoch is timed from its first batch to the next
epoch's first batch (the plain loop: to its end), so validation, checkpoints and epoch-end
callbacks count; the first epoch is a warm-up and is not counted. The table gives medians:
steps/s, epoch seconds, the ratio framework / plain (the median over rounds of the ratio within a
round), peak memory (RSS; on CUDA also the GPU's), the time from the command to the first
training step, the main validation metric, and the steps per execution auto chose.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from zoo.run.config import user_errors  # noqa: E402 - after the repository is on the path

# The callbacks whose cost --callbacks measures, one at a time on top of the bare framework (all of
# them off). The confusion matrix and misclassified images run at test time only: their cost is
# measured on the test pass (test seconds / bare test seconds), the others' on the training epochs.
OBSERVABILITY = [
    "gradient_norms",
    "signals",
    "diagnostics",
    "saliency",
    "histograms",
    "lr_monitor",
    "step_time",
    "custom_scalars",
    "model_graph",
    "input_samples",
    "progress_bar",
    "model_summary",
    "checkpoint",
    "confusion_matrix",
    "misclassified",
    "per_class",
    "top_losses",
    "embeddings",
]
CALLBACK_VARIANTS = [
    "bare",
    "gradient_norms",
    "signals",
    "diagnostics",
    "histograms",
    "lr_monitor",
    "step_time",
    "custom_scalars",
    "model_graph",
    "input_samples",
    "progress_bar",
    "checkpoint",
    "confusion_matrix",
    "misclassified",
    "per_class",
    "top_losses",
    "embeddings",
    "saliency",
]
TEST_TIME = ("confusion_matrix", "misclassified", "per_class", "top_losses", "embeddings", "saliency")
HISTOGRAMS_ON = "callbacks.histograms={_target_:zoo.callbacks.gradients.HistogramLogger}"  # every epoch's end


def write_mnist_sized(data_dir: str) -> None:
    """60,000 train and 10,000 test 28x28 images in MNIST's IDX files, with learnable classes."""
    import numpy as np

    raw = os.path.join(data_dir, "MNIST", "raw")
    os.makedirs(raw, exist_ok=True)
    rng = np.random.default_rng(0)
    prototypes = rng.integers(0, 256, (10, 28, 28))
    for split, n in (("train", 60_000), ("t10k", 10_000)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        noise = rng.integers(-80, 80, (n, 28, 28))
        images = np.clip(prototypes[labels] + noise, 0, 255).astype(np.uint8)
        for name, arr in ((f"{split}-images-idx3-ubyte", images), (f"{split}-labels-idx1-ubyte", labels)):
            header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
            with open(os.path.join(raw, name), "wb") as f:
                f.write(header + arr.tobytes())


def write_table(data_dir: str, n: int = 50_000) -> None:
    """A CSV of ``n`` rows: 8 numeric columns (5% of one missing), 3 categorical ones and a learnable
    binary label."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"x{i}": rng.normal(size=n).round(4) for i in range(8)})
    for i, k in enumerate((4, 12, 40)):
        frame[f"c{i}"] = [f"k{v}" for v in rng.integers(0, k, n)]
    score = frame["x0"] - frame["x1"] + (frame["c0"] == "k1") + 0.3 * rng.normal(size=n)
    frame.loc[rng.random(n) < 0.05, "x2"] = np.nan
    frame["label"] = np.where(score > 0, "yes", "no")
    os.makedirs(os.path.join(data_dir, "table"), exist_ok=True)
    frame.to_csv(os.path.join(data_dir, "table", "bench.csv"), index=False)


def write_ratings_sized(data_dir: str) -> None:
    """100,000 ratings 1-5 of 1,682 items by 943 users (MovieLens-100k's sizes) from a low-rank taste
    model, in u.data's format."""
    import numpy as np

    folder = os.path.join(data_dir, "ratings")
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    users, items = rng.integers(1, 944, 100_000), rng.integers(1, 1683, 100_000)
    tastes, kinds = rng.normal(size=(944, 8)), rng.normal(size=(1683, 8))
    scores = 3.5 + 0.4 * (tastes[users] * kinds[items]).sum(1) + rng.normal(0, 0.5, 100_000)
    ratings = np.clip(np.round(scores), 1, 5).astype(int)
    stamps = 880_000_000 + np.arange(100_000)
    with open(os.path.join(folder, "u.data.part"), "w") as f:
        f.writelines(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in zip(users, items, ratings, stamps))
    os.replace(os.path.join(folder, "u.data.part"), os.path.join(folder, "u.data"))


def write_audio_clips(data_dir: str) -> None:
    """2,000 one-second 8 kHz WAV clips in 10 class folders under data_dir/bench_audio: each class a
    tone of its own pitch, with noise and a random start."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    t = np.arange(8000) / 8000
    for c in range(10):
        folder = os.path.join(data_dir, "bench_audio", f"class{c}")
        os.makedirs(folder, exist_ok=True)
        for i in range(200):
            wave = 0.4 * np.sin(2 * np.pi * (200 + 150 * c) * t) * (t > rng.uniform(0, 0.3))
            sf.write(os.path.join(folder, f"{i}.wav"), wave + 0.05 * rng.standard_normal(8000), 8000, subtype="PCM_16")


class EpochTimer:
    """Times each training epoch from its first batch to the first batch of the next (the last one:
    to the end of training), so validation, checkpoints and every callback's epoch-end work count."""

    def __init__(self, command_started: float, between=None):
        import lightning as L

        class _Timer(L.Callback):
            def __init__(s):
                s.epochs, s.first_step, s.t0, s.test_s, s.steps = [], None, None, None, None

            def on_train_start(s, trainer, pl_module):
                s.steps = trainer.num_training_batches  # batches an epoch (steps count batches)

            def end_epoch(s):
                if s.t0 is not None:
                    s.epochs.append(time.perf_counter() - s.t0)

            def on_train_batch_start(s, trainer, pl_module, batch, batch_idx):
                if batch_idx == 0:
                    s.end_epoch()
                    if between is not None:  # --interleaved: a plain epoch before each of these, untimed here
                        between()
                    s.t0 = time.perf_counter()
                    if s.first_step is None:
                        s.first_step = time.time() - command_started

            def on_train_end(s, trainer, pl_module):
                s.end_epoch()

            def on_test_start(s, trainer, pl_module):
                s.test_t0 = time.perf_counter()

            def on_test_end(s, trainer, pl_module):
                s.test_s = time.perf_counter() - s.test_t0

        self.callback = _Timer()


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


SHARED_TEXT = "/work/shared/data"
NO_BENCH_CALLBACKS = ["callbacks.early_stopping=null", "callbacks.histograms=null"]
# family -> (its train.py overrides, the data it is for)
CASES = {
    "mlp": (["experiment=bench_mlp_mnist"], "images"),
    "cnn": (["experiment=bench_cnn_mnist"], "images"),
    "resnet": (["data=mnist", "model=resnet", *NO_BENCH_CALLBACKS], "images"),
    "lstm": (["data=sine", "model=lstm", *NO_BENCH_CALLBACKS], "series"),
    "gru": (["data=sine", "model=gru", *NO_BENCH_CALLBACKS], "series"),
    "rnn": (["data=sine", "model=rnn", *NO_BENCH_CALLBACKS], "series"),
    "linear": (["data=sine", "model=linear", *NO_BENCH_CALLBACKS], "series"),
    "lstm-text": (["data=shakespeare", "model=lstm", *NO_BENCH_CALLBACKS], "tokens"),
    "gan": (["data=mnist", "model=gan", "trainer.limit_val_batches=0", *NO_BENCH_CALLBACKS], "images"),
    "transformer": (["data=shakespeare", "model=transformer", *NO_BENCH_CALLBACKS], "tokens"),
    "vit": (["data=mnist", "model=transformer", *NO_BENCH_CALLBACKS], "images"),
    "table": (
        ["data=tabular", "data.path=${paths.data_dir}/table/bench.csv", "data.target=label", *NO_BENCH_CALLBACKS],
        "table",
    ),
    "mf": (["data=ratings", "data.path=${paths.data_dir}/ratings/u.data", "model=mf", *NO_BENCH_CALLBACKS], "ratings"),
    # spoken-digit-sized clips: 2,000 one-second tones at 8 kHz in 10 class folders (write_audio_clips);
    # the network computes log-mel spectrograms on each batch, the data shifts each clip in time
    "audio": (
        [
            "data=audio_folder",
            "data.root=${paths.data_dir}/bench_audio",
            "data.sample_rate=8000",
            "model=cnn",
            "model.channels=[16,32,64]",
            "model.hidden=64",
            *NO_BENCH_CALLBACKS,
        ],
        "audio",
    ),
}
TEXT_CASES = [m for m, (_, kind) in CASES.items() if kind == "tokens"]


def compose_case(args, extra: list[str] = ()):
    """The run's config, as train.py would compose it for this family."""
    from zoo.run.config import compose_run

    overrides = [
        *CASES[args.model][0],
        f"trainer.max_epochs={args.epochs}",
        "trainer=gpu" if args.device == "cuda" else "trainer=cpu",
        *extra,
        *args.set,
    ]
    data_dir = args.text_data if CASES[args.model][1] == "tokens" else args.data_dir
    return compose_run(overrides, tempfile.mkdtemp(prefix="bench-run-"), data_dir)


class PlainLoop:
    """The hand-written loop: the run's data as tensors on the device, randperm batches, the same
    network, loss, optimizer and clipping as the framework's task; a validation pass an epoch."""

    def __init__(self, args):
        import torch
        from hydra.utils import instantiate

        from zoo.tasks.registry import build_net

        # A hand-written loop does not import Lightning, which sets this on import (NVML loaded on
        # every Adam step to ask whether CUDA is available); the framework clears it during training.
        os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)
        cfg = compose_case(args)
        torch.manual_seed(cfg.seed)
        dm = instantiate(cfg.data)
        dm.prepare_data()
        dm.setup("fit")
        self.dev = dev = torch.device(args.device)
        self.train_split = tuple(t.to(dev) for t in dm.splits["train"][:2])
        self.val_split = tuple(t.to(dev) for t in dm.splits["val"][:2])
        # A recommender's validation also ranks each held-out item among its candidates (HR@10).
        self.candidates = dm.splits["val"][2].to(dev) if dm.spec.task == "recommend" else None
        self.batch, self.eval_batch = int(cfg.data.batch_size), int(cfg.data.eval_batch_size)
        self.net = build_net(instantiate(cfg.model), dm.spec, args.model, cfg.data._target_).to(dev)
        self.clip = cfg.trainer.get("gradient_clip_val")
        self.kind = "adversarial" if args.model == "gan" else dm.spec.task
        factory = instantiate(cfg.optimizer)
        if self.kind == "adversarial":
            net = self.net
            d_params = [*net.discriminator.parameters(), *net.head.parameters()]
            self.opts = (factory(list(net.generator.parameters())), factory(d_params))
        else:
            self.opts = (factory(self.net.parameters()),)
        n_steps = -(-len(self.train_split[0]) // self.batch)
        self.n_steps = min(n_steps, args.steps) if args.steps else n_steps
        self.gen = torch.Generator(device=dev).manual_seed(42)  # its own: leaves others' random streams alone
        self.validate = self.kind != "adversarial"  # as the framework's GAN case: no validation
        self.val_metric = None
        self.shift = getattr(dm, "time_shift", 0)  # audio: samples of random time shift

    def loss(self, x, y):
        import torch.nn.functional as F

        out = self.net(x)
        if self.kind == "forecast":
            return F.mse_loss(out, y), out
        if self.kind == "language_model":
            return F.cross_entropy(out.flatten(0, 1), y.flatten()), out
        if self.kind == "recommend":  # the squared error and the network's weight decay of the rows used
            return F.mse_loss(out, y) + (self.net.penalty(x) if self.net.training else 0.0), out
        return F.cross_entropy(out, y), out

    def step(self, x, y) -> None:
        import torch

        (opt,) = self.opts
        loss, _ = self.loss(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.clip)
        opt.step()

    def gan_step(self, x, y) -> None:
        """One discriminator step and one generator step, the non-saturating loss; a conditional GAN
        (the default on labelled images) draws each fake with the label of a real image, as the task does."""
        import torch
        import torch.nn.functional as F

        net, (opt_g, opt_d) = self.net, self.opts
        real, labels = x * 2 - 1, (y if net.conditional else None)
        fake = net.generate(torch.randn(len(real), net.latent_dim, device=self.dev), labels)
        d_real, d_fake = net.discriminate(real, labels), net.discriminate(fake.detach(), labels)
        d_loss = F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real)) + F.softplus(d_fake).mean()
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        net.discriminator.requires_grad_(False)
        net.head.requires_grad_(False)
        g_loss = F.softplus(-net.discriminate(fake, labels)).mean()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        net.requires_grad_(True)

    def epoch(self) -> float:
        import torch

        from datamodules.augment import random_shift

        (x_train, y_train), (x_val, y_val) = self.train_split, self.val_split
        t0 = time.perf_counter()
        self.net.train()
        perm = torch.randperm(len(x_train), device=self.dev, generator=self.gen)
        bs = self.batch
        for i in range(self.n_steps):
            idx = perm[i * bs : (i + 1) * bs]
            if self.kind == "adversarial":
                self.gan_step(x_train[idx], y_train[idx])
            elif self.shift:  # audio: the framework's data shifts each training clip in time
                self.step(random_shift(x_train[idx], self.shift), y_train[idx])
            else:
                self.step(x_train[idx], y_train[idx])
        if self.validate:
            self.net.eval()
            total, hits = torch.zeros((), device=self.dev), torch.zeros((), device=self.dev)
            with torch.no_grad():
                for i in range(0, len(x_val), self.eval_batch):
                    x, y = x_val[i : i + self.eval_batch], y_val[i : i + self.eval_batch]
                    loss, out = self.loss(x, y)
                    total += (out.argmax(1) == y).sum() if self.kind == "classify" else loss * len(y)
                    if self.candidates is not None:
                        c = self.candidates[i : i + self.eval_batch]
                        scores = self.net(torch.stack([x[:, :1].expand_as(c), c], dim=-1))
                        hits += (scores[:, 1:] >= scores[:, :1]).sum(1).lt(10).sum()
            self.val_metric = total.item() / len(x_val)
        return time.perf_counter() - t0


def run_plain(args) -> dict:
    loop = PlainLoop(args)
    first_step = time.time() - args.started
    epochs = [loop.epoch() for _ in range(args.epochs)]
    return {
        "epoch_s": epochs,
        "steps": loop.n_steps,
        "first_step_s": first_step,
        "peak_mb": peak_mb(),
        "val": loop.val_metric,
        **gpu_peak(args),
    }


def gpu_peak(args) -> dict:
    import torch

    return {"gpu_peak_mb": torch.cuda.max_memory_allocated() / 2**20} if args.device == "cuda" else {}


def run_framework(args) -> dict:
    import train

    extra = [f"test={'true' if args.variant else 'false'}"]
    if args.variant:
        extra += [f"callbacks.{c}=null" for c in OBSERVABILITY if c not in (args.variant, "histograms")]
        if args.variant == "histograms":
            extra.append(HISTOGRAMS_ON)
    cfg = compose_case(args, extra)
    if args.steps:  # a limit in batches (steps count batches whatever steps_per_execution is)
        cfg.trainer.limit_train_batches = args.steps
    plain_epochs: list[float] = []
    if args.worker == "interleaved":
        loop = PlainLoop(args)
        timer = EpochTimer(args.started, between=lambda: plain_epochs.append(loop.epoch())).callback
    else:
        timer = EpochTimer(args.started).callback
    summary = train.train(cfg, extra_callbacks=(timer,))
    # The plain loop's measure: accuracy for image classifiers, the loss for the others.
    val_key = "val/acc" if CASES[args.model][1] in ("images", "table", "audio") and "val/acc" in summary else "val/loss"
    return {
        "epoch_s": timer.epochs,
        "steps": timer.steps,
        "first_step_s": timer.first_step,
        "peak_mb": peak_mb(),
        "val": summary.get(val_key),
        "test_s": timer.test_s,
        "plain_epoch_s": plain_epochs,
        "k": summary.get("steps_per_execution"),
        "threads": summary["threads"].get("chosen") if isinstance(summary.get("threads"), dict) else None,
        **gpu_peak(args),
    }


def worker(kind: str, args, variant: str | None = None) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        kind,
        "--model",
        args.model,
        "--data-dir",
        args.data_dir,
        "--epochs",
        str(args.epochs),
        "--steps",
        str(args.steps),
        "--device",
        args.device,
        "--text-data",
        str(args.text_data),
        "--started",
        repr(time.time()),
    ] + [f"--set={o}" for o in args.set]
    if variant:
        cmd += ["--variant", variant]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    lines = [line for line in r.stdout.splitlines() if line.startswith("BENCH ")]
    if r.returncode or not lines:
        sys.exit(f"{kind} worker failed:\n{r.stderr[-3000:]}")
    return json.loads(lines[-1][6:])


def summarise(runs: list[dict]) -> dict:
    epochs = [e for r in runs for e in r["epoch_s"][1:]]  # drop each process's warm-up epoch
    steps = runs[0]["steps"]
    med = statistics.median(epochs)
    return {
        "epoch_s": med,
        "steps_per_s": steps / med,
        "peak_mb": statistics.median(r["peak_mb"] for r in runs),
        "first_step_s": statistics.median(r["first_step_s"] for r in runs),
        "val": statistics.median(r["val"] for r in runs if r["val"] is not None)
        if runs[0]["val"] is not None
        else None,
        "k": runs[0].get("k"),
        "gpu_peak_mb": statistics.median(r["gpu_peak_mb"] for r in runs) if "gpu_peak_mb" in runs[0] else None,
        "n": len(epochs),
    }


def check_arguments(args) -> None:
    """Numbers that cannot be measured, a GPU that is not there and --set overrides train.py would
    refuse, each a UserError before any worker starts."""
    from zoo.errors import UserError
    from zoo.run.config import check_overrides

    if args.rounds < 1:
        raise UserError(f"--rounds must be 1 or more, got {args.rounds}; try --rounds 3.")
    if args.epochs < 2:
        raise UserError(
            f"--epochs must be 2 or more (the first is a warm-up, not timed), got {args.epochs}; try --epochs 3."
        )
    if args.steps < 0:
        raise UserError(f"--steps must be 0 (all) or more, got {args.steps}; try --steps 100.")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError(
                "--device cuda needs a GPU that torch can use, and there is none here; "
                "leave --device out to measure on the CPU."
            )
    for model in args.models:
        try:
            check_overrides([*CASES[model][0], *args.set], run_folder=False)
        except UserError as e:
            raise UserError(f"--set {' --set '.join(args.set)}: {e}") from None


def text_data(given: str | None) -> str | None:
    """The folder holding shakespeare/input.txt for lstm-text (--text-data, else the shared copy)."""
    for folder in (given, SHARED_TEXT):
        if folder and os.path.isfile(os.path.join(folder, "shakespeare", "input.txt")):
            return folder
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model",
        action="append",
        choices=[*CASES, "all"],
        default=None,
        help="a family to measure (repeatable; default all)",
    )
    p.add_argument("--text-data", default=None, help="a folder with shakespeare/input.txt (lstm-text)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved plain/framework process pairs")
    p.add_argument("--epochs", type=int, default=3, help="epochs per process; the first is a warm-up")
    p.add_argument("--steps", type=int, default=0, help="limit the training steps per epoch (0: all 430)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--callbacks", action="store_true", help="measure each observability callback's cost")
    p.add_argument(
        "--only",
        default=None,
        metavar="A,B",
        help="with --callbacks: measure only these callbacks (and the bare run), e.g. --only signals,diagnostics",
    )
    p.add_argument("--data-dir", default=None)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an extra train.py override for the framework, e.g. --set steps_per_execution=1",
    )
    p.add_argument(
        "--interleaved",
        action="store_true",
        help="also run both loops in one process, a plain epoch before each framework epoch",
    )
    p.add_argument("--worker", choices=["plain", "framework", "interleaved"], help=argparse.SUPPRESS)
    p.add_argument("--variant", default=None, help=argparse.SUPPRESS)
    p.add_argument("--started", type=float, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.worker:
        args.model = args.model[0]
        result = (run_plain if args.worker == "plain" else run_framework)(args)
        print("BENCH " + json.dumps(result))
        return

    args.text_data = text_data(args.text_data)
    wanted = args.model or ["all"]
    args.models = list(CASES) if "all" in wanted else list(dict.fromkeys(wanted))
    for model in TEXT_CASES:
        if args.text_data is None and model in args.models:
            print(f"{model}: left out (no shakespeare/input.txt; give --text-data)")
            args.models.remove(model)
    with user_errors():
        check_arguments(args)
    args.data_dir = args.data_dir or tempfile.mkdtemp(prefix="bench-data-")
    if not os.path.exists(os.path.join(args.data_dir, "MNIST", "raw", "t10k-labels-idx1-ubyte")):
        write_mnist_sized(args.data_dir)
    if "table" in args.models and not os.path.exists(os.path.join(args.data_dir, "table", "bench.csv")):
        write_table(args.data_dir)
    if "mf" in args.models and not os.path.exists(os.path.join(args.data_dir, "ratings", "u.data")):
        write_ratings_sized(args.data_dir)
    if "audio" in args.models and not os.path.isdir(os.path.join(args.data_dir, "bench_audio")):
        write_audio_clips(args.data_dir)
    import torch

    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPUs, device {args.device}, "
        f"{args.rounds} rounds x {args.epochs - 1} timed epochs"
    )
    rows, interleaved = [], {}
    for model in args.models:
        args.model = model
        if args.callbacks:
            variants = CALLBACK_VARIANTS
            if args.only:
                variants = ["bare"] + [v for v in CALLBACK_VARIANTS if v in args.only.split(",") and v != "bare"]
            runs = {v: [] for v in variants}
            for i in range(args.rounds):  # the order turns each round, so no callback always runs first
                for v in variants[i % len(variants) :] + variants[: i % len(variants)]:
                    runs[v].append(worker("framework", args, v))
            print(
                f"\n{model}: cost of each observability callback, alone on the bare framework; ratio: the median"
                f" over rounds of its time / the bare run's of the same round (epochs; test pass for {', '.join(TEST_TIME)})"
            )
            print(f"{'callback':<18}{'seconds':>9}{'ratio':>8}   per round")
            for v in variants:
                # A test-time callback's cost is in the test pass, the others' in the timed epochs.
                seconds = (lambda r: r["test_s"]) if v in TEST_TIME else (lambda r: statistics.median(r["epoch_s"][1:]))
                secs, bare = [seconds(r) for r in runs[v]], [seconds(r) for r in runs["bare"]]
                ratios = [a / b for a, b in zip(secs, bare)]
                label = v if v != "bare" else "bare (epoch)"
                print(
                    f"{label:<18}{statistics.median(secs):>9.3f}{statistics.median(ratios):>8.2f}   "
                    + " ".join(f"{r:.2f} (K {run.get('k')}, {run.get('threads')}t)" for r, run in zip(ratios, runs[v]))
                )
            bare_test = statistics.median(r["test_s"] for r in runs["bare"])
            print(f"{'bare (test pass)':<18}{bare_test:>9.3f}{1.0:>8.2f}")
            continue
        plain, framework = [], []
        for i in range(args.rounds):
            pair = [("plain", plain), ("framework", framework)]
            for kind, acc in pair if i % 2 == 0 else pair[::-1]:
                acc.append(worker(kind, args))
        # The ratio is taken per round (the two runs of a round are seconds apart) and its median
        # reported, so a slow spell of the machine does not land on one side only.
        ratios = [
            statistics.median(f["epoch_s"][1:]) / statistics.median(p["epoch_s"][1:]) for p, f in zip(plain, framework)
        ]
        rows.append((model, summarise(plain), summarise(framework), statistics.median(ratios)))
        choices = [f"K {f.get('k')}, {f.get('threads')} thread(s)" for f in framework]
        print(
            f"{model}: framework / plain epoch time per round: "
            + ", ".join(f"{r:.2f} ({c})" for r, c in zip(ratios, choices))
        )
        if args.interleaved:
            # Both loops in one process, epochs alternating (a plain epoch, then a framework epoch):
            # the machine's slow and fast spells land on both. Ratio per pair, warm-up pair dropped.
            pairs = []
            for _ in range(args.rounds):
                r = worker("interleaved", args)
                pairs += [f / p for p, f in zip(r["plain_epoch_s"][1:], r["epoch_s"][1:])]
            interleaved[model] = pairs
            print(
                f"{model}: interleaved in one process, framework / plain per epoch pair: "
                f"{', '.join(f'{r:.2f}' for r in pairs)}"
            )

    if rows:
        gpu = args.device == "cuda"
        print(
            "\n| model | loop | steps/s | epoch s | ratio | peak MB | command to 1st step s | val acc (loss) "
            f"| data | K |{' GPU peak MB |' if gpu else ''}"
        )
        print(f"|---|---|---:|---:|---:|---:|---:|---:|---|---:|{'---:|' if gpu else ''}")
        for model, plain, fw, ratio in rows:
            for name, s, r in (("plain PyTorch", plain, 1.0), ("framework", fw, ratio)):
                val = f"{s['val']:.3f}" if s["val"] is not None else "-"
                print(
                    f"| {model} | {name} | {s['steps_per_s']:.0f} | {s['epoch_s']:.3f} | "
                    f"{r:.2f} | {s['peak_mb']:.0f} | {s['first_step_s']:.1f} | {val} | {CASES[model][1]} | "
                    f"{s['k'] or ''} |" + (f" {s['gpu_peak_mb']:.0f} |" if gpu else "")
                )
        for model, pairs in interleaved.items():
            print(
                f"{model}: framework / plain, interleaved in one process: median {statistics.median(pairs):.2f} "
                f"over {len(pairs)} epoch pairs"
            )


if __name__ == "__main__":
    main()
