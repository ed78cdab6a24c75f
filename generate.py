"""Sample from a checkpoint of a generative task: ``python generate.py ckpt_path=PATH [options]``.

The checkpoint (loaded as data only) names the task that trained it; ``GENERATORS`` maps that
task to the function that samples from it, called with the checkpoint and this command's config.
"""
from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from zoo.run.config import check_generate_config, preflight, user_errors

# task name -> "module:function(ckpt: dict, cfg: DictConfig) -> None"
GENERATORS: dict[str, str] = {
    "adversarial": "zoo.tasks.adversarial:generate",
    "language_model": "zoo.tasks.language_model:generate",
}


@hydra.main(version_base="1.3", config_path="conf", config_name="generate")
def main(cfg: DictConfig) -> None:
    with user_errors():
        check_generate_config(cfg)  # also when Hydra's flags made preflight step aside
        generate(cfg)


def generate(cfg: DictConfig) -> None:
    import importlib

    from zoo.errors import UserError
    from zoo.run.checkpoints import load_checkpoint

    ckpt = load_checkpoint(cfg.ckpt_path)
    task = ckpt["hyper_parameters"].get("task", "classify")
    if task not in GENERATORS:
        known = ", ".join(sorted(GENERATORS)) or "none yet"
        raise UserError(f"{cfg.ckpt_path} was trained by the '{task}' task, which does not generate anything; "
                        f"give a checkpoint of a generative task ({known}).")
    module, _, fn = GENERATORS[task].partition(":")
    getattr(importlib.import_module(module), fn)(ckpt, cfg)


if __name__ == "__main__":
    preflight("generate", sys.argv[1:])
    main()
