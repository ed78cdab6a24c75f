"""Sample from a checkpoint of a generative task: ``python generate.py ckpt_path=PATH [options]``.

The checkpoint is rebuilt through this project's conf/ (zoo.run.rebuild: nothing stored in it is
instantiated); it names the task that trained it, and zoo.run.generate.GENERATORS maps that task to
the function that samples from it.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from zoo import compat
from zoo.run.config import check_generate_config, preflight, user_errors

# Before Lightning imports torchmetrics: torchvision, scipy and matplotlib are then imported only by the
# code that uses them (image data, figures), not with every metric family torchmetrics has.
compat.torchmetrics_without_optional_imports()
compat.quiet_libraries()  # no litlogger tip, no warnings of the libraries about each other


@hydra.main(version_base="1.3", config_path="conf", config_name="generate")
def main(cfg: DictConfig) -> None:
    with user_errors():
        check_generate_config(cfg)  # also when Hydra's flags made preflight step aside
        generate(cfg)


def generate(cfg: DictConfig) -> None:
    from zoo.errors import UserError
    from zoo.run.generate import GENERATORS
    from zoo.run.rebuild import rebuild

    rebuilt = rebuild(cfg.ckpt_path)
    if rebuilt.task not in GENERATORS:
        raise UserError(
            f"{cfg.ckpt_path} was trained by the '{rebuilt.task}' task, which does not generate anything; "
            f"give a checkpoint of a generative task ({', '.join(sorted(GENERATORS))})."
        )
    GENERATORS[rebuilt.task](rebuilt, cfg)


if __name__ == "__main__":
    try:
        preflight("generate", sys.argv[1:])
        main()
    except KeyboardInterrupt:
        sys.stderr.write("stopped by SIGINT.\n")
        sys.exit(130)
