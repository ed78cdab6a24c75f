"""The model zoo: plain-PyTorch networks (one family per file), the Lightning tasks that train
them, and the observability callbacks. Importing this package imports no torch."""


def _find_our_hydra_plugins() -> None:
    """Let Hydra's plugin scan see hydra_plugins/zoo_sweepers when this project is installed with
    ``pip install -e .``: setuptools' editable import hook serves the package to ``import`` but
    hides it from the ``pkgutil`` walk Hydra uses to find plugins (running from the repository
    root, or after a plain ``pip install .``, it is found anyway)."""
    import os

    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "hydra_plugins")
    if not os.path.isdir(os.path.join(folder, "zoo_sweepers")):
        return
    try:
        import hydra_plugins
    except ImportError:
        return
    if folder not in list(hydra_plugins.__path__):
        hydra_plugins.__path__.append(folder)


_find_our_hydra_plugins()
