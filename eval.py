"""Evaluate a checkpoint: ``python eval.py ckpt_path=PATH [data_dir=DIR] [data_path=FILE] [split=val] [out=FILE]``.

The checkpoint is loaded as data only (weights_only=True) and rebuilt through this project's conf/
from its stored choices and plain values (zoo.run.rebuild: nothing stored in it is instantiated), so
the same dataset split and network give the metrics the run reported for that checkpoint.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from zoo import compat
from zoo.run.config import check_eval_config, preflight, user_errors

# Before Lightning imports torchmetrics: torchvision, scipy and matplotlib are then imported only by the
# code that uses them (image data, figures), not with every metric family torchmetrics has.
compat.torchmetrics_without_optional_imports()
compat.quiet_libraries()  # no litlogger tip, no warnings of the libraries about each other


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    with user_errors():
        check_eval_config(cfg)  # also when Hydra's flags made preflight step aside
        metrics = evaluate(cfg)
    from zoo.run.report import report

    report(metrics)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    import lightning as L
    from hydra.utils import instantiate

    from zoo.errors import UserError
    from zoo.run.files import write_json_atomic
    from zoo.run.rebuild import rebuild
    from zoo.tasks.registry import build_task

    if cfg.split not in ("test", "val"):
        raise UserError(f"split must be test or val, got {cfg.split!r}.")
    # Where the data lives comes from this command (data_dir=, data_path=) and conf/, never from the
    # checkpoint: a stored path is the writer's machine, or a crafted file's target (zoo/run/rebuild.py).
    places = {"data_dir": cfg.get("data_dir"), "path": cfg.get("data_path"), "root": cfg.get("data_path")}
    rebuilt = rebuild(cfg.ckpt_path, places={k: v for k, v in places.items() if v})
    data_cfg = dict(rebuilt.config["data"])
    for key in ("path", "root"):
        if key in data_cfg and data_cfg[key] is None:
            raise UserError(
                f"{cfg.ckpt_path} was trained on data={rebuilt.choices['data']}, read from a "
                f"{'file' if key == 'path' else 'folder'} of yours, and a checkpoint's stored locations are "
                f"never used; give it with data_path=..."
            )
    if cfg.batch_size:
        data_cfg["eval_batch_size"] = cfg.batch_size
    datamodule = instantiate(data_cfg)
    datamodule.prepare_data()
    datamodule.setup("test")
    task = build_task(
        rebuilt.task, rebuilt.spec, rebuilt.net, instantiate(rebuilt.config["optimizer"]), None, rebuilt.hparams
    )
    task.load_state_dict(rebuilt.state_dict)
    trainer = L.Trainer(
        accelerator=cfg.accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
    )
    run = trainer.test if cfg.split == "test" else trainer.validate
    metrics = {k: float(v) for k, v in run(task, datamodule=datamodule, verbose=False)[0].items()}
    if cfg.out:
        write_json_atomic(cfg.out, metrics)
    return metrics


if __name__ == "__main__":
    try:
        preflight("eval", sys.argv[1:])
        main()
    except KeyboardInterrupt:
        sys.stderr.write("stopped by SIGINT.\n")
        sys.exit(130)
