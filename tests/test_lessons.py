"""The lessons (conf/experiment/lesson_*.yaml, issue 15): each broken network gets the diagnosis its
comment promises, and its fixed variant (the other value of the lesson's sweep) gets none.

Each run is a real training run of the lesson as composed from conf/ (a few seconds each on an idle
CPU), in this process."""

from __future__ import annotations

import contextlib
import json

import pytest

from tests.helpers import run_train

pytestmark = pytest.mark.slow

# lesson, the broken run's overrides, the kinds it must report, the fixed run's overrides
LESSONS = [
    ("lesson_vanishing_gradients", [], {"vanishing_gradients"}, ["model.residual=true"]),
    ("lesson_exploding_gradients", [], {"exploding_gradients"}, ["trainer.gradient_clip_val=1.0"]),
    ("lesson_batchnorm", [], {"dead_units"}, ["model.batchnorm=true"]),
    ("lesson_initialisation", [], {"saturation"}, ["model.init=xavier"]),
    ("lesson_learning_rate", [], {"lr_too_low"}, ["optimizer.lr=0.1"]),
    ("lesson_dropout", [], {"overfitting"}, ["model.dropout=0.5"]),
    ("lesson_learning_rate", ["optimizer.lr=5.0"], {"lr_too_high"}, None),
    ("lesson_mode_collapse", [], {"mode_collapse"}, ["model=dcgan"]),
]


def diagnosed(lesson: str, overrides: list[str], out) -> tuple[dict, set[str]]:
    """metrics.json of the lesson's run (also when it diverged, as the unclipped RNN does) and the
    kinds of its diagnoses."""
    from zoo.run.reliability import Diverged

    with contextlib.suppress(Diverged):  # metrics.json says so: status "diverged"
        run_train([f"experiment={lesson}", "test=false", *overrides], out)
    metrics = json.loads((out / "metrics.json").read_text())
    return metrics, {d["kind"] for d in metrics["diagnoses"]}


@pytest.mark.parametrize("lesson, broken, expected, fixed", LESSONS, ids=[f"{x[0]}{x[1]}" for x in LESSONS])
def test_each_lesson_diagnoses_the_broken_run_and_not_its_fix(lesson, broken, expected, fixed, tmp_path, one_thread):
    metrics, kinds = diagnosed(lesson, broken, tmp_path / "broken")
    assert expected <= kinds, f"{lesson} {broken}: expected {expected}, got {metrics['diagnoses']}"
    for d in metrics["diagnoses"]:
        assert d["message"].endswith(".") and len(d["message"]) > 80  # a sentence with its fix
    if fixed is not None:
        metrics, kinds = diagnosed(lesson, fixed, tmp_path / "fixed")
        assert metrics["status"] == "finished"
        assert kinds == set(), f"{lesson} {fixed}: expected no diagnosis, got {metrics['diagnoses']}"


def test_the_optimizers_lesson_learns_with_every_optimizer_and_says_nothing(tmp_path, one_thread):
    losses = {}
    for name in ("sgd_plain", "adam"):
        metrics, kinds = diagnosed("lesson_optimizers", [f"optimizer={name}"], tmp_path / name)
        assert kinds == set(), metrics["diagnoses"]
        losses[name] = metrics["val/loss"]
    assert losses["adam"] < losses["sgd_plain"]  # the curve the lesson shows: Adam ahead of plain SGD
