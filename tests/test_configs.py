"""The configs and the code's shape: what ``conf/`` composes, and how the packages of ``zoo/`` import each other.

Composed configs: every choice of data, model, experiment and hparams_search composes to the config
recorded in tests/fixtures/configs/compositions.json, so sharing a base between near-copies (the ETT
datasets, the recurrent models, the Optuna searches) or dropping a restated default from an
experiment cannot change what a run gets. Each choice is recorded as its difference from the
default composition (``python train.py`` with no arguments), so a change to a group no choice here
picks does not touch the record. After changing a config on purpose, write the record again and
read its diff before committing:

    python -m tests.test_configs --write

The ``_target_`` values under ``model`` are left out of the comparison: which builder a model names
is the code's business, the values around it are the config's.
"""

from __future__ import annotations

import ast
import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"
RECORD = ROOT / "tests" / "fixtures" / "configs" / "compositions.json"
GROUPS = ("data", "model", "experiment", "hparams_search")  # each choice composed alone on top of the default
ANY_TARGET = "<any _target_>"


def choices(group: str) -> list[str]:
    """The choices a user can pick: the group folder's files, without the bases (names starting with _)."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml") if not p.stem.startswith("_"))


def flatten(node, prefix: str = "") -> dict:
    """Dotted key -> leaf value (a list is one leaf); ``_target_`` values under ``model`` are masked."""
    if not isinstance(node, dict) or not node:
        if prefix == "model._target_" or (prefix.startswith("model.") and prefix.endswith("._target_")):
            return {prefix: ANY_TARGET}
        return {prefix: node}
    out: dict = {}
    for key, value in node.items():
        for k, v in flatten(value, f"{prefix}{key}" if not prefix else f"{prefix}.{key}").items():
            if k in out:
                raise AssertionError(f"two keys flatten to {k!r}; this record cannot tell them apart")
            out[k] = v
    return out


def composed(compose, overrides: list[str]) -> dict:
    """The config ``python train.py <overrides>`` runs, unresolved and flattened. Of Hydra's own node only
    what a config here can set is kept: the sweep and sweeper, the launcher, the callbacks and the
    group choices (not the run-time paths, versions and the command line itself)."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(
        compose(config_name="train", overrides=overrides, return_hydra_config=True), resolve=False
    )
    hydra = cfg.pop("hydra")
    cfg["hydra"] = {k: hydra[k] for k in ("run", "sweep", "sweeper", "launcher", "callbacks")}
    cfg["hydra"]["choices"] = hydra["runtime"]["choices"]
    return flatten(cfg)


def difference(base: dict, other: dict) -> dict:
    """What ``other`` sets differently from ``base``: the keys it changes or adds, and those it removes."""
    return {
        "set": {k: v for k, v in other.items() if k not in base or base[k] != v},
        "removed": sorted(k for k in base if k not in other),
    }


def compositions() -> dict:
    """The default composition's data and model, and every choice's difference from the default."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="train"):
        default = composed(compose, [])
        out = {"default": {k: v for k, v in default.items() if k.split(".")[0] in ("data", "model")}}
        for group in GROUPS:
            for choice in choices(group):
                out[f"{group}={choice}"] = difference(default, composed(compose, [f"{group}={choice}"]))
    return out


@pytest.fixture(scope="module")
def now() -> dict:
    return compositions()


@pytest.fixture(scope="module")
def record() -> dict:
    return json.loads(RECORD.read_text())


@pytest.mark.slow  # composing 44 configs takes Hydra 10-20 s
def test_every_choice_is_recorded(now, record):
    assert sorted(now) == sorted(record), (
        f"choices composed now but not recorded: {sorted(set(now) - set(record))}; recorded but gone: "
        f"{sorted(set(record) - set(now))} (after adding a choice on purpose: python -m tests.test_configs --write)"
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", ["default"] + [f"{g}={c}" for g in GROUPS for c in choices(g)])
def test_choice_composes_as_recorded(name, now, record):
    if name not in record:
        pytest.skip(f"{name} is not recorded (test_every_choice_is_recorded says so)")
    got, want = now[name], record[name]
    if name == "default":
        got, want = {"set": got, "removed": []}, {"set": want, "removed": []}
    same = "<as in the default>"  # a key a choice leaves as the default composition has it is not recorded
    lines = [
        f"  {k}: recorded {want['set'].get(k, same)!r}, now {got['set'].get(k, same)!r}"
        for k in sorted(set(got["set"]) | set(want["set"]))
        if got["set"].get(k, same) != want["set"].get(k, same)
    ]
    lines += [f"  {k}: removed now, not before" for k in got["removed"] if k not in want["removed"]]
    lines += [f"  {k}: removed before, not now" for k in want["removed"] if k not in got["removed"]]
    assert not lines, f"python train.py {name} composes differently from the record:\n" + "\n".join(lines)


def test_bases_are_not_choices():
    """A base (conf/<group>/_name.yaml) is included by the choices; --help does not offer it."""
    from zoo.run.config import _config_groups, group_choices

    bases = sorted(str(p.relative_to(CONF_DIR)) for p in CONF_DIR.rglob("_*.yaml"))
    assert bases, "no base config found under conf/: the shared bases are gone"
    listed = _config_groups(str(CONF_DIR))
    for base in bases:
        group, name = os.path.dirname(base), Path(base).stem
        assert name not in listed.get(group, []), f"--help offers {group}={name}, a base and not a choice"
        assert name not in group_choices(group), f"group_choices({group!r}) offers {name}, a base and not a choice"


# ---- the import layers of zoo/ ----------------------------------------------------------------------

# Imports only go downward: a package may import from the packages left of it, never from those right
# of it. datamodules/ stands beside them and imports only the bottom layer.
LAYERS = ["errors", "compat", "nets", "tasks", "callbacks", "run", "sweeps", "api"]
BOTTOM = {"errors", "compat"}  # one layer: neither imports the other's kind of code
RANK = {name: (0 if name in BOTTOM else LAYERS.index(name) - 1) for name in LAYERS}


def _unit(path: Path) -> str | None:
    """The layer a file belongs to: zoo/<unit>/... or zoo/<unit>.py; datamodules for datamodules/."""
    rel = path.relative_to(ROOT).parts
    if rel[0] == "datamodules":
        return "datamodules"
    if rel[0] != "zoo" or len(rel) < 2 or rel[1] == "__init__.py":
        return None
    return rel[1][:-3] if rel[1].endswith(".py") else rel[1]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, module: str | None = None) -> list[tuple[int, str]]:
    """(line, module) of every import in the file, at module level and inside functions, relative ones
    made absolute from the file's module name (``module``, by default from its place in the repository)."""
    module = module or _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            name = node.module or ""
            if node.level:
                parts = package.split(".")
                name = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            # `from zoo import nets` imports the package zoo.nets
            out += [(node.lineno, f"zoo.{a.name}" if name == "zoo" else name) for a in node.names]
    return sorted(out)


def _imported_unit(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "datamodules":
        return "datamodules"
    if parts[0] == "zoo" and len(parts) > 1:
        return parts[1]
    return None


def import_edges() -> list[tuple[str, str, str]]:
    """(importing unit, imported unit, 'file:line imports module') for every import across units."""
    edges = []
    for path in sorted(list((ROOT / "zoo").rglob("*.py")) + list((ROOT / "datamodules").rglob("*.py"))):
        unit = _unit(path)
        if unit is None:
            continue
        for line, module in imports(path):
            target = _imported_unit(module)
            if target and target != unit:
                edges.append((unit, target, f"{path.relative_to(ROOT)}:{line} imports {module}"))
    return sorted(set(edges), key=lambda e: e[2])


def layer_violations(edges: list[tuple[str, str, str]] | None = None) -> list[str]:
    """Every import against the layers, as 'file:line imports module (why)'; of the repository's
    imports unless ``edges`` are given."""
    out = []
    for unit, target, where in import_edges() if edges is None else edges:
        if unit == "datamodules":
            if target not in BOTTOM:
                out.append(f"{where} (datamodules/ imports only zoo.errors and zoo.compat)")
        elif unit not in RANK or (target != "datamodules" and target not in RANK):
            stray = unit if unit not in RANK else target
            out.append(f"{where} (zoo.{stray} is in no layer: move it into one, or add it to LAYERS)")
        elif unit in BOTTOM:
            out.append(f"{where} (zoo.errors and zoo.compat are the bottom layer: they import no other zoo module)")
        elif target != "datamodules" and RANK[target] > RANK[unit]:
            out.append(f"{where} (zoo.{unit} is below zoo.{target})")
    return out


def import_cycles(edges: list[tuple[str, str, str]] | None = None) -> list[str]:
    """The cycles between units, each as a -> b -> ... -> a; of the repository's imports unless
    ``edges`` are given."""
    graph: dict[str, set[str]] = {}
    for unit, target, _ in import_edges() if edges is None else edges:
        graph.setdefault(unit, set()).add(target)
    cycles, seen = [], set()

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                cycle = path[path.index(nxt) :] + [nxt]
                key = frozenset(cycle)
                if key not in seen:
                    seen.add(key)
                    cycles.append(" -> ".join(cycle))
            elif len(path) < len(graph) + 1:
                visit(nxt, path + [nxt])

    for start in sorted(graph):
        visit(start, [start])
    return cycles


def test_import_walker_sees_function_level_and_relative_imports(tmp_path):
    """The walker itself: an import inside a function, a relative import and `from zoo import x` all count."""
    probe = tmp_path / "probe.py"
    probe.write_text("from .mlp import MLP\nfrom zoo import tasks\n\n\ndef f():\n    from zoo.run.config import fail\n")
    assert imports(probe, "zoo.nets.probe") == [(1, "zoo.nets.mlp"), (2, "zoo.tasks"), (6, "zoo.run.config")]
    assert [(_imported_unit(m)) for _, m in imports(probe, "zoo.nets.probe")] == ["nets", "tasks", "run"]


def test_layer_rule_and_cycle_finder():
    """The rule itself, on made-up imports: down is fine, up, sideways out of datamodules and round
    in a circle are not."""

    def edge(a, b):
        return (a, b, f"{a} imports {b}")

    assert (
        layer_violations(
            [
                edge("tasks", "nets"),
                edge("sweeps", "run"),
                edge("nets", "errors"),
                edge("run", "datamodules"),
                edge("datamodules", "compat"),
            ]
        )
        == []
    )
    assert layer_violations(
        [
            edge("nets", "tasks"),
            edge("callbacks", "run"),
            edge("datamodules", "nets"),
            edge("errors", "nets"),
            edge("tasks", "helpers"),
        ]
    ) == [
        "nets imports tasks (zoo.nets is below zoo.tasks)",
        "callbacks imports run (zoo.callbacks is below zoo.run)",
        "datamodules imports nets (datamodules/ imports only zoo.errors and zoo.compat)",
        "errors imports nets (zoo.errors and zoo.compat are the bottom layer: they import no other zoo module)",
        "tasks imports helpers (zoo.helpers is in no layer: move it into one, or add it to LAYERS)",
    ]
    assert import_cycles([edge("tasks", "nets"), edge("run", "tasks")]) == []
    assert import_cycles([edge("nets", "tasks"), edge("tasks", "callbacks"), edge("callbacks", "nets")]) == [
        "callbacks -> nets -> tasks -> callbacks"
    ]


def test_imports_only_go_down_the_layers():
    found = layer_violations()
    assert not found, (
        "imports against the layers (errors/compat < nets < tasks < callbacks < run < sweeps):\n" + "\n".join(found)
    )


def test_no_import_cycle_between_packages():
    cycles = import_cycles()
    assert not cycles, "import cycles between the packages of zoo/:\n" + "\n".join(cycles)


def test_nothing_refers_to_files_outside_the_repository():
    """A clone has no shared/ folder beside it: no file may send its reader there."""
    needles = ("shared/" + "DESIGN.md", "../" + "shared")  # split, so this file does not match itself
    skip = {".git", "__pycache__", ".ruff_cache", ".pytest_cache"}
    outputs = {"logs", "data", "outputs", "multirun"}  # what runs write at the top: downloads, run folders
    hits = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        top = Path(dirpath) == ROOT
        dirnames[:] = [
            d for d in dirnames if d not in skip and not (top and d in outputs) and not d.endswith(".egg-info")
        ]
        for name in filenames:
            path = Path(dirpath) / name
            if path.suffix in (".ckpt", ".pt", ".png", ".gz", ".db", ".pyc"):
                continue
            try:
                text = path.read_text()
            except (UnicodeDecodeError, OSError):
                continue
            for n, line in enumerate(text.splitlines(), 1):
                if any(needle in line for needle in needles):
                    hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not hits, "references to files outside the repository:\n" + "\n".join(hits)


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.test_configs --write   (records what every choice composes to now)")
    RECORD.parent.mkdir(parents=True, exist_ok=True)
    RECORD.write_text(json.dumps(compositions(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {RECORD.relative_to(ROOT)}")
