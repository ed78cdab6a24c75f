"""Test helpers, importable as ``tests.helpers``: runs of train.py's pipeline in this process and
of the real commands in a subprocess. Files in the real on-disk formats are in ``tests.helpers.formats``
(images) and ``tests.helpers.sequences`` (text and series); ``tests.helpers.sleepy`` slows a run down."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository
# The real datasets (Tiny Shakespeare, ETTh1, FSDD): ZOO_REAL_DATA=<folder>, else a shared/data folder
# beside the repository's own; a clone without them skips the tests that read them, with a message.
REAL_DATA = Path(os.environ.get("ZOO_REAL_DATA", ROOT.parent / "shared" / "data"))
QUIET = ["callbacks.progress_bar=null", "callbacks.model_summary=null"]

# The TensorBoard views that draw pictures or trace the model: in a two-epoch digits run they take
# about 5 of its 6 CPU seconds (matplotlib figures, the graph trace, the projector's embeddings).
# run_train turns them off unless a test asks for them (views=True): tests of training, checkpoints
# and sweeps do not read them; tests/test_tensorboard.py, test_diagnostics.py and the
# steps-per-execution tests do.
VIEWS = (
    "confusion_matrix",
    "misclassified",
    "saliency",
    "top_losses",
    "input_samples",
    "embeddings",
    "per_class",
    "model_graph",
)
# The same for a command line (the default callbacks config): what tests of sweeps add.
NO_VIEWS = [f"callbacks.{name}=null" for name in VIEWS] + ["callbacks.signals.flow_figure=false"]


def without_views(cfg) -> None:
    """Turns off, in a composed run config, the views of VIEWS and the gradient-flow figure."""
    for name in VIEWS:
        if cfg.callbacks.get(name) is not None:
            cfg.callbacks[name] = None
    if cfg.callbacks.get("signals") is not None:
        cfg.callbacks.signals.flow_figure = False


def run_train(
    overrides: list[str], out: Path, data_dir: Path | None = None, quiet: bool = True, views: bool = False
) -> dict:
    """train.py's pipeline in this process (no torch import per test); returns metrics.json.
    ``views=False`` turns off the costly TensorBoard views (``without_views``)."""
    import train
    from zoo.run.config import check_config, compose_run

    cfg = compose_run((QUIET if quiet else []) + overrides, str(out), str(data_dir) if data_dir else None)
    if not views:
        without_views(cfg)
    check_config(cfg)
    summary = train.train(cfg)
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(summary))
    return summary


def cli(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a command of this project as a user would, from the repository root."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def command(script: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python script args...`` run in this process, as ``cli`` runs it in a new one, for the
    commands that are refused before they train: the same ``sys.argv``, working folder, environment,
    stdout and stderr (captured), exit status (from ``SystemExit``; an escaping exception prints its
    traceback to stderr and gives 1, as the interpreter would), without an interpreter start and a torch
    import per call (5-10 s of a test's CPU). Keep ``cli`` where the process itself is what is
    checked: signals, imports at start, worker processes. tests/test_hostile.py runs every command's
    refusals in real processes."""
    import contextlib
    import io
    import logging
    import runpy
    import traceback

    out, err = io.StringIO(), io.StringIO()
    argv, cwd, environ = sys.argv[:], os.getcwd(), dict(os.environ)
    handlers = logging.getLogger().handlers[:]
    # Hydra's job logging (hydra/job_logging: disabled) disables every logger that exists: put them back
    loggers = logging.Logger.manager.loggerDict
    disabled = {name: lg.disabled for name, lg in loggers.items() if isinstance(lg, logging.Logger)}
    root_level = logging.getLogger().level
    code = 0
    try:
        sys.argv = [script, *args]
        os.chdir(ROOT)
        os.environ.update(env or {})
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                runpy.run_path(str(ROOT / script), run_name="__main__")
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                if not isinstance(e.code, (int, type(None))):
                    err.write(f"{e.code}\n")
            except BaseException:  # noqa: BLE001 - what the interpreter does with an escaping exception
                traceback.print_exc(file=err)
                code = 1
    finally:
        sys.argv = argv
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(environ)
        for name, lg in list(loggers.items()):
            if isinstance(lg, logging.Logger):
                lg.disabled = disabled.get(name, False)
        logging.getLogger().setLevel(root_level)
        root = logging.getLogger()  # Hydra's job logging pointed handlers at the captured streams
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
    return subprocess.CompletedProcess([sys.executable, script, *args], code, out.getvalue(), err.getvalue())


def benchmark_script(name: str):
    """benchmarks/<name>.py as a module (benchmarks/ is not a package), for tests of its functions."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_fixture_outputs(net, spec, expected: dict) -> None:
    """``net`` (rebuilt from a checkpoint of tests/fixtures/checkpoints/) gives on the fixed input the
    outputs the code before the package split computed (expected.json: shape, first values, sum)."""
    import pytest
    import torch

    g = torch.Generator().manual_seed(0)  # the input expected.json was computed on
    with torch.no_grad():
        if expected["task"] == "adversarial":
            y = net.generate(torch.randn(4, net.latent_dim, generator=g), None)
        elif spec.kind == "tokens":
            y = net(torch.randint(0, spec.vocab_size, (2, 16), generator=g))
        else:
            y = net(torch.randn(2, *spec.shape, generator=g))
    assert list(y.shape) == expected["output_shape"]
    torch.testing.assert_close(y.flatten()[:8], torch.tensor(expected["output_first"]), rtol=0, atol=1e-5)
    assert float(y.double().sum()) == pytest.approx(expected["output_sum"], abs=1e-5)
