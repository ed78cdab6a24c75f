"""The model zoo: plain-PyTorch networks (one family per file), the Lightning tasks that train
them, and the observability callbacks. Importing this package imports no torch and changes nothing.

Hydra finds this project's sweepers (hydra_plugins/zoo_sweepers) through ``sys.path``: the entry
scripts (train.py, eval.py, generate.py) are in the repository root, which Python puts first on
``sys.path`` wherever they are run from, and pytest adds it too (``pythonpath`` in pyproject.toml);
a plain ``pip install .`` copies the plugins into site-packages."""
