"""The model zoo: plain-PyTorch networks (one family per file), the Lightning tasks that train
them, and the observability callbacks. Importing this package imports no torch and changes nothing.

Hydra finds this project's sweepers (hydra_plugins/zoo_sweepers) through ``sys.path``: the entry
scripts (train.py, eval.py, generate.py) are in the repository root, which Python puts first on
``sys.path`` wherever they are run from, and pytest adds it too (``pythonpath`` in pyproject.toml);
a plain ``pip install .`` copies the plugins into site-packages.

The Python API (zoo/api/) is imported on first use, so ``import zoo`` stays cheap:
``zoo.train``, ``zoo.sweep``, ``zoo.open_run``, ``zoo.compare``, ``zoo.Run`` and ``zoo.UserError``.
"""

# name -> the module that defines it, imported when the name is first used (PEP 562).
_LAZY = {
    "UserError": "zoo.errors",
    "train": "zoo.api.launch",
    "sweep": "zoo.api.launch",
    "open_run": "zoo.api.results",
    "compare": "zoo.api.results",
    "Run": "zoo.api.results",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
