"""export.py: every family of network, trained for a few steps here, exported to a file that runs
without this repository (onnxruntime alone, in a process where importing zoo fails), with its
preprocessing inside, a dynamic batch size, the metadata a caller needs, and a check on the test
split written beside it; what cannot be exported says which operation, in one sentence."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.helpers import ROOT, command, run_train
from tests.helpers.sequences import write_sequence_data
from zoo.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")

FEW_STEPS = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "callbacks.histograms=null",
    "callbacks.lr_monitor=null",
    "callbacks.gradient_norms=null",
    "logger=none",
]
AG_NEWS = ["data=ag_news", "data.val_size=40", "data.max_length=24"]
SINE = ["data=sine", "data.length=600", "data.lookback=24", "data.horizon=8"]
PYDOC = ["data=pydoc", "data.seq_len=32"]
SMALL_TRANSFORMER = ["model=transformer", "model.dim=16", "model.heads=2", "model.layers=1"]
FAMILIES = {  # one tiny run per family of network and kind of data
    "mlp-image": ["model=mlp", "data=digits", "model.widths=[16]"],
    "cnn-image": ["model=cnn", "data=digits", "model.channels=[4,8]", "model.hidden=16"],
    "resnet-image": ["model=resnet", "data=digits", "model.widths=[4,8]", "model.blocks=1"],
    "gru-image": ["model=gru", "data=digits", "model.hidden=8"],
    "transformer-image": [*SMALL_TRANSFORMER, "data=digits"],
    # packed sequences in PyTorch; both directions of two layers, each at its own length, in the file
    "lstm-text": [
        "model=lstm",
        *AG_NEWS,
        "model.hidden=8",
        "model.embedding=8",
        "model.bidirectional=true",
        "model.layers=2",
    ],
    "rnn-text": ["model=rnn", *AG_NEWS, "model.hidden=8", "model.embedding=8", "model.pool=mean"],
    "transformer-text": [*SMALL_TRANSFORMER, *AG_NEWS],
    "gru-series": ["model=gru", *SINE, "model.hidden=8", "model.segment=null"],
    "lstm-segments": ["model=lstm", *SINE, "model.hidden=8", "model.segment=8"],
    "linear-series": ["model=linear", *SINE],
    "transformer-series": [*SMALL_TRANSFORMER, *SINE],
    "gan": ["model=gan", "data=digits", "model.widths=[16]", "model.latent_dim=8", "data.val_size=16", "test=false"],
    "lstm-language-model": ["model=lstm", *PYDOC, "model.hidden=16", "model.embedding=8"],
    "transformer-language-model": [*SMALL_TRANSFORMER, *PYDOC],
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    data = tmp_path_factory.mktemp("export") / "data"
    write_sequence_data(data)
    return data


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, data_dir):
    """family -> the last.ckpt of its tiny run, trained when a test first asks for it."""
    runs: dict[str, str] = {}
    root = tmp_path_factory.mktemp("runs")

    def get(family: str) -> str:
        if family not in runs:
            out = root / family
            run_train([*FAMILIES[family], *FEW_STEPS], out, data_dir=data_dir)
            runs[family] = str(out / "checkpoints" / "last.ckpt")
        return runs[family]

    return get


def reference(ckpt: str, n: int, data_dir=None):
    """The first ``n`` test inputs in the form the exported file takes, what the PyTorch network
    gives on them, and the rebuilt run (with the datamodule, set up) to compare with training."""
    from hydra.utils import instantiate

    from zoo.run.export import graph_for
    from zoo.run.rebuild import rebuild

    rebuilt = rebuild(ckpt, places={"data_dir": str(data_dir)} if data_dir else None)
    datamodule = None
    if rebuilt.task != "adversarial":
        datamodule = instantiate(rebuilt.config["data"])
        datamodule.prepare_data()
        datamodule.setup("test")
    graph = graph_for(rebuilt, datamodule, n)
    with torch.no_grad():
        expected = graph.module(*graph.inputs.values()).numpy()
    return graph, expected, rebuilt, datamodule


def run_without_repository(fmt: str, model, graph, tmp_path) -> tuple[np.ndarray, dict]:
    """The exported file run in a fresh process that cannot import zoo, from another folder."""
    args = []
    for name, tensor in graph.inputs.items():
        path = tmp_path / f"{name}.npy"
        np.save(path, tensor.numpy())
        args.append(f"{name}={path}")
    out = tmp_path / "out.npy"
    r = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "helpers" / "run_exported.py"), fmt, str(model), str(out), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return np.load(out), json.loads(r.stdout.strip().splitlines()[-1])


def assert_metadata(meta: dict, rebuilt, ckpt: str) -> None:
    spec = rebuilt.spec
    assert meta["task"] == rebuilt.task and meta["run"]["checkpoint"] == str(ckpt)
    assert meta["run"]["choices"]["model"] == rebuilt.choices["model"]
    assert meta["inputs"][0]["shape"][0] == "batch"
    if rebuilt.task == "classify":
        assert meta["class_names"] == list(spec.class_names)
    if spec.kind == "tokens":
        assert meta["vocabulary"] == list(spec.vocabulary)
    if rebuilt.task == "forecast":
        assert meta["input_columns"] == list(spec.channel_names)
        assert (meta["lookback"], meta["horizon"]) == (spec.shape[0], spec.horizon)
        assert meta["target_columns"] == list(spec.channel_names)[-spec.target_channels :]
    if spec.kind == "image" and rebuilt.task == "classify":
        assert meta["layout"] == "NCHW" and meta["inputs"][0]["dtype"] == "uint8"


def assert_preprocessing_as_training(graph, expected, rebuilt, datamodule) -> None:
    """The file's input is what a user has (pixels, a window in the series' units): the network on
    the test split as training fed it gives the same outputs."""
    x = datamodule.splits["test"][0][: len(expected)] if datamodule is not None else None
    with torch.no_grad():
        if rebuilt.task == "classify" and rebuilt.spec.kind == "image":
            trained = rebuilt.net(x).softmax(-1).numpy()
        elif rebuilt.task == "forecast":
            mean, std = (
                torch.tensor(v[-rebuilt.spec.target_channels :])
                for v in (rebuilt.spec.channel_mean, rebuilt.spec.channel_std)
            )
            trained = (rebuilt.net(x) * std + mean).numpy()
        else:
            return
    np.testing.assert_allclose(expected, trained, rtol=0, atol=1e-4)


PARAMS = [pytest.param(f, marks=pytest.mark.slow) for f in FAMILIES]


@pytest.mark.parametrize("family", PARAMS)
def test_every_family_exports_to_onnx_and_runs_without_this_repository(family, checkpoints, data_dir, tmp_path):
    ckpt = checkpoints(family)
    out = tmp_path / "exported"
    r = command("export.py", f"ckpt_path={ckpt}", f"out={out}", f"data_dir={data_dir}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"Wrote {out / 'model.onnx'}") and "largest difference" in r.stdout
    report = json.loads((out / "export.json").read_text())
    figures = report["check"]
    assert figures["passed"] and figures["max_abs_diff"] <= 1e-4 and figures["samples"] > 0
    graph, expected, rebuilt, datamodule = reference(ckpt, 5, data_dir)  # 5: not the batch size it was exported with
    if rebuilt.task == "classify":
        assert figures["top1_agreement"] == 1.0
        assert figures["samples"] == len(datamodule.splits["test"][0])  # the whole test split
    got, meta = run_without_repository("onnx", out / "model.onnx", graph, tmp_path)
    assert got.shape == expected.shape and got.shape[0] == 5
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    if graph.classifies:
        assert (got.argmax(-1) == expected.argmax(-1)).all()
    assert_metadata(meta, rebuilt, ckpt)
    assert_preprocessing_as_training(graph, expected, rebuilt, datamodule)
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "model.onnx"]  # no temporary file left


@pytest.mark.slow
@pytest.mark.parametrize("fmt, ext", [("torchscript", "pt"), ("pt2", "pt2")])
@pytest.mark.parametrize("family", ["cnn-image", "lstm-text", "lstm-segments"])
def test_torchscript_and_pt2_load_back_with_torch_alone(family, fmt, ext, checkpoints, data_dir, tmp_path):
    ckpt = checkpoints(family)
    out = tmp_path / "exported"
    r = command("export.py", f"ckpt_path={ckpt}", f"format={fmt}", f"out={out}", "samples=64", f"data_dir={data_dir}")
    assert r.returncode == 0, r.stderr
    report = json.loads((out / "export.json").read_text())
    assert report["check"]["passed"] and report["check"]["samples"] == 64 and report["format"] == fmt
    graph, expected, rebuilt, _ = reference(ckpt, 7, data_dir)
    got, meta = run_without_repository(fmt, out / f"model.{ext}", graph, tmp_path)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    assert_metadata(meta, rebuilt, ckpt)


@pytest.mark.slow  # an ONNX export: 5-20 s
def test_the_default_folder_is_in_the_run_and_the_file_is_checked_on_the_test_split(tmp_path):
    """The fixture checkpoint of a digits CNN (no run needed): export/onnx/ beside checkpoints/."""
    import shutil

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    ckpt = run / "checkpoints" / "last.ckpt"
    shutil.copy(ROOT / "tests" / "fixtures" / "checkpoints" / "classify_cnn.ckpt", ckpt)
    r = command("export.py", f"ckpt_path={ckpt}")
    assert r.returncode == 0, r.stderr
    report = json.loads((run / "export" / "onnx" / "export.json").read_text())
    assert report["file"] == str(run / "export" / "onnx" / "model.onnx")
    assert report["check"]["samples"] == 360 and report["check"]["top1_agreement"] == 1.0  # digits' test split
    from zoo.run.export import read_metadata

    meta = read_metadata(report["file"])
    assert meta["class_names"] == [str(i) for i in range(10)] and meta["inputs"][0]["shape"] == ["batch", 1, 8, 8]


def test_a_file_that_disagrees_with_the_network_is_an_error_and_is_not_written(tmp_path, monkeypatch):
    from zoo.run import export as exporting

    real = exporting.load_runner

    def off_by_a_little(fmt, path):
        run = real(fmt, path)
        return lambda inputs: run(inputs) + 1e-3

    monkeypatch.setattr(exporting, "load_runner", off_by_a_little)
    out = tmp_path / "exported"
    ckpt = ROOT / "tests" / "fixtures" / "checkpoints" / "classify_mlp.ckpt"
    r = command("export.py", f"ckpt_path={ckpt}", f"out={out}", "format=torchscript", "samples=32")
    assert r.returncode == 2
    assert r.stderr.startswith("error: the exported torchscript file disagrees with the network on the test split")
    assert "largest difference 0.001, allowed 0.0001" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert list(out.iterdir()) == []  # neither the file nor export.json


def test_an_operation_no_exporter_has_is_named_in_one_sentence(tmp_path):
    from zoo.run.export import Graph, write

    class Histogram(torch.nn.Module):
        def forward(self, x):
            return torch.histc(x, bins=4)

    graph = Graph(Histogram(), {"x": torch.randn(4, 3)}, ["y"], {}, classifies=False)
    with pytest.raises(UserError) as e:
        write(graph, "onnx", str(tmp_path / "model.onnx"), "model=histogram")
    assert str(e.value) == (
        "model=histogram cannot be exported to onnx: the operation aten.histc.default has no onnx form; "
        "try another format=."
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["format=tflite"], "error: format must be one of onnx, torchscript, pt2, got 'tflite'; try format=onnx.\n"),
        (["samples=0"], "error: samples must be a positive whole number, got 0; try samples=256.\n"),
        ([], "error: ckpt_path must be given; add ckpt_path=... to the command line.\n"),
    ],
)
def test_export_options_are_checked_before_the_checkpoint_is_read(args, message):
    ckpt = [] if not args else [f"ckpt_path={ROOT / 'tests' / 'fixtures' / 'checkpoints' / 'classify_mlp.ckpt'}"]
    r = command("export.py", *ckpt, *args)
    assert (r.returncode, r.stderr) == (2, message)


def test_out_that_is_a_file_is_refused(tmp_path):
    afile = tmp_path / "model.onnx"
    afile.write_text("")
    r = command("export.py", "ckpt_path=x.ckpt", f"out={afile}")
    assert (r.returncode, r.stderr) == (
        2,
        f"error: out={afile} is a file; give a folder for the exported file and export.json.\n",
    )


def test_help_lists_the_options_of_export():
    r = command("export.py", "--help")
    assert r.returncode == 0
    for option in ("ckpt_path: ???", "format: onnx", "out: null", "samples: null", "data_dir: null"):
        assert option in r.stdout
    assert "python export.py ckpt_path=" in r.stdout
