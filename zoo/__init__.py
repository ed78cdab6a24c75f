"""The model zoo: plain-PyTorch networks (one family per file), the Lightning tasks that train
them, and the observability callbacks. Importing this package imports no torch and changes nothing.

Hydra finds this project's sweepers (hydra_plugins/zoo_sweepers) through ``sys.path``: the entry
scripts (train.py, eval.py, generate.py) are in the repository root, which Python puts first on
``sys.path`` wherever they are run from, and pytest adds it too (``pythonpath`` in pyproject.toml);
a plain ``pip install .`` copies the plugins into site-packages."""

# The Python API, imported on first use (``from zoo import load``): ``import zoo`` stays free of torch,
# so config checks and --help stay fast. name -> "module:attribute".
_LAZY = {
    "load": "zoo.run.predict:load",
    "Predictor": "zoo.run.predict:Predictor",
    # training and reading runs (zoo/api/): zoo.train("model=cnn", ...), zoo.open_run(folder), ...
    "train": "zoo.api.launch:train",
    "sweep": "zoo.api.launch:sweep",
    "open_run": "zoo.api.results:open_run",
    "compare": "zoo.api.results:compare",
    "Run": "zoo.api.results:Run",
    "UserError": "zoo.errors:UserError",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, _, attribute = _LAZY[name].partition(":")
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
