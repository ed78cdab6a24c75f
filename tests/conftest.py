"""Shared fixtures. Helper functions live in tests/helpers/ (import them from ``tests.helpers``)."""

from __future__ import annotations

import http.server
import os
import threading
from functools import partial

import pytest

from tests.helpers.formats import write_cifar, write_mnist


def pytest_configure(config):
    """With pytest-xdist each worker gets one CPU thread (and so do the runs it starts in
    subprocesses): two workers with torch's default of one thread per core would put four spinning
    OpenMP threads on two cores, which makes the small models here several times slower."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        os.environ["MKL_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    """Test files with the most slow tests first, each file's tests in their own order. pytest-xdist
    (--dist loadscope) gives each worker whole files in this order: the long files start early and
    spread over the workers instead of leaving one worker running a long file alone at the end, and
    a file's module fixtures (a trained run several tests read) are built once."""
    slow_in_file: dict[str, int] = {}
    for item in items:
        slow_in_file.setdefault(item.path, 0)
        slow_in_file[item.path] += item.get_closest_marker("slow") is not None
    items.sort(key=lambda item: -slow_in_file[item.path])


@pytest.fixture(autouse=True)
def logging_left_as_found():
    """Every test leaves the loggers as it found them. Hydra configures logging when it runs in this
    process (a run, Hydra's own --help): eval.py's and generate.py's ``hydra/job_logging: disabled``
    disables every logger that exists then (``disable_existing_loggers``), Lightning's included, and
    a later test in the same worker would see none of Lightning's messages."""
    import logging

    def state():
        loggers = [
            logging.getLogger(),
            *(v for v in logging.Logger.manager.loggerDict.values() if isinstance(v, logging.Logger)),
        ]
        return {lg: (lg.disabled, lg.level, lg.propagate) for lg in loggers}

    before = state()
    yield
    for lg, (disabled, level, propagate) in before.items():
        lg.disabled, lg.propagate = disabled, propagate
        lg.setLevel(level)


@pytest.fixture
def image_data(tmp_path, monkeypatch):
    """A data folder holding small MNIST, Fashion-MNIST and CIFAR-10 files in their real formats."""
    data = tmp_path / "data"
    write_mnist(data, "MNIST")
    write_mnist(data, "FashionMNIST", seed=1)
    write_cifar(data, monkeypatch=monkeypatch)
    return data


@pytest.fixture
def http_server(tmp_path):
    """Serves tmp_path/www on 127.0.0.1 and records the paths asked for."""
    root = tmp_path / "www"
    root.mkdir()
    asked = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    # serve_forever checks for shutdown every poll_interval (0.5 s by default): each test would wait that long at teardown
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/", asked
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def one_thread():
    """These models are small and step through time in many tiny kernels: on 2 cores that other work
    also uses, OpenMP's threads spin-waiting on each other make them many times slower than one
    thread (see the CHANGELOG for issue 4). One thread here; the setting is put back after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
