"""Prediction throughput: predict.py's path (``zoo.load(ckpt).predict``: reading, Trainer.predict,
rows) against a plain ``torch.inference_mode()`` loop over the same tensors.

    python benchmarks/bench_predict.py                      # images (CNN) and series (LSTM), 5 rounds
    python benchmarks/bench_predict.py --rounds 7 --rows 20000 --accelerator gpu

Each kind gets a real checkpoint first (a one-batch training run of train.py's pipeline in a
temporary folder: model=cnn on data=image_folder of 32x32 RGB PNGs, model=lstm on data=sine), and
one input tensor in the user's units: uint8 pixels (N, 3, 32, 32), a series in its own units
(N, lookback, channels). Timed, interleaved round by round:

- ``plain``: what one would write by hand: the network on batches of the same size under
  ``torch.inference_mode()``, with the same preprocessing (pixels scaled and normalised; a series
  z-scored and its forecast mapped back) and the classifier's softmax, all on the device.
- ``outputs``: ``Predictor.outputs(Predictor.read(x))``: the reader, then Lightning's
  ``Trainer.predict`` over ``BatchLoader`` batches.
- ``predict``: ``Predictor.predict(x)``: the same, plus the rows as a DataFrame (labels, top 3).

Prints rows per second and the median wall-clock and CPU time (of this process) of each over the
rounds, and the ratios predict / plain (the target: at most 1.1x). On a machine other work shares,
the CPU time is the steadier measure: the wall clock also counts the time others held the cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

warnings.filterwarnings("ignore")


def fail(message: str) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.exit(2)


def train_checkpoint(overrides: list[str], folder: Path) -> str:
    """A checkpoint of a one-batch run of train.py's pipeline (what the weights are does not matter here)."""
    import train
    from zoo.run.config import check_config, compose_run

    quiet = ["callbacks=none", "logger=none", "trainer.max_epochs=1", "+trainer.limit_train_batches=1"]
    quiet += ["+trainer.limit_val_batches=1", "test=false", "+trainer.enable_progress_bar=false"]
    cfg = compose_run([*quiet, *overrides], str(folder))
    check_config(cfg)
    summary = train.train(cfg)
    return summary["best_checkpoint"] or summary["last_checkpoint"]


def image_folder(root: Path, n: int = 32) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def plain_loop(net, x, batch_size: int, device, prepare, finish):
    """The hand-written loop: batches of ``x`` on the device, prepared, through the network, finished."""
    import torch

    outs = []
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            batch = x[i : i + batch_size].to(device, non_blocking=True)
            outs.append(finish(net(prepare(batch))))
    out = torch.cat(outs)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out.cpu()


def bench(name: str, model, x, prepare, finish, rounds: int) -> tuple[float, float]:
    import torch

    model.outputs(model.read(x[:64]))  # the Trainer built, the network on its device
    device = next(model.task.parameters()).device
    net = model.task.net
    with torch.inference_mode():
        reference = plain_loop(net, x, model.batch_size, device, prepare, finish)
        ours = model.outputs(model.read(x))
    diff = float((reference - ours).abs().max())
    times = {"plain": [], "outputs": [], "predict": []}
    cpu = {"plain": [], "outputs": [], "predict": []}
    runs = {
        "plain": lambda: plain_loop(net, x, model.batch_size, device, prepare, finish),
        "outputs": lambda: model.outputs(model.read(x)),
        "predict": lambda: model.predict(x),
    }
    for _ in range(rounds):
        for key, run in runs.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            run()
            times[key].append(time.perf_counter() - start)
            cpu[key].append(time.process_time() - start_cpu)
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    for key in runs:
        print(
            f"{name:<8} {key:<8} {len(x) / med[key]:>10,.0f} rows/s  wall {med[key] * 1000:>8.1f} ms  "
            f"cpu {med_cpu[key] * 1000:>8.1f} ms  (wall of each round: {', '.join(f'{t * 1000:.0f}' for t in times[key])})"
        )
    print(
        f"{name:<8} predict / plain = {med['predict'] / med['plain']:.3f}x wall, "
        f"{med_cpu['predict'] / med_cpu['plain']:.3f}x cpu; outputs / plain = {med['outputs'] / med['plain']:.3f}x "
        f"wall, {med_cpu['outputs'] / med_cpu['plain']:.3f}x cpu (max abs difference of the outputs {diff:.1e})"
    )
    return med["predict"] / med["plain"], med_cpu["predict"] / med_cpu["plain"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=8192, help="inputs per prediction (images and series windows)")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the run's data.eval_batch_size")
    parser.add_argument("--only", choices=("images", "series"), default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args()
    if args.rounds < 1:
        fail(f"--rounds must be 1 or more, got {args.rounds}; try --rounds 5.")
    if args.rows < 1:
        fail(f"--rows must be 1 or more, got {args.rows}; try --rows 8192.")

    import torch

    from zoo import load

    if args.threads:
        torch.set_num_threads(args.threads)

    accelerator = ["trainer.accelerator=cpu"] if args.accelerator == "cpu" else []
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, accelerator={args.accelerator}")
    ratios = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.only in (None, "images"):
            root = image_folder(tmp / "images")
            ckpt = train_checkpoint(
                ["model=cnn", "data=image_folder", f"data.root={root}", "data.num_workers=0", *accelerator],
                tmp / "cnn",
            )
            model = load(ckpt, accelerator=args.accelerator, batch_size=args.batch_size)
            x = torch.randint(0, 256, (args.rows, 3, 32, 32), dtype=torch.uint8)
            model.outputs(model.read(x[:8]))  # the network on its device
            dev = next(model.task.parameters()).device
            mean, std = (torch.tensor(v).to(dev)[:, None, None] for v in (model.spec.pixel_mean, model.spec.pixel_std))
            print(f"images: model=cnn on 3x32x32, {args.rows:,} images, batch {model.batch_size}")
            ratios["images"] = bench(
                "images",
                model,
                x,
                lambda b: (b.float() / 255 - mean) / std,
                lambda out: out.softmax(dim=1),
                args.rounds,
            )
        if args.only in (None, "series"):
            ckpt = train_checkpoint(["model=lstm", "data=sine", *accelerator], tmp / "lstm")
            model = load(ckpt, accelerator=args.accelerator, batch_size=args.batch_size)
            spec = model.spec
            model.outputs(model.read(torch.zeros(1, *spec.shape)))
            dev = next(model.task.parameters()).device
            c_mean, c_std = torch.tensor(spec.channel_mean).to(dev), torch.tensor(spec.channel_std).to(dev)
            k = spec.target_channels
            x = torch.randn(args.rows, *spec.shape, generator=torch.Generator().manual_seed(0)) * 2 + 1
            print(f"series: model=lstm on data=sine, {args.rows:,} windows of {spec.shape}, batch {model.batch_size}")
            ratios["series"] = bench(
                "series",
                model,
                x,
                lambda b: ((b.double() - c_mean.double()) / c_std.double()).float(),
                lambda out: out * c_std[-k:] + c_mean[-k:],
                args.rounds,
            )
    print(
        "summary: "
        + ", ".join(f"{k} predict/plain {wall:.3f}x wall, {cpu:.3f}x cpu" for k, (wall, cpu) in ratios.items())
        + " (target <= 1.1x)"
    )


if __name__ == "__main__":
    main()
