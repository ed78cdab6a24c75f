"""serve.py in a process of its own, for tests/test_serve.py and benchmarks/bench_serve.py: started in a
new process group on a free port of 127.0.0.1 (loopback only), ready once ``/health`` says ok, stopped
with its workers."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time

from tests.helpers import ROOT

START_TIMEOUT = 240  # s: the server's processes each import torch; a busy machine is slow to start them


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(ckpt, *args: str, log=None, threads: int = 1, timeout: float = START_TIMEOUT):
    """serve.py in a new process group on a free port, with ``threads`` intra-op threads; returns
    (process, base URL) once /health says ok. A server that exits first, or does not answer within
    ``timeout`` seconds, raises RuntimeError (and is stopped)."""
    import httpx

    port = free_port()
    log = log or open(os.devnull, "w")  # noqa: SIM115 - handed to the process, closed with it
    proc = subprocess.Popen(
        [sys.executable, "serve.py", f"ckpt_path={ckpt}", f"port={port}", "accelerator=cpu", *args],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: LitServe's workers are stopped with it
        env={**os.environ, "OMP_NUM_THREADS": str(threads)},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"serve.py exited with status {proc.returncode} before it answered")
        try:
            if httpx.get(f"{url}/health", timeout=2).text == "ok":
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_server(proc)
    raise RuntimeError(f"serve.py did not answer /health within {timeout:.0f} s")


def stop_server(proc) -> None:
    """SIGTERM to the server's process group, SIGKILL to what is left after 10 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    except ProcessLookupError:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
