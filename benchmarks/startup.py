"""Command to first training step, per kind of data: ``python benchmarks/startup.py [--rounds 3]``.

Runs ``python -X importtime train.py`` for one small run of each kind of data (images, tokens,
series), stopped right after its first step (``trainer.max_steps=1``, no validation, no test, no
optional callbacks), ``--rounds`` times in turn, and prints one table: the median time from the
command to the first training step (``first_step_s`` of metrics.json: interpreter, imports, config,
data, model) and the optional libraries the run imported (torchvision, matplotlib, scipy, optuna,
sklearn). ``--main DIR`` runs the same commands in another checkout (e.g. before a change) and adds
its rows.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = "/work/shared/data"
OPTIONAL = ("torchvision", "matplotlib", "scipy", "optuna", "sklearn", "pandas")
STOP_AFTER_FIRST_STEP = [
    "trainer.max_steps=1",
    "trainer.limit_val_batches=0",
    "trainer.num_sanity_val_steps=0",
    "test=false",
    "callbacks=none",
]


def kinds(data_dir: str | None) -> dict[str, list[str]]:
    """The run of each kind: bundled or synthetic data, or the shared copies when they are there."""
    shared = data_dir or (SHARED if os.path.isdir(SHARED) else None)
    runs = {"image (digits, mlp)": ["data=digits", "model=mlp"], "series (sine, lstm)": ["data=sine", "model=lstm"]}
    if shared and os.path.isfile(os.path.join(shared, "shakespeare", "input.txt")):
        runs["tokens (shakespeare, lstm)"] = ["data=shakespeare", "model=lstm", f"paths.data_dir={shared}"]
    return runs


def run_once(checkout: str, overrides: list[str], out: str) -> tuple[float, list[str]]:
    cmd = [sys.executable, "-X", "importtime", "train.py", *overrides, *STOP_AFTER_FIRST_STEP, f"hydra.run.dir={out}"]
    r = subprocess.run(cmd, cwd=checkout, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": checkout})
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    imported = {m.group(1).split(".")[0] for m in re.finditer(r"^import time:.*\|\s*(\S+)$", r.stderr, re.M)}
    with open(os.path.join(out, "metrics.json")) as f:
        first_step = json.load(f)["first_step_s"]
    return first_step, sorted(imported & set(OPTIONAL))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs of each kind (the table shows the median)")
    parser.add_argument("--main", default=None, help="another checkout to measure the same way (e.g. /work/main)")
    parser.add_argument("--data-dir", default=None, help=f"where shakespeare/input.txt is (default: {SHARED})")
    args = parser.parse_args()
    checkouts = [("this checkout", ROOT)] + ([("--main", os.path.abspath(args.main))] if args.main else [])
    runs = kinds(args.data_dir)
    times: dict[tuple[str, str], list[float]] = {}
    libraries: dict[tuple[str, str], list[str]] = {}
    runs_done = 0
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):  # in turn, so that a busy machine slows every row alike
            for label, checkout in checkouts:
                for kind, overrides in runs.items():
                    runs_done += 1  # a fresh folder for each run: a finished run's folder refuses another
                    seconds, libs = run_once(checkout, overrides, os.path.join(tmp, f"run{runs_done}"))
                    times.setdefault((label, kind), []).append(seconds)
                    libraries[(label, kind)] = libs
                    print(f"round {r + 1}: {label}, {kind}: {seconds:.2f} s", flush=True)
    print()
    print("| checkout | data | command to first step, s (median) | rounds | optional libraries imported |")
    print("| --- | --- | ---: | ---: | --- |")
    for (label, kind), values in times.items():
        libs = ", ".join(libraries[(label, kind)]) or "none"
        print(f"| {label} | {kind} | {statistics.median(values):.2f} | {len(values)} | {libs} |")


if __name__ == "__main__":
    main()
