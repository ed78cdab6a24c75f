"""Names that mean what they say (issue 26): a file, folder, flag, key or printed command is what
its name and the README say it is."""

from __future__ import annotations

import re

import torch

from tests.helpers import ROOT, run_train

SCRIPTS = ("train.py", "eval.py", "generate.py")


def test_last_ckpt_is_the_end_of_the_run_and_best_the_best_epoch(tmp_path):
    # The monitor set so that the first epoch is the best and no later one improves on it (val/acc
    # kept by its lowest value): Lightning then rewrote last.ckpt only at that first epoch.
    out = tmp_path / "run"
    metrics = run_train(
        [
            "trainer.max_epochs=3",
            "trainer.limit_train_batches=4",
            "callbacks.checkpoint.mode=min",
            "callbacks.early_stopping=null",
            "test=false",
        ],
        out,
    )
    ckpts = out / "checkpoints"
    last = torch.load(ckpts / "last.ckpt", weights_only=True)
    best = torch.load(metrics["best_checkpoint"], weights_only=True)
    end = torch.load(ckpts / "resume.ckpt", weights_only=True)  # the state the run ended in
    assert metrics["global_step"] == 12 and metrics["best_epoch"] == 0, metrics
    assert last["global_step"] == 12 and last["epoch"] == end["epoch"], (last["global_step"], last["epoch"])
    assert best["global_step"] == 4
    for name, tensor in end["state_dict"].items():
        torch.testing.assert_close(last["state_dict"][name], tensor, rtol=0, atol=0)
    assert any(not torch.equal(best["state_dict"][n], t) for n, t in end["state_dict"].items())


def _folder_names(overrides: list[str], num: int = 3, varied: str = "") -> tuple[str, str]:
    """(run folder, sweep job folder) conf/hydra/default.yaml names for these overrides."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from zoo.run.config import compose_config

    cfg = compose_config(overrides)
    with open_dict(cfg):
        cfg.hydra.job.num = num
        cfg.hydra.job.override_dirname = varied
    HydraConfig.instance().set_config(cfg)
    return str(cfg.hydra.run.dir), str(cfg.hydra.sweep.subdir)


def test_a_run_folder_names_the_learning_rate_it_trains_with():
    run, _ = _folder_names(["optimizer=sgd", "optimizer.lr=0.05"])
    assert "/runs/mlp-digits-sgd-lr0.05_" in run, run
    # The finder chooses the rate after the folder is named: the name says so instead of a wrong rate.
    run, _ = _folder_names(["optimizer.lr=0.001", "tuner.lr_find=true"])
    assert "/runs/mlp-digits-adam-lr-find_" in run and "0.001" not in run, run


def test_an_optuna_trial_folder_is_its_trial_number_and_a_grid_job_says_what_it_varies():
    varied = "model.dropout=0.2137,optimizer.lr=0.00093,data.batch_size=64"
    _, trial = _folder_names(["hparams_search=digits_optuna"], num=7, varied=varied)
    assert trial == "7"  # logs/searches/<study_name>/<trial number>/, as the README says
    _, job = _folder_names([], num=3, varied="optimizer.lr=0.01")
    assert job == "3_optimizer.lr=0.01"


def test_the_tensorboard_command_is_printed_only_for_a_folder_with_events(tmp_path, capsys):
    from zoo.run.report import report

    report({"val/acc": 0.5}, str(tmp_path))
    out = capsys.readouterr().out
    assert "TensorBoard" not in out and f"Run folder: {tmp_path}" in out  # logger=csv: no events
    (tmp_path / "events.out.tfevents.1.host").write_bytes(b"")
    report({"val/acc": 0.5}, str(tmp_path))
    assert f"TensorBoard: tensorboard --logdir {tmp_path}" in capsys.readouterr().out


def test_every_logs_folder_the_docs_name_is_one_a_command_writes():
    # logs/runs (a run), logs/sweeps (a grid sweep), logs/searches (an Optuna search): the folders
    # conf/ names; a README line or lesson comment pointing elsewhere (logs/multiruns) is a wrong claim.
    written = set()
    for path in [*ROOT.glob("conf/**/*.yaml")]:
        written |= set(re.findall(r"\$\{paths\.log_dir\}/([a-z_]+)", path.read_text()))
    assert written == {"runs", "sweeps", "searches"}, written
    # predict.py's default output folder is made in code (zoo/run/predict.py), not named in conf/
    assert "logs/predictions" in (ROOT / "conf" / "predict.yaml").read_text()
    written.add("predictions")
    named = {}
    for path in [ROOT / "README.md", ROOT / "ARCHITECTURE.md", *ROOT.glob("docs/*.md"), *ROOT.glob("conf/**/*.yaml")]:
        for folder in re.findall(r"\blogs/([a-z_]+)", path.read_text()):
            named.setdefault(folder, path.name)
    assert {f: p for f, p in named.items() if f not in written} == {}


FOLDER_NAMES = [
    "mlp-digits-adam-lr0.001_2026-11-24_20-43-41",
    "a,b",
    "it's mine",
    "x=y [1] {2} (3)",
    "back\\slash\\",
    "$(touch pwned)",
    "${oc.env:HOME}",
    'say "hi"; ls',
    "tab\there",
    "ünï ✓",
    "a\\'b",
]


def test_the_printed_resume_command_gives_back_the_run_folder_whatever_its_name(tmp_path):
    # What a user pastes: the shell splits it, Hydra parses every override and composes the config;
    # hydra.run.dir must come back as the folder, character for character (a comma made it a sweep).
    import shlex

    from zoo.run.config import compose_config
    from zoo.run.lifecycle import resume_command

    for name in FOLDER_NAMES:
        folder = str(tmp_path / name)
        argv = shlex.split(resume_command(folder))
        assert argv[:2] == ["python", "train.py"] and "resume=true" in argv, argv
        cfg = compose_config(argv[2:])
        assert cfg.hydra.run.dir == folder, (name, argv)
        assert (tmp_path / "pwned").exists() is False


# Keys the README names that are not meant to compose: its example of a misspelt key, refused on purpose.
REFUSED_ON_PURPOSE = {"trainer.max_epoch"}
# Dotted names in docs/using-a-model.md that are no config keys: the Python API's ``model = zoo.load(...)``
# and its methods, and the files export.py writes (model.onnx, model.pt, model.pt2).
NOT_KEYS = {
    "model.predict",
    "model.read",
    "model.outputs",
    "model.rows",
    "model.class_names",
    "model.onnx",
    "model.pt",
    "model.pt2",
}
GROUP_KEYS = re.compile(
    r"(?<![\w./+~$-])((?:data|model|optimizer|scheduler|trainer|callbacks|tuner|paths|divergence)"
    r"(?:\.[A-Za-z_][A-Za-z0-9_]*)+)"
)


def _error_sentences(path) -> list[str]:
    """The text of every UserError (and its kinds) raised in a source file: the sentences a user reads."""
    import ast

    texts = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
            "UserError",
            "Diverged",
            "fail",
        ):
            texts += [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    return texts


def _declared_keys() -> set[str]:
    """Every dotted key some file of conf/ declares, as the command line writes it (data.fill)."""
    from omegaconf import OmegaConf

    keys: set[str] = set()

    def walk(node, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                keys.add(f"{prefix}{k}")
                walk(v, f"{prefix}{k}.")

    for path in ROOT.glob("conf/**/*.yaml"):
        group = path.parent.relative_to(ROOT / "conf").as_posix()
        packaged_global = path.name == "train.yaml" or "@package _global_" in path.read_text().split("\n", 1)[0]
        node = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
        walk(node, "" if packaged_global else f"{group}.")
    return keys


def test_every_key_the_docs_name_composes_without_plus():
    # A key a README line, a docs page or an error sentence tells users to type (data.fill,
    # data.date_format) is declared in conf/, so it composes as written; only a key the docs
    # themselves write with + (a new key on purpose) needs it.
    named = {}
    for path in [ROOT / "README.md", *ROOT.glob("docs/*.md")]:
        for key in GROUP_KEYS.findall(path.read_text()):
            named.setdefault(key, path.name)
    sources = [*ROOT.glob("zoo/**/*.py"), *ROOT.glob("datamodules/*.py"), *(ROOT / f for f in SCRIPTS)]
    for path in sources:
        for text in _error_sentences(path):
            for key in GROUP_KEYS.findall(text):
                named.setdefault(key, str(path.relative_to(ROOT)))
    assert len(named) > 50 and "data.fill" in named, sorted(named)
    declared = _declared_keys()
    undeclared = {
        k: where for k, where in named.items() if k not in declared and k not in REFUSED_ON_PURPOSE | NOT_KEYS
    }
    assert undeclared == {}, "named by the docs or an error sentence but not declared in conf/ (needs +)"


def test_the_keys_the_csv_docs_name_compose_as_typed(tmp_path):
    from zoo.run.config import compose_config

    cfg = compose_config(["data=csv", "data.path=x.csv", "data.fill=ffill", "data.date_format=%d.%m.%Y %H:%M"])
    assert cfg.data.fill == "ffill" and cfg.data.date_format == "%d.%m.%Y %H:%M"


def test_a_short_optuna_try_then_the_readme_command_gets_the_command_that_works(monkeypatch, capsys):
    # A study remembers the settings it was started with; the README's plain command after a short
    # try (trainer.max_epochs=1) is refused, and the refusal gives the exact command that runs it:
    # the same line with a study name of its own, the same every time (so it continues that study).
    import shlex
    import sys
    from types import SimpleNamespace

    import optuna
    import pytest

    from zoo.sweeps.optuna import OptunaSearch

    study = optuna.create_study(study_name="digits_optuna", direction="maximize")
    space = {"optimizer.lr": "tag(log, interval(1e-4, 3e-2))"}
    short = SimpleNamespace(fixed=["trainer.max_epochs=1"], describe=lambda: space)
    plain = SimpleNamespace(fixed=[], describe=lambda: space)
    OptunaSearch._check_same_search(None, study, short, "sqlite:///x.db")  # the short try starts it
    printed = []
    for _ in range(2):
        monkeypatch.setattr(sys, "argv", ["train.py", "-m", "hparams_search=digits_optuna"])
        with pytest.raises(SystemExit) as exit_:
            OptunaSearch._check_same_search(None, study, plain, "sqlite:///x.db")
        assert exit_.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]  # after Optuna's own log line
        assert "trainer.max_epochs=1" in err and err.startswith("error: "), err
        printed.append(err.rsplit(": ", 1)[1].strip())
    assert printed[0] == printed[1]
    argv = shlex.split(printed[0])
    assert argv[:4] == ["python", "train.py", "-m", "hparams_search=digits_optuna"], argv
    assert len(argv) == 5 and argv[4].startswith("hydra.sweeper.study_name=digits_optuna-"), argv
    # That study is new: the plain command's settings start it, and it is not refused.
    OptunaSearch._check_same_search(None, optuna.create_study(study_name=argv[4].split("=")[1]), plain, "x")
