"""Our results on real data beside the published ones: reruns a table and prints it (the results tables of
docs/results.md come from here).

    python benchmarks/results.py etth1                          # every model x horizon of the protocol
    python benchmarks/results.py etth1 --models linear --horizons 96 192 336 720
    python benchmarks/results.py etth1 --models lstm gru linear linear336 mlp cnn transformer --horizons 96
    python benchmarks/results.py shakespeare --budget 00:00:05:00
    python benchmarks/results.py images                         # digits; MNIST, CIFAR-10 where present
    python benchmarks/results.py etth1 --seeds 5                # mean ± std over 5 seeds

Each cell is one run of ``python train.py experiment=<recipe> ...`` (in this process, so that imports
are paid once), its test metrics on the best checkpoint by validation loss, and its seconds (fit and
test, as metrics.json records them). Data comes from ``--data-dir`` (default: ZOO_REAL_DATA, else a
shared/data folder beside the repository's own; the layout the datamodules expect); nothing is
downloaded unless ``--download``.
``--budget DD:HH:MM:SS`` gives every run the same time (trainer.max_time, with the schedules ending
with it), ``--max-steps`` the same number of steps: the fair comparison on a shared machine, whose
speed varies with its load. ``--markdown FILE`` writes the table too.

The published numbers are the papers' own (ETTh1, multivariate, MSE / MAE on the z-normalised
scale; PatchTST's Table 3 lists all five): Informer, Autoformer and FEDformer with lookback 96,
DLinear with 336, PatchTST/64 with 512.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from zoo.run.config import user_errors  # noqa: E402 - after the repository is on the path

# ETTh1, M, test MSE / MAE by horizon.
PUBLISHED_ETTH1 = {
    "Informer": {96: (0.865, 0.713), 192: (1.008, 0.792), 336: (1.107, 0.809), 720: (1.181, 0.865)},
    "Autoformer": {96: (0.449, 0.459), 192: (0.500, 0.482), 336: (0.521, 0.496), 720: (0.514, 0.512)},
    "FEDformer": {96: (0.376, 0.419), 192: (0.420, 0.448), 336: (0.459, 0.465), 720: (0.506, 0.507)},
    "DLinear": {96: (0.375, 0.399), 192: (0.405, 0.416), 336: (0.439, 0.443), 720: (0.472, 0.490)},
    "PatchTST/64": {96: (0.370, 0.400), 192: (0.413, 0.429), 336: (0.422, 0.440), 720: (0.447, 0.468)},
}
# Tiny Shakespeare, character level, validation loss in nats on the last 10% of the text (our val
# and test are its two halves): nanoGPT's README (a 6-layer transformer on an A100, and its CPU
# settings for about 3 minutes on a laptop).
PUBLISHED_SHAKESPEARE = {"nanoGPT (A100)": 1.4697, "nanoGPT (CPU, 3 min)": 1.88}
# Test accuracy.
PUBLISHED_IMAGES = {"mnist": ("LeNet-5 (LeCun et al. 1998)", 0.9905), "cifar10": ("ResNet-20 (He et al. 2016)", 0.9125)}

ETT_MODELS = ("lstm", "gru", "linear", "linear336", "mlp", "cnn", "transformer")  # experiment=etth1_<model>
HORIZONS = (96, 192, 336, 720)
IMAGE_RECIPES = {"digits": "digits_mlp", "mnist": "mnist_cnn", "cifar10": "cifar10_resnet"}
IMAGE_FILES = {"digits": None, "mnist": "MNIST", "cifar10": "cifar-10-batches-py"}


def run(overrides: list[str], data_dir: str, budget: str | None, max_steps: int | None, download: bool) -> dict:
    """One ``train.py`` run in this process, in a folder of its own; returns its metrics.json."""
    import train
    from zoo.run.config import check_config, compose_run

    extra = ["callbacks.progress_bar=null", "callbacks.model_summary=null", "logger=csv"]
    if budget:
        extra += [f"trainer.max_time={budget}", "trainer.max_epochs=-1", "callbacks.early_stopping=null"]
    if max_steps:
        extra += [f"trainer.max_steps={max_steps}", "trainer.max_epochs=-1", "callbacks.early_stopping=null"]
    with tempfile.TemporaryDirectory(prefix="zoo-results-") as tmp:
        cfg = compose_run([*overrides, *extra], os.path.join(tmp, "run"), data_dir)
        if not download and "download" in cfg.data:
            cfg.data.download = False  # a missing file is a sentence, not a download
        check_config(cfg)
        started = time.perf_counter()
        summary = train.train(cfg)
        summary.setdefault("seconds", round(time.perf_counter() - started, 1))
    if "lookback" in cfg.data:  # a forecaster's window, as the recipe set it
        summary["lookback"] = cfg.data.lookback
    return summary


def repeated(overrides: list[str], args) -> dict:
    """The run with ``args.seeds`` seeds: {metric: (mean, std)} (std 0 for one seed)."""
    runs = []
    for i in range(args.seeds):
        runs.append(
            run([*overrides, f"seed={args.seed + i}"], args.data_dir, args.budget, args.max_steps, args.download)
        )
        print(f"  {' '.join(overrides)} seed={args.seed + i}: {short(runs[-1])}", flush=True)
    keys = sorted({k for r in runs for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
    out = {}
    for k in keys:
        values = [float(r[k]) for r in runs if k in r]
        out[k] = (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)
    return out


def short(summary: dict) -> str:
    keys = [k for k in summary if k.startswith(("test/", "val/loss")) or k == "seconds"]
    return ", ".join(f"{k}={summary[k]:.4f}" if isinstance(summary[k], float) else f"{k}={summary[k]}" for k in keys)


def cell(stats: dict, key: str, digits: int = 3) -> str:
    if key not in stats:
        return "-"
    mean, std = stats[key]
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std else "")


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def etth1(args) -> str:
    rows = []
    for model in args.models:
        for horizon in args.horizons:
            stats = repeated([f"experiment=etth1_{model}", f"data.horizon={horizon}"], args)
            rows.append(
                [
                    f"ours: {model}",
                    cell(stats, "lookback", 0),
                    str(horizon),
                    cell(stats, "test/mse"),
                    cell(stats, "test/mae"),
                    cell(stats, "seconds", 0),
                ]
            )
    for name, by_horizon in PUBLISHED_ETTH1.items():
        lookback = {"DLinear": "336", "PatchTST/64": "512"}.get(name, "96")
        for horizon in args.horizons:
            mse, mae = by_horizon[horizon]
            rows.append([name, lookback, str(horizon), f"{mse:.3f}", f"{mae:.3f}", "(paper)"])
    return table(["model", "lookback", "horizon", "test MSE", "test MAE", "seconds"], rows)


def shakespeare(args) -> str:
    rows = []
    for recipe in args.recipes or ["model=lstm data=shakespeare", "experiment=shakespeare_lstm"]:
        stats = repeated(recipe.split(), args)
        mean = {k: (stats[k][0] if k in stats else math.nan) for k in ("val/loss", "test/loss")}
        both = (mean["val/loss"] + mean["test/loss"]) / 2
        rows.append(
            [
                f"ours: {recipe}",
                cell(stats, "val/loss"),
                cell(stats, "test/loss"),
                f"{both:.3f}",
                f"{both / math.log(2):.3f}",
                cell(stats, "seconds", 0),
            ]
        )
    for name, nats in PUBLISHED_SHAKESPEARE.items():
        rows.append([name, "-", "-", f"{nats:.3f}", f"{nats / math.log(2):.3f}", "(paper)"])
    return table(["model", "val nats/char", "test nats/char", "mean nats/char", "mean bits/char", "seconds"], rows)


def images(args) -> str:
    rows = []
    for name, recipe in IMAGE_RECIPES.items():
        folder = IMAGE_FILES[name]
        if folder and not os.path.isdir(os.path.join(args.data_dir, folder)) and not args.download:
            print(f"  {name}: no {folder} in {args.data_dir}; skipped (--download fetches it)", flush=True)
            continue
        stats = repeated([f"experiment={recipe}"], args)
        rows.append([f"ours: {recipe}", cell(stats, "test/acc", 4), cell(stats, "seconds", 0)])
        if name in PUBLISHED_IMAGES:
            paper, acc = PUBLISHED_IMAGES[name]
            rows.append([paper, f"{acc:.4f}", "(paper)"])
    return table(["model", "test accuracy", "seconds"], rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("table", choices=("etth1", "shakespeare", "images"))
    p.add_argument("--models", nargs="+", default=list(ETT_MODELS), choices=ETT_MODELS, help="etth1: the recipes")
    p.add_argument("--horizons", nargs="+", type=int, default=list(HORIZONS), choices=HORIZONS)
    p.add_argument("--recipes", nargs="+", help='shakespeare: the command lines, e.g. "experiment=shakespeare_lstm"')
    p.add_argument("--budget", help="trainer.max_time for every run, DD:HH:MM:SS (default: the recipe's own)")
    p.add_argument("--max-steps", type=int, help="trainer.max_steps for every run (default: the recipe's own)")
    p.add_argument("--seeds", type=int, default=1, help="runs per cell, reported as mean ± std")
    p.add_argument("--seed", type=int, default=42, help="the first seed")
    p.add_argument(
        "--data-dir", default=os.environ.get("ZOO_REAL_DATA") or os.path.join(os.path.dirname(ROOT), "shared", "data")
    )
    p.add_argument("--download", action="store_true", help="download data that is not in --data-dir")
    p.add_argument("--markdown", help="also write the table to this file")
    args = p.parse_args(argv)
    args.data_dir = os.path.abspath(os.path.expanduser(args.data_dir))
    from zoo.run.reliability import RunStopped  # here, not at the top: it imports Lightning

    started = time.perf_counter()
    with user_errors():
        try:
            text = {"etth1": etth1, "shakespeare": shakespeare, "images": images}[args.table](args)
        except RunStopped as stop:
            # The run's own advice (resume from its folder) does not apply: the folder was temporary.
            reason = str(stop).split(";")[0]
            sys.stderr.write(f"results.py {reason}; the runs it finished are listed above, one line each.\n")
            sys.exit(stop.exit_code)
    print()
    print(text)
    print(f"\n{args.table}: {time.perf_counter() - started:.0f} s in all")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
