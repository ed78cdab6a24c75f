"""benchmarks/results.py: the table it prints puts our runs (mean ± std over seeds, seconds) beside
the published numbers, and each run is the recipe's command with the budget given."""

from __future__ import annotations

import math

import pytest

from tests.helpers import benchmark_script


@pytest.fixture(scope="module")
def results():
    return benchmark_script("results")


def test_etth1_table_has_ours_with_mean_and_std_beside_the_papers(results, monkeypatch, capsys, tmp_path):
    calls = []

    def fake_run(overrides, data_dir, budget, max_steps, download):
        calls.append((overrides, budget, max_steps))
        seed = int(overrides[-1].split("=")[1])
        return {
            "test/mse": 0.38 + 0.01 * (seed - 42),
            "test/mae": 0.40,
            "seconds": 60.0,
            "lookback": 96,
            "status": "finished",
        }

    monkeypatch.setattr(results, "run", fake_run)
    out = tmp_path / "table.md"
    results.main(
        [
            "etth1",
            "--models",
            "linear",
            "--horizons",
            "96",
            "--seeds",
            "3",
            "--max-steps",
            "500",
            "--markdown",
            str(out),
        ]
    )
    assert [c[0] for c in calls] == [["experiment=etth1_linear", "data.horizon=96", f"seed={s}"] for s in (42, 43, 44)]
    assert all(c[2] == 500 for c in calls)
    text = out.read_text()
    assert "| ours: linear | 96 | 96 | 0.390 ± 0.010 | 0.400 | 60 |" in text
    assert "| DLinear | 336 | 96 | 0.375 | 0.399 | (paper) |" in text
    assert "| PatchTST/64 | 512 | 96 | 0.370 | 0.400 | (paper) |" in text
    assert text in capsys.readouterr().out


def test_shakespeare_table_gives_nats_and_bits_of_the_mean_of_val_and_test(results, monkeypatch, tmp_path):
    monkeypatch.setattr(
        results,
        "run",
        lambda overrides, *a: {"val/loss": 1.45, "test/loss": 1.49, "seconds": 300.0, "status": "finished"},
    )
    out = tmp_path / "table.md"
    results.main(["shakespeare", "--recipes", "experiment=shakespeare_lstm", "--markdown", str(out)])
    row = next(line for line in out.read_text().splitlines() if "ours" in line)
    assert row == f"| ours: experiment=shakespeare_lstm | 1.450 | 1.490 | 1.470 | {1.47 / math.log(2):.3f} | 300 |"
    assert "| nanoGPT (A100) | - | - | 1.470 | 2.120 | (paper) |" in out.read_text()


def test_a_stopped_run_ends_the_table_with_one_sentence(results, monkeypatch, capsys):
    from zoo.run.reliability import RunStopped

    done = []

    def stopped_second(overrides, *a):
        if done:
            raise RunStopped(
                "stopped by SIGINT at epoch 2, step 160; the checkpoint /tmp/x/run/checkpoints/resume.ckpt resumes "
                "it; continue with: python train.py resume=true hydra.run.dir=/tmp/x/run",
                130,
            )
        done.append(overrides)
        return {"test/mse": 0.4, "test/mae": 0.4, "seconds": 1.0, "lookback": 96, "status": "finished"}

    monkeypatch.setattr(results, "run", stopped_second)
    with pytest.raises(SystemExit) as exit:
        results.main(["etth1", "--models", "linear", "--horizons", "96", "192"])
    out, err = capsys.readouterr()
    assert exit.value.code == 130
    assert "experiment=etth1_linear data.horizon=96 seed=42: test/mse=0.4000" in out  # the finished run
    assert err == (
        "results.py stopped by SIGINT at epoch 2, step 160; the runs it finished are listed above, one line each.\n"
    )


def test_gans_table_reports_class_coverage_of_each_dataset_present(results, monkeypatch, tmp_path):
    calls = []

    def fake_run(overrides, data_dir, budget, max_steps, download, inspect=None):
        calls.append(overrides)
        assert inspect is results.pixel_judge  # read from each run's folder before it is deleted
        seed = int(overrides[-1].split("=")[1])
        return {
            "pixels/rarest_share": 0.5,
            "pixels/confidence": 0.8 + 0.01 * (seed - 42),
            "pixels/confidence_real": 0.92,
            "test/entropy": 0.99 - 0.01 * (seed - 42),
            "test/rarest_share": 0.8,
            "test/confidence": 0.9,
            "test/confidence_real": 0.95,
            "test/precision": 0.7,
            "test/recall": 0.6,
            "test/fid": 3.0,
            "seconds": 120.0,
        }

    monkeypatch.setattr(results, "run", fake_run)
    (tmp_path / "MNIST").mkdir()  # MNIST present; Fashion-MNIST and CIFAR-10 not
    out = tmp_path / "table.md"
    results.main(["gans", "--seeds", "2", "--data-dir", str(tmp_path), "--markdown", str(out)])
    assert [c[0] for c in calls] == ["experiment=digits_gan"] * 2 + ["model=dcgan"] * 2
    assert calls[-1][:3] == ["model=dcgan", "data=mnist", "trainer.max_epochs=10"]  # the command
    text = out.read_text()
    assert "| ours: model=dcgan data=mnist trainer.max_epochs=10 | 0.985 ± 0.007 | 0.80 | 0.900 | 0.950 |" in text
    assert "| 0.50 | 0.805 ± 0.007 | 0.920 |" in text  # the pixel judge's columns
    assert "fashion_mnist" not in text and "| 2.0 |" in text  # minutes


def test_the_pixel_judge_sees_a_missing_class_and_is_surer_of_clear_images(results):
    """pixel_judge_numbers: a logistic regression on pixels. Samples of two of three classes: the
    rarest class has no share; samples of all three, as clear as the real ones: a fair share each
    (about 1) and the same confidence as on real images; blurred samples (halfway between two
    classes): a lower confidence."""
    import numpy as np

    rng = np.random.default_rng(0)
    centres = np.eye(3).repeat(4, axis=1)  # three "digits", four pixels each

    def images(labels, noise=0.1):
        return np.clip(centres[labels] + noise * rng.standard_normal((len(labels), 12)), 0, 1)

    y = np.tile(np.arange(3), 200)
    train, real = images(y), images(y)
    two = results.pixel_judge_numbers(train, y, real, images(np.tile([0, 1], 150)), 3)
    assert two["pixels/rarest_share"] == 0.0
    every = results.pixel_judge_numbers(train, y, real, images(y), 3)
    assert 0.9 < every["pixels/rarest_share"] <= 1.0
    assert abs(every["pixels/confidence"] - every["pixels/confidence_real"]) < 0.02
    blurred = results.pixel_judge_numbers(train, y, real, (images(y) + images((y + 1) % 3)) / 2, 3)
    assert blurred["pixels/confidence"] < every["pixels/confidence"] - 0.1
