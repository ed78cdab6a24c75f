"""notebooks/: each one runs top to bottom offline (nbclient, a real Jupyter kernel) without an error,
and none is committed with outputs. ``python -m pytest -m notebooks`` runs them alone; they are slow
(``-m "not slow"`` leaves them out)."""

from __future__ import annotations

import os
import time

import nbformat
import pytest

from tests.helpers import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_the_notebooks_are_numbered_and_committed_without_outputs():
    assert [p.name[:3] for p in NOTEBOOKS] == [f"{i:02d}_" for i in range(1, len(NOTEBOOKS) + 1)]
    assert len(NOTEBOOKS) >= 7
    for path in NOTEBOOKS:
        book = nbformat.read(path, as_version=4)
        nbformat.validate(book)
        for i, cell in enumerate(book.cells):
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{path.name}: cell {i} has outputs"
        first, last = book.cells[0].source, book.cells[-1].source
        assert "What you will learn" in first, f"{path.name} does not start with what you will learn"
        assert "What to try next" in last, f"{path.name} does not end with what to try next"


def kernel_over_files(folder):
    """Jupyter's kernel manager config for a kernel whose sockets are files in ``folder`` (ZeroMQ's ipc
    transport), not TCP ports: a port is picked by binding and releasing it before the kernel binds it
    again, so two kernels started at once by two pytest-xdist workers (or a test server beside one) can
    be handed the same port and their messages cross, the notebook then waiting on a reply that never
    comes (jupyter/jupyter_client#487; a notebook stalled that way inside a full run here)."""
    from traitlets.config import Config

    config = Config()
    config.KernelManager.transport = "ipc"
    config.KernelManager.ip = str(folder / "kernel")  # absolute: the client and the kernel run in other folders
    return config


def run_notebook(path, folder, monkeypatch) -> float:
    """Execute the notebook at ``path`` top to bottom in a python3 kernel working in ``folder``; nbclient
    raises on the first cell that fails. Returns the seconds it took."""
    from nbclient import NotebookClient

    # The kernel imports this checkout's zoo (not an installed copy) and writes its runs under folder.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    book = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    NotebookClient(
        book,
        timeout=900,
        kernel_name="python3",
        config=kernel_over_files(folder),
        resources={"metadata": {"path": str(folder)}},
    ).execute()
    errors = [o for c in book.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    return time.perf_counter() - started


def _notebook_class(path):
    """One test class per notebook: pytest-xdist (--dist loadscope) spreads classes over its workers."""

    @pytest.mark.slow
    @pytest.mark.notebooks
    def test_runs_top_to_bottom(self, tmp_path, monkeypatch):
        print(f"{path.name}: {run_notebook(path, tmp_path, monkeypatch):.0f} s")

    return type(
        f"TestNotebook{path.stem.title().replace('_', '')}", (), {"test_runs_top_to_bottom": test_runs_top_to_bottom}
    )


for _path in NOTEBOOKS:
    _cls = _notebook_class(_path)
    globals()[_cls.__name__] = _cls


@pytest.mark.slow
@pytest.mark.notebooks
def test_the_stop_button_stops_a_run_in_a_kernel_and_it_resumes(tmp_path):
    """Kernel > Interrupt (SIGINT to the kernel) during ``zoo.train``: the run stops after its step with a
    resumable checkpoint, the cell ends without an error, and the stopped run is returned."""
    from jupyter_client.manager import KernelManager

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    km = KernelManager(kernel_name="python3", config=kernel_over_files(tmp_path))
    km.start_kernel(cwd=str(tmp_path), env=env)
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=120)
    run_dir = tmp_path / "run"
    try:
        msg_id = kc.execute(
            "import zoo\n"
            f"run = zoo.train('model=mlp', 'data=digits', 'trainer.max_epochs=100', 'test=false', 'hydra.run.dir={run_dir}')"
        )
        printed = []
        while not any("epoch 1/100" in text for text in printed):  # one line per epoch (notebook progress)
            msg = kc.get_iopub_msg(timeout=600)
            if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
                printed.append(msg["content"]["text"])
        km.interrupt_kernel()
        reply = kc.get_shell_msg(timeout=600)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = kc.get_shell_msg(timeout=600)
        assert reply["content"]["status"] == "ok"  # no KeyboardInterrupt traceback: the run returned
        answers = []
        kc.execute_interactive(
            "print(run.status, run.metrics['epochs'] < 100, (run.folder / 'checkpoints' / 'resume.ckpt').is_file())",
            output_hook=lambda m: answers.append(m["content"].get("text") or ""),
            timeout=120,
        )
        assert "interrupted True True" in "".join(answers)
        # The run's figure callbacks chose Agg; the notebook's inline figures show again after it.
        shown = []
        kc.execute_interactive(
            "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3]);",
            output_hook=lambda m: shown.extend(m["content"].get("data", {})),
            timeout=120,
        )
        assert "image/png" in shown
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert not any("\r" in text or "\x1b[" in text for text in printed)  # nothing redrawn in place
