"""Training speed of the framework against a plain PyTorch loop doing the same work, in one run.

    python benchmarks/bench_train.py                      # MLP and CNN, 3 interleaved rounds
    python benchmarks/bench_train.py --model mlp --rounds 5
    python benchmarks/bench_train.py --callbacks          # the cost of each observability callback
    python benchmarks/bench_train.py --device cuda        # both on the GPU

It writes MNIST-sized synthetic data in the real IDX format (60,000 + 10,000 28x28 images, so
55,000 train after the 5,000 validation images), then runs, alternately in fresh processes, the
plain loop and `python train.py experiment=bench_<model>_mnist` (in process, same config). Each
epoch is timed from its first batch to the next epoch's first batch (the plain loop: to its end),
so validation, checkpoints and epoch-end callbacks count; the first epoch is a warm-up and is not
counted. Reports medians: steps/s, epoch seconds, the ratio framework / plain, peak
memory and the time from the command to the first training step. The ratio is the median over
rounds of (framework epoch / plain epoch) within a round.
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


class EpochTimer:
    """Times each training epoch from its first batch to the first batch of the next (the last one:
    to the end of training), so validation, checkpoints and every callback's epoch-end work count."""

    def __init__(self, command_started: float, between=None):
        import lightning as L

        class _Timer(L.Callback):
            def __init__(s):
                s.epochs, s.first_step, s.t0, s.test_s = [], None, None, None

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


class PlainLoop:
    """The hand-written loop: preloaded tensors, randperm batches, Adam; then a validation pass."""

    def __init__(self, args):
        import torch

        from datamodules.images import MNISTData
        from zoo.nets.cnn import CNN
        from zoo.nets.mlp import MLP

        # A hand-written loop does not import Lightning, which sets this on import (NVML loaded on
        # every Adam step to ask whether CUDA is available); the framework clears it during training.
        os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)
        torch.manual_seed(42)
        dm = MNISTData(data_dir=args.data_dir, batch_size=128, val_size=5000, seed=42)
        dm.prepare_data()
        dm.setup("fit")
        self.dev = dev = torch.device(args.device)
        (self.x_train, self.y_train), (self.x_val, self.y_val) = [
            tuple(t.to(dev) for t in dm.splits[s]) for s in ("train", "val")
        ]
        net = (
            MLP(dm.spec, widths=[64, 128, 64], batchnorm=True, dropout=0.0)
            if args.model == "mlp"
            else CNN(dm.spec, dropout=0.0)
        )
        self.net = net.to(dev)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-3)
        n_steps = -(-len(self.x_train) // 128)
        self.n_steps = min(n_steps, args.steps) if args.steps else n_steps
        self.gen = torch.Generator(device=dev).manual_seed(42)  # its own: leaves others' random streams alone
        self.val_acc = None

    def epoch(self) -> float:
        import torch
        import torch.nn.functional as F

        net, opt, x_train, y_train, x_val, y_val = (
            self.net,
            self.opt,
            self.x_train,
            self.y_train,
            self.x_val,
            self.y_val,
        )
        t0 = time.perf_counter()
        net.train()
        perm = torch.randperm(len(x_train), device=self.dev, generator=self.gen)
        total = torch.zeros((), device=self.dev)
        for i in range(self.n_steps):
            idx = perm[i * 128 : (i + 1) * 128]
            x, y = x_train[idx], y_train[idx]
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach()
        net.eval()
        correct = torch.zeros((), device=self.dev)
        with torch.no_grad():
            for i in range(0, len(x_val), 1024):
                logits = net(x_val[i : i + 1024])
                F.cross_entropy(logits, y_val[i : i + 1024])
                correct += (logits.argmax(1) == y_val[i : i + 1024]).sum()
        self.val_acc = correct.item() / len(x_val)
        total.item()
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
        "val_acc": loop.val_acc,
    }


def run_framework(args) -> dict:
    import torch

    import train
    from zoo.run.config import compose_run

    out = tempfile.mkdtemp(prefix="bench-run-")
    overrides = [
        f"experiment=bench_{args.model}_mnist",
        f"trainer.max_epochs={args.epochs}",
        f"test={'true' if args.variant else 'false'}",
        "trainer=gpu" if args.device == "cuda" else "trainer=cpu",
    ]
    overrides += args.set
    if args.variant:
        overrides += [f"callbacks.{c}=null" for c in OBSERVABILITY if c not in (args.variant, "histograms")]
        if args.variant == "histograms":
            overrides.append(HISTOGRAMS_ON)
    cfg = compose_run(overrides, out, args.data_dir)
    if args.steps:  # a limit in batches (a multiple of K: see main); Lightning counts executions of K
        cfg.trainer.limit_train_batches = args.steps // int(cfg.steps_per_execution)
    plain_epochs: list[float] = []
    if args.worker == "interleaved":
        loop = PlainLoop(args)
        timer = EpochTimer(args.started, between=lambda: plain_epochs.append(loop.epoch())).callback
    else:
        timer = EpochTimer(args.started).callback
    summary = train.train(cfg, extra_callbacks=(timer,))
    result = {
        "epoch_s": timer.epochs,
        "steps": trainer_batches(args),
        "first_step_s": timer.first_step,
        "peak_mb": peak_mb(),
        "val_acc": summary.get("val/acc"),
        "test_s": timer.test_s,
        "plain_epoch_s": plain_epochs,
    }
    if args.device == "cuda":
        result["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def executions_of(model: str, overrides: list[str]) -> int:
    """The steps_per_execution the framework runs with (the bench experiment's, or --set's)."""
    from zoo.run.config import compose_config

    return int(compose_config([f"experiment=bench_{model}_mnist", *overrides]).steps_per_execution)


def trainer_batches(args) -> int:
    """Optimizer steps per epoch (the work), whatever Lightning counts as a step."""
    full = -(-55_000 // 128)
    return min(full, args.steps) if args.steps else full


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
        "val_acc": statistics.median(r["val_acc"] for r in runs),
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
    for model in ["mlp", "cnn"] if args.model == "both" else [args.model]:
        try:
            check_overrides([f"experiment=bench_{model}_mnist", *args.set], run_folder=False)
        except UserError as e:
            raise UserError(f"--set {' --set '.join(args.set)}: {e}") from None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=["mlp", "cnn", "both"], default="both")
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
        result = (run_plain if args.worker == "plain" else run_framework)(args)
        print("BENCH " + json.dumps(result))
        return

    with user_errors():
        check_arguments(args)
    args.data_dir = args.data_dir or tempfile.mkdtemp(prefix="bench-data-")
    if not os.path.exists(os.path.join(args.data_dir, "MNIST", "raw", "t10k-labels-idx1-ubyte")):
        write_mnist_sized(args.data_dir)
    import torch

    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPUs, device {args.device}, "
        f"{args.rounds} rounds x {args.epochs - 1} timed epochs"
    )
    models = ["mlp", "cnn"] if args.model == "both" else [args.model]
    rows, interleaved = [], {}
    steps = args.steps
    for model in models:
        args.model = model
        k = executions_of(model, args.set)
        args.steps = -(-steps // k) * k if steps else 0
        if args.steps != steps:
            print(f"{model}: --steps {steps} rounded up to {args.steps}, a multiple of steps_per_execution={k}")
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
                    + " ".join(f"{r:.2f}" for r in ratios)
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
        print(f"{model}: framework / plain epoch time per round: {', '.join(f'{r:.2f}' for r in ratios)}")
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
        print("\n| model | loop | steps/s | epoch s | ratio | peak MB | command to 1st step s | val acc |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for model, plain, fw, ratio in rows:
            for name, s, r in (("plain PyTorch", plain, 1.0), ("framework", fw, ratio)):
                print(
                    f"| {model} | {name} | {s['steps_per_s']:.0f} | {s['epoch_s']:.3f} | "
                    f"{r:.2f} | {s['peak_mb']:.0f} | {s['first_step_s']:.1f} | {s['val_acc']:.3f} |"
                )
        for model, pairs in interleaved.items():
            print(
                f"{model}: framework / plain, interleaved in one process: median {statistics.median(pairs):.2f} "
                f"over {len(pairs)} epoch pairs"
            )


if __name__ == "__main__":
    main()
