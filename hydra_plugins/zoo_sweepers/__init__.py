"""This project's Hydra sweepers (see config.py). ``hydra_plugins`` itself is a namespace package
shared with other Hydra plugins: it must not get an ``__init__.py``."""
