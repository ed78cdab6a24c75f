"""The TensorBoard screenshots of the README: a logs folder with a run of every task and a sweep,
TensorBoard on 127.0.0.1, one headless-Chromium screenshot per dashboard into docs/tensorboard/.

    python docs/tensorboard/screenshots.py [--logs DIR] [--skip-runs] [--chromium chromium]

Needs Chromium (``apt-get install -y chromium``); the runs are short (a few epochs, small data,
the language model on Tiny Shakespeare from ZOO_DATA_DIR or /work/shared/data when present).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent
QUIET = ["callbacks.progress_bar=null", "callbacks.model_summary=null"]
LIMIT = ["trainer.limit_train_batches=10", "trainer.limit_val_batches=3", "trainer.limit_test_batches=3"]
SHAKESPEARE = Path(os.environ.get("ZOO_DATA_DIR", "/work/shared/data")) / "shakespeare" / "input.txt"

RUNS = {  # folder name prefix: overrides
    "mlp-digits-": [],  # the default
    "cnn-digits-": ["model=cnn"],
    "lstm-sine-": ["model=lstm", "data=sine", "trainer.max_epochs=2", *LIMIT],
    "gan-digits-": ["model=gan", "trainer.max_epochs=2", *LIMIT],
}
# (file, URL fragment, what to wait for); each page is given time to draw its charts.
DASHBOARDS = [
    ("scalars", "#timeseries", 12000),
    ("sections", "#timeseries", 20000),  # the order of all sections (crop_to_last_sections)
    ("hparams", "#hparams", 12000),
    ("custom_scalars", "#custom_scalars", 12000),
    ("histograms", "#histograms", 12000),
    ("distributions", "#distributions", 12000),
    ("images", "#images", 12000),
    ("graphs", "#graphs", 15000),
    ("pr_curves", "#pr_curves", 12000),
    ("text", "#text", 10000),
    ("projector", "#projector", 20000),
]


def train(args: list[str], logs: Path) -> None:
    """A run in logs/runs/, its folder named as any run's (cnn-digits-adam-lr0.001_<date>_<time>)."""
    cmd = [sys.executable, "train.py", *args, *QUIET, f"paths.log_dir={logs}", "trainer.max_epochs=3"]
    if any(a.startswith("trainer.max_epochs=") for a in args):
        cmd.remove("trainer.max_epochs=3")
    print(" ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def make_logs(logs: Path) -> None:
    runs = dict(RUNS)
    if SHAKESPEARE.is_file():
        runs["lstm-text_file-"] = [
            "data=text_file",
            f"data.path={SHAKESPEARE}",
            "model=lstm",
            "trainer.max_epochs=2",
            *LIMIT,
        ]
    for prefix, args in runs.items():
        if not any((f / "metrics.json").is_file() for f in (logs / "runs").glob(prefix + "*")):  # else kept
            train(args, logs)
    if (logs / "sweeps" / "mlp-digits-lr" / "summary.csv").is_file():
        return
    sweep = [sys.executable, "train.py", "-m", "optimizer.lr=0.0003,0.001,0.003,0.01", *QUIET]
    sweep += ["trainer.max_epochs=2", f"hydra.sweep.dir={logs / 'sweeps' / 'mlp-digits-lr'}"]
    print(" ".join(sweep[1:]), flush=True)
    subprocess.run(sweep, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shoot(chromium: str, url: str, png: Path, wait_ms: int, size: str = "1600,1000") -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--window-size={size}",
                f"--virtual-time-budget={wait_ms}",
                f"--screenshot={png}",
                url,
            ],
            check=True,
            capture_output=True,
            timeout=180,
        )


def crop_to_last_sections(png: Path, height: int = 420) -> None:
    """A tall Time Series page, cut to its end: the sections after the first two are listed there
    collapsed, so the picture shows the order of all of them."""
    from PIL import Image

    img = Image.open(png).convert("RGB")
    grey = img.convert("L").crop((300, 0, img.width, img.height))
    dark = [y for y in range(0, grey.height, 4) if grey.crop((0, y, grey.width, y + 1)).getextrema()[0] < 200]
    bottom = (dark[-1] if dark else img.height) + 12
    img.crop((280, max(bottom - height, 0), min(img.width, 1200), bottom)).save(png)


def shrink(png: Path) -> None:
    """Fewer colours: a dashboard's PNG from ~500 KB to ~100-200 KB."""
    from PIL import Image

    img = Image.open(png).convert("RGB")
    img.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(png, optimize=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--logs", type=Path, default=Path(tempfile.gettempdir()) / "zoo-screenshot-logs")
    p.add_argument("--skip-runs", action="store_true", help="use the logs folder as it is")
    p.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser") or "chromium")
    a = p.parse_args()
    if not a.skip_runs:
        make_logs(a.logs)  # the runs a logs folder already has (an earlier, stopped call) are kept
    # Every run of the folder on each dashboard; then the sweep alone, where the swept column comes first.
    for logdir, shots in (
        (a.logs, DASHBOARDS),
        (a.logs / "sweeps" / "mlp-digits-lr", [("hparams_sweep", "#hparams", 12000)]),
    ):
        serve_and_shoot(a.chromium, logdir, shots)


def serve_and_shoot(chromium: str, logdir: Path, shots: list) -> None:
    port = free_port()
    tb = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}/"
        for _ in range(120):
            try:
                urllib.request.urlopen(base + "data/runs", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        for name, fragment, wait in shots:
            png = OUT / f"{name}.png"
            if name == "sections":
                shoot(chromium, base + fragment, png, wait, size="1400,16000")
                crop_to_last_sections(png)
            else:
                shoot(chromium, base + fragment, png, wait)
            shrink(png)
            print(f"{png.relative_to(ROOT)}: {png.stat().st_size // 1024} KB", flush=True)
    finally:
        tb.terminate()
        tb.wait(timeout=30)


if __name__ == "__main__":
    main()
