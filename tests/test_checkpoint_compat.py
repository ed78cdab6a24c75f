"""Checkpoints written before the architecture change still load: each fixture of
tests/fixtures/checkpoints is rebuilt through zoo.run.rebuild and gives the outputs its own code
computed (expected.json), and eval.py and generate.py run on them end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.helpers import ROOT, assert_fixture_outputs, command

FIXTURES = ROOT / "tests" / "fixtures" / "checkpoints"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_checkpoint_from_before_the_move_rebuilds_to_the_same_outputs(name):
    from zoo.run.rebuild import rebuild

    want = EXPECTED[name]
    rebuilt = rebuild(str(FIXTURES / f"{name}.ckpt"))
    net, spec = rebuilt.net.eval(), rebuilt.spec
    assert (rebuilt.task, rebuilt.choices["model"], rebuilt.choices["data"]) == (
        want["task"],
        want["model"],
        want["data"],
    )
    # built by the builder conf/ names today (MLP, CNN, LSTM, GAN: per data kind, e.g. MLPClassifier)
    assert (
        type(net).__module__.startswith("zoo.nets.")
        and want["class"].lower() in rebuilt.config["model"]["_target_"].lower()
    )
    # the target comes from today's conf/, not from the file (which names the pre-move module)
    assert not rebuilt.config["model"]["_target_"].startswith(f"zoo.{want['model']}.")
    assert_fixture_outputs(net, spec, want)


@pytest.mark.slow  # subprocesses: the commands as a user runs them
def test_generate_continues_text_from_the_language_model_fixture():
    r = command("generate.py", f"ckpt_path={FIXTURES / 'language_model_lstm.ckpt'}", "length=20", "prompt=ROMEO")
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.startswith("ROMEO") and len(r.stdout) == len("ROMEO") + 20 + 1  # and print's line break


@pytest.mark.slow  # subprocesses: the commands as a user runs them
def test_generate_writes_images_from_the_gan_fixture(tmp_path):
    out = tmp_path / "samples.npy"
    r = command("generate.py", f"ckpt_path={FIXTURES / 'adversarial_gan.ckpt'}", f"out={out}", "num_samples=6")
    assert r.returncode == 0, r.stderr[-3000:]
    images = np.load(out)
    assert images.shape == (6, 1, 8, 8) and images.dtype == np.float32 and 0 <= images.min() <= images.max() <= 1
    png = tmp_path / "grid.png"
    r = command("generate.py", f"ckpt_path={FIXTURES / 'adversarial_gan.ckpt'}", f"out={png}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow  # subprocesses: the commands as a user runs them
@pytest.mark.parametrize("name", ["classify_mlp", "classify_cnn"])
def test_eval_runs_on_the_classify_fixtures(tmp_path, name):
    out = tmp_path / "metrics.json"
    r = command("eval.py", f"ckpt_path={FIXTURES / f'{name}.ckpt'}", f"out={out}", "split=val")
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads(out.read_text())
    assert set(metrics) == {"val/acc", "val/loss", "val/macro_f1"}
    # the same split and weights: the score the run itself recorded for this (best) checkpoint
    stored = torch.load(FIXTURES / f"{name}.ckpt", weights_only=True)["callbacks"]
    recorded = next(v["best_model_score"] for k, v in stored.items() if k.startswith("ModelCheckpoint"))
    assert metrics["val/acc"] == pytest.approx(float(recorded), abs=1e-6)
