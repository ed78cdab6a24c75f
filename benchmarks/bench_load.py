"""Training speed on a busy machine: the framework at its defaults and a plain PyTorch loop at
PyTorch's defaults, each alone and each beside a competing CPU-bound process of the same kind.

    python benchmarks/bench_load.py --rounds 3               # mlp cnn lstm lstm-text transformer gan
    python benchmarks/bench_load.py --model lstm-text --seconds 20

Each measurement is a fresh process that trains for ``--seconds`` (60) of wall time from its first
training batch (the framework's thread trial and steps-per-execution calibration included) and
reports its training batches per second. A minute, not less: a run's start (the trial, the
calibration, the first figure's matplotlib import) is a few seconds a real run amortises, and in
20-s windows it weighed on the ratios (the MLP's idle time ratio read 1.39 at 20 s, 1.14 at 60 s).
"Loaded" starts two identical processes at once (a second experiment of the same kind beside the
first, as two runs or a parallel sweep do) and takes the median of the two. The plain loop is
bench_train.py's (same network, data tensors, loss, optimizer, clipping, randperm batches, a
validation pass an epoch), left at PyTorch's default intra-op threads; the framework runs
``train.py`` with its defaults (threads=auto, steps_per_execution=auto) and bench_train.py's case
overrides (no early stopping, no histograms).

The table: steps/s of each alone and loaded, and the ratios the goals are stated in:
loaded/idle of the framework (goal >= 0.4: a fair share of two cores is 0.5), framework/plain
loaded (goal >= 2) and framework/plain idle (the time ratio, goal <= 1.2). Steps/s are medians over
rounds; each ratio is taken within a round (its four measurements follow each other within about two
minutes) and the median of those is shown, since a shared machine's speed drifts between rounds by
more than the gaps measured.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import bench_train  # noqa: E402 - after the repository is on the path

MODELS = ["mlp", "cnn", "lstm", "lstm-text", "transformer", "gan"]


class TimedPlainLoop(bench_train.PlainLoop):
    """bench_train's plain loop, stopped ``seconds`` after its first training batch."""

    def run(self, seconds: float) -> dict:
        import torch

        (x_train, y_train) = self.train_split
        start, batches, bs = None, 0, self.batch
        while True:
            self.net.train()
            perm = torch.randperm(len(x_train), device=self.dev, generator=self.gen)
            for i in range(self.n_steps):
                if start is None:
                    start = time.perf_counter()
                elif time.perf_counter() - start >= seconds:
                    return {"batches": batches, "seconds": time.perf_counter() - start}
                idx = perm[i * bs : (i + 1) * bs]
                if self.kind == "adversarial":
                    self.gan_step(x_train[idx], y_train[idx])
                else:
                    self.step(x_train[idx], y_train[idx])
                batches += 1
            if self.validate:
                self.validate_once()

    def validate_once(self) -> None:
        import torch

        x_val, y_val = self.val_split
        self.net.eval()
        with torch.no_grad():
            for i in range(0, len(x_val), self.eval_batch):
                self.loss(x_val[i : i + self.eval_batch], y_val[i : i + self.eval_batch])


def stop_after(seconds: float):
    """A callback that counts training batches from the first one and stops the fit after ``seconds``."""
    import lightning as L

    from zoo import compat

    class StopAfter(L.Callback):
        def __init__(self):
            self.start = None
            self.result = None

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if self.start is None:
                self.start = time.perf_counter()
                self.first = compat.batches_that_stepped(trainer)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            elapsed = time.perf_counter() - self.start
            if elapsed >= seconds and self.result is None:
                batches = compat.batches_that_stepped(trainer) - self.first
                self.result = {"batches": batches, "seconds": elapsed}
                trainer.should_stop = True

    return StopAfter()


def run_worker(args) -> dict:
    if args.worker == "plain":
        loop = TimedPlainLoop(args)
        return loop.run(args.seconds)
    import train

    cfg = bench_train.compose_case(args, ["test=false", "trainer.max_epochs=100000"])
    clock = stop_after(args.seconds)
    summary = train.train(cfg, extra_callbacks=(clock,))
    result = clock.result or {"batches": 0, "seconds": float("nan")}
    return {**result, "k": summary.get("steps_per_execution"), "threads": summary.get("threads")}


def command(args, kind: str) -> list[str]:
    return [
        sys.executable,
        __file__,
        "--worker",
        kind,
        "--model",
        args.model,
        "--data-dir",
        args.data_dir,
        "--text-data",
        str(args.text_data),
        "--seconds",
        str(args.seconds),
    ]


def measure(args, kind: str, loaded: bool) -> dict:
    """Steps/s of one process of ``kind`` (alone), or the median of two started at once (loaded)."""
    procs = [
        subprocess.Popen(command(args, kind), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2 if loaded else 1)
    ]
    results = []
    for p in procs:
        out, err = p.communicate()
        lines = [line for line in out.splitlines() if line.startswith("BENCH ")]
        if p.returncode or not lines:
            sys.exit(f"{kind} worker failed:\n{err[-3000:]}")
        results.append(json.loads(lines[-1][6:]))
    rates = [r["batches"] / r["seconds"] for r in results]
    return {"steps_per_s": statistics.median(rates), "runs": results}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", choices=MODELS, default=None, help="repeatable; default all")
    p.add_argument("--seconds", type=float, default=60.0, help="training seconds per measurement")
    p.add_argument("--rounds", type=int, default=1, help="rounds of the four measurements per model")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--text-data", default=None, help="a folder with shakespeare/input.txt (lstm-text, transformer)")
    p.add_argument("--worker", choices=["plain", "framework"], help=argparse.SUPPRESS)
    args = p.parse_args()
    args.device, args.epochs, args.steps, args.set = "cpu", 1, 0, []

    if args.worker:
        args.model = args.model[0]
        print("BENCH " + json.dumps(run_worker(args)))
        return

    args.text_data = bench_train.text_data(args.text_data)
    models = args.model or MODELS
    if args.text_data is None:
        for m in ("lstm-text", "transformer"):
            if m in models:
                print(f"{m}: left out (no shakespeare/input.txt; give --text-data)")
        models = [m for m in models if m not in ("lstm-text", "transformer")]
    args.data_dir = args.data_dir or tempfile.mkdtemp(prefix="bench-data-")
    if not os.path.exists(os.path.join(args.data_dir, "MNIST", "raw", "t10k-labels-idx1-ubyte")):
        bench_train.write_mnist_sized(args.data_dir)
    import torch

    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPUs, PyTorch's default threads {torch.get_num_threads()}, "
        f"{args.seconds:g} s per measurement, {args.rounds} round(s)"
    )
    rows = []
    for model in models:
        args.model = model
        cells = {key: [] for key in ("plain idle", "framework idle", "plain loaded", "framework loaded")}
        detail = []
        for _ in range(args.rounds):
            for key in cells:
                kind, state = key.split()
                m = measure(args, kind, state == "loaded")
                cells[key].append(m["steps_per_s"])
                if kind == "framework":
                    detail += [
                        f"{state}: K={r.get('k')} threads={(r.get('threads') or {}).get('chosen')}" for r in m["runs"]
                    ]
        med = {k: statistics.median(v) for k, v in cells.items()}
        ratios = round_ratios(cells)
        rows.append((model, med, {k: statistics.median(v) for k, v in ratios.items()}))
        print(f"{model}: " + ", ".join(f"{k} {v:.1f} steps/s" for k, v in med.items()) + " | " + "; ".join(detail))
        if args.rounds > 1:
            print("  by round: " + "; ".join(f"{k} " + " ".join(f"{r:.2f}" for r in v) for k, v in ratios.items()))

    print(
        "\n| model | plain idle | framework idle | plain loaded | framework loaded | framework loaded / idle "
        "(goal >= 0.4) | framework / plain, loaded (goal >= 2) | time framework / plain, idle (goal <= 1.2) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for model, m, r in rows:
        print(
            f"| {model} | {m['plain idle']:.1f} | {m['framework idle']:.1f} | {m['plain loaded']:.1f} | "
            f"{m['framework loaded']:.1f} | {r['kept']:.2f} | {r['loaded']:.2f} | {r['idle']:.2f} |"
        )


def round_ratios(cells: dict[str, list[float]]) -> dict[str, list[float]]:
    """The goals' three ratios in each round: framework loaded / idle ("kept"), framework / plain
    loaded ("loaded"), and plain / framework steps/s idle (the time ratio, "idle")."""
    rounds = range(len(cells["plain idle"]))
    return {
        "kept": [cells["framework loaded"][i] / cells["framework idle"][i] for i in rounds],
        "loaded": [cells["framework loaded"][i] / cells["plain loaded"][i] for i in rounds],
        "idle": [cells["plain idle"][i] / cells["framework idle"][i] for i in rounds],
    }


if __name__ == "__main__":
    main()
