"""Sweeps and searches: the multirun summary, the Optuna search and its pruning callback. Hydra sees
them through the thin plugin classes in hydra_plugins/zoo_sweepers/."""
