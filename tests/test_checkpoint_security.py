"""The hostile suite for checkpoints: nothing stored in one is instantiated, imported or unpickled.

Each crafted checkpoint is a real fixture (tests/fixtures/checkpoints) loaded as data, its stored
hyper-parameters edited and saved again, so it still loads with ``weights_only=True``. Every path
that reads a checkpoint (eval.py, generate.py for each generative task, ``init_from``,
``resume=true``) must refuse it with one ``error:`` sentence and exit status 2, and the side effect
the payload aims at (a marker file) must not exist afterwards.
"""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from tests.helpers import ROOT, cli, command

FIXTURES = ROOT / "tests" / "fixtures" / "checkpoints"


class _Unpickled:
    """A pickle that creates its marker file when it is unpickled (torch.load with weights_only=False)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def payloads(tmp_path: Path) -> dict[str, dict]:
    """Configs that, once instantiated, create ``tmp_path / 'marker'``."""
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.pkl"
    torch.save(_Unpickled(marker), evil)
    return {
        "open": {"_target_": "builtins.open", "file": str(marker), "mode": "w"},
        "copy": {"_target_": "shutil.copyfile", "src": str(FIXTURES / "expected.json"), "dst": str(marker)},
        "touch": {"_target_": "pathlib.Path.touch", "_args_": [{"_target_": "pathlib.Path", "_args_": [str(marker)]}]},
        "unpickle": {"_target_": "torch.load", "f": str(evil), "weights_only": False},
    }


def craft(tmp_path: Path, fixture: str, edit, name: str = "crafted.ckpt") -> Path:
    """``fixture`` with ``edit(hyper_parameters)`` applied, saved as plain data (loads with weights_only=True)."""
    ckpt = torch.load(FIXTURES / f"{fixture}.ckpt", map_location="cpu", weights_only=True)
    edit(ckpt["hyper_parameters"])
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
    torch.load(path, weights_only=True)  # still a checkpoint that loads as data
    return path


def assert_refused_in_process(fn, capsys, marker: Path) -> str:
    """``fn`` under the commands' error handling: exit 2, one sentence, no traceback, no side effect."""
    from zoo.run.config import user_errors

    with pytest.raises(SystemExit) as stop, user_errors():
        fn()
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert not marker.exists(), "the checkpoint's payload ran"
    return err


def assert_refused(r, marker: Path) -> str:
    """A command's result: exit 2, one ``error:`` sentence as the last line, no traceback, no side effect."""
    assert r.returncode == 2, (r.returncode, r.stderr[-3000:])
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: ")
    assert not marker.exists(), "the checkpoint's payload ran"
    return r.stderr.strip().splitlines()[-1]


def test_the_payloads_do_what_they_say_when_instantiated(tmp_path):
    """The suite's payloads are real: instantiated as before this fix, each creates the marker."""
    from hydra.utils import instantiate

    marker = tmp_path / "marker"
    for kind, payload in payloads(tmp_path).items():
        result = instantiate(payload)
        if hasattr(result, "close"):
            result.close()
        assert marker.exists(), kind
        marker.unlink()


# Where a payload goes in the stored config: a whole section, a value inside one, a list item, and
# every other section (those the rebuild never builds are checked all the same).
PLACES = {
    "model": lambda hp, p: hp["config"].__setitem__("model", p),
    "data": lambda hp, p: hp["config"].__setitem__("data", p),
    "optimizer": lambda hp, p: hp["config"].__setitem__("optimizer", p),
    "model value": lambda hp, p: hp["config"]["model"].__setitem__("dropout", p),
    "model list item": lambda hp, p: hp["config"]["model"].__setitem__("widths", [16, p]),
    "data value": lambda hp, p: hp["config"]["data"].__setitem__("seed", {"inner": [p]}),
    "optimizer list item": lambda hp, p: hp["config"]["optimizer"].__setitem__("betas", [0.9, p]),
    "scheduler": lambda hp, p: hp["config"]["scheduler"].__setitem__("factory", p),
    "trainer": lambda hp, p: hp["config"]["trainer"].__setitem__("plugins", [p]),
    "callbacks": lambda hp, p: hp["config"]["callbacks"].__setitem__("evil", p),
    "callbacks nested": lambda hp, p: hp["config"]["callbacks"]["checkpoint"].__setitem__("dirpath", {"x": p}),
    "logger": lambda hp, p: hp["config"]["logger"].__setitem__("tensorboard", p),
    "top level": lambda hp, p: hp["config"].__setitem__("tuner", p),
}


@pytest.mark.parametrize("kind", ["open", "copy", "touch", "unpickle"])
@pytest.mark.parametrize("place", sorted(PLACES))
def test_rebuild_refuses_a_stored_target_anywhere(tmp_path, capsys, kind, place):
    from zoo.run.rebuild import rebuild

    payload = payloads(tmp_path)[kind]
    path = craft(tmp_path, "classify_mlp", lambda hp: PLACES[place](hp, copy.deepcopy(payload)))
    assert_refused_in_process(lambda: rebuild(str(path)), capsys, tmp_path / "marker")


@pytest.mark.parametrize(
    "edit, says",
    [
        (lambda hp: hp["config"]["model"].__setitem__("_target_", "builtins.exec"), "model._target_='builtins.exec'"),
        (lambda hp: hp["config"]["data"].__setitem__("_target_", "datamodules.images.MNISTData"), "conf/ has"),
        (lambda hp: hp["config"]["model"].__setitem__("_args_", ["x"]), "model._args_"),
        (lambda hp: hp["config"]["model"].__setitem__("_recursive_", False), "model._recursive_"),
        (lambda hp: hp["config"]["model"].__setitem__("_convert_", "all"), "model._convert_"),
        (lambda hp: hp["config"]["model"].__setitem__("_partial_", False), "model._partial_"),
        (lambda hp: hp["config"]["model"].__setitem__("_secret", 1), "model._secret"),
        (
            lambda hp: hp["config"]["model"].__setitem__("surprise", 1),
            "model.surprise, an option conf/ does not declare",
        ),
        (lambda hp: hp["config"]["model"].__setitem__("activation", "${oc.env:HOME}"), "not as plain data"),
        (lambda hp: hp["config"]["data"].__setitem__("seed", b"42"), "not as plain data"),
        (
            lambda hp: hp["choices"].__setitem__("model", "transformer9000"),
            "model='transformer9000', which is not a file",
        ),
        (lambda hp: hp["choices"].__setitem__("model", "../../etc/passwd"), "which is not a file of conf/model/"),
        (lambda hp: hp["choices"].__setitem__("data", "../model/mlp"), "which is not a file of conf/data/"),
        (lambda hp: hp["choices"].__setitem__("optimizer", 3), "which is not a file of conf/optimizer/"),
        (lambda hp: hp.__setitem__("choices", "model=mlp"), "does not record which model and data"),
        (lambda hp: hp.__setitem__("task", "zoo.tasks.classify:ClassificationTask"), "names the task"),
        (
            lambda hp: hp["spec"].__setitem__("shape", "1x8x8"),
            "spec.shape='1x8x8', which is not of type tuple[int, ...]",
        ),
        (lambda hp: hp["spec"].__setitem__("num_classes", "10"), "spec.num_classes='10'"),
        (lambda hp: hp["spec"].__setitem__("num_classes", True), "spec.num_classes=True"),
        (lambda hp: hp["spec"].__setitem__("class_names", [0, 1]), "spec.class_names"),
        (lambda hp: hp["spec"].__setitem__("channel_mean", [float("nan")]), "spec.channel_mean"),
        (lambda hp: hp["spec"].__setitem__("kind", "pickle"), "a data spec of kind 'pickle'"),
        (lambda hp: hp["spec"].__setitem__("shape", [1, 0, 8]), "shape [1, 0, 8]"),
        (lambda hp: hp.__setitem__("spec", {"_target_": "builtins.open"}), "stores spec._target_"),
    ],
)
def test_rebuild_refuses_what_is_not_this_projects_plain_config(tmp_path, capsys, edit, says):
    from zoo.run.rebuild import rebuild

    path = craft(tmp_path, "classify_mlp", edit)
    err = assert_refused_in_process(lambda: rebuild(str(path)), capsys, tmp_path / "marker")
    assert says in err and str(path) in err, err


@pytest.mark.slow  # a subprocess: the command as a user runs it
def test_eval_refuses_a_checkpoint_whose_data_opens_a_file(tmp_path):
    marker = tmp_path / "marker"
    path = craft(tmp_path, "classify_cnn", lambda hp: hp["config"].__setitem__("data", payloads(tmp_path)["open"]))
    last = assert_refused(cli("eval.py", f"ckpt_path={path}"), marker)
    assert "stores data._target_='builtins.open'" in last and "nothing was built" in last


@pytest.mark.slow  # a subprocess: the command as a user runs it
def test_generate_refuses_a_language_model_whose_model_copies_a_file(tmp_path):
    marker = tmp_path / "marker"
    path = craft(
        tmp_path, "language_model_lstm", lambda hp: hp["config"].__setitem__("model", payloads(tmp_path)["copy"])
    )
    last = assert_refused(command("generate.py", f"ckpt_path={path}", "length=5"), marker)
    assert "model._target_='shutil.copyfile'" in last


@pytest.mark.slow  # a subprocess: the command as a user runs it
def test_generate_refuses_a_gan_whose_optimizer_unpickles_a_file(tmp_path):
    marker = tmp_path / "marker"
    path = craft(
        tmp_path,
        "adversarial_gan",
        lambda hp: hp["config"]["optimizer"].__setitem__("betas", [0.5, payloads(tmp_path)["unpickle"]]),
    )
    out = tmp_path / "samples.png"
    last = assert_refused(command("generate.py", f"ckpt_path={path}", f"out={out}"), marker)
    assert "optimizer.betas" in last and not out.exists()


@pytest.mark.parametrize("kind", ["open", "unpickle"])
def test_eval_in_process_refuses_a_crafted_checkpoint(tmp_path, capsys, kind):
    from eval import evaluate

    path = craft(
        tmp_path, "classify_mlp", lambda hp: hp["config"]["data"].__setitem__("batch_size", payloads(tmp_path)[kind])
    )
    out = tmp_path / "metrics.json"
    cfg = OmegaConf.merge(OmegaConf.load(ROOT / "conf" / "eval.yaml"), {"ckpt_path": str(path), "out": str(out)})
    err = assert_refused_in_process(lambda: evaluate(cfg), capsys, tmp_path / "marker")
    assert "data.batch_size" in err and not out.exists()


@pytest.mark.parametrize("fixture", ["language_model_lstm", "adversarial_gan"])
def test_generate_refuses_a_choice_outside_conf(tmp_path, capsys, fixture):
    from generate import generate

    path = craft(tmp_path, fixture, lambda hp: hp["choices"].__setitem__("data", "../../../tmp/evil"))
    cfg = OmegaConf.merge(
        OmegaConf.load(ROOT / "conf" / "generate.yaml"), {"ckpt_path": str(path), "out": str(tmp_path / "x.png")}
    )
    err = assert_refused_in_process(lambda: generate(cfg), capsys, tmp_path / "marker")
    assert "data='../../../tmp/evil', which is not a file of conf/data/" in err


@pytest.mark.parametrize("kind", ["open", "touch"])
def test_init_from_refuses_a_crafted_checkpoint(tmp_path, capsys, kind):
    from zoo.run.checkpoints import load_weights
    from zoo.run.rebuild import rebuild

    net = rebuild(str(FIXTURES / "classify_mlp.ckpt")).net
    before = {k: v.clone() for k, v in net.state_dict().items()}
    path = craft(
        tmp_path, "classify_mlp", lambda hp: hp["config"]["model"].__setitem__("widths", [payloads(tmp_path)[kind]])
    )
    assert_refused_in_process(lambda: load_weights(net, str(path)), capsys, tmp_path / "marker")
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # nothing copied in


def _resume_cfg():
    return OmegaConf.create({"resume": True})


def test_resume_refuses_a_crafted_resume_checkpoint_before_touching_the_folder(tmp_path, capsys):
    from zoo.run.lifecycle import resume_point

    out = tmp_path / "run"
    events = out  # the run's events file lies in the run folder itself
    events.mkdir(parents=True)
    (events / "events.out.tfevents.1").write_bytes(b"x" * 100)
    craft(
        out,
        "classify_mlp",
        lambda hp: hp["config"]["callbacks"].__setitem__("evil", payloads(tmp_path)["copy"]),
        name="checkpoints/resume.ckpt",
    )
    # refused before the task is looked at, so none is needed
    assert_refused_in_process(
        lambda: resume_point(_resume_cfg(), str(out / "checkpoints"), str(out), None), capsys, tmp_path / "marker"
    )
    assert (events / "events.out.tfevents.1").stat().st_size == 100  # not rewound


@pytest.mark.slow  # a subprocess: the command as a user runs it
def test_train_resume_refuses_a_crafted_resume_checkpoint(tmp_path):
    marker, out = tmp_path / "marker", tmp_path / "run"
    craft(
        out,
        "classify_mlp",
        lambda hp: hp["config"].__setitem__("model", payloads(tmp_path)["touch"]),
        name="checkpoints/resume.ckpt",
    )
    r = command(
        "train.py", "model=mlp", "model.widths=[16]", "trainer.max_epochs=1", "resume=true", f"hydra.run.dir={out}"
    )
    last = assert_refused(r, marker)
    assert "model._target_='pathlib.Path.touch'" in last
    assert not (out / "metrics.json").exists()


@pytest.mark.slow  # a subprocess: the command as a user runs it
def test_a_pickle_in_the_checkpoint_itself_is_never_opened(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "pickled.ckpt"
    ckpt = torch.load(FIXTURES / "classify_mlp.ckpt", weights_only=True)
    ckpt["hyper_parameters"]["extra"] = _Unpickled(marker)
    torch.save(ckpt, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    last = assert_refused(cli("eval.py", f"ckpt_path={path}"), marker)
    assert "refused unopened" in last
