"""Export a checkpoint: ``python export.py ckpt_path=PATH [format=onnx|torchscript|pt2] [out=DIR]``.

The checkpoint is rebuilt through this project's conf/ (zoo.run.rebuild: nothing stored in it is
instantiated); zoo.run.export writes the network with its preprocessing as a file that runs without
this repository and checks it against the network on the test split before keeping it.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from zoo import compat
from zoo.run.config import check_export_config, preflight, user_errors

# Before Lightning imports torchmetrics: torchvision, scipy and matplotlib are then imported only by the
# code that uses them (image data, figures), not with every metric family torchmetrics has.
compat.torchmetrics_without_optional_imports()


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
def main(cfg: DictConfig) -> None:
    with user_errors():
        check_export_config(cfg)  # also when Hydra's flags made preflight step aside
        report = export(cfg)
    check = report["check"]
    agreement = f", same top class {check['top1_agreement']:.2%}" if "top1_agreement" in check else ""
    print(
        f"Wrote {report['file']} ({report['bytes'] / 1e6:.2f} MB, {report['format']}): checked on "
        f"{check['samples']} samples against the network, largest difference {check['max_abs_diff']:.2g}"
        f"{agreement}; figures in export.json beside it."
    )


def export(cfg: DictConfig) -> dict:
    from hydra.utils import instantiate

    from zoo.run.export import default_out, export
    from zoo.run.rebuild import rebuild

    # The data's locations are the command's (data_dir=) or conf/'s, never the checkpoint's (issue 26).
    rebuilt = rebuild(cfg.ckpt_path, places={"data_dir": cfg.data_dir} if cfg.data_dir else None)
    datamodule = None
    if rebuilt.task != "adversarial":  # a generator is checked on noise: no data needed
        datamodule = instantiate(dict(rebuilt.config["data"]))
        datamodule.prepare_data()
        datamodule.setup("test")
    out = cfg.out or default_out(cfg.ckpt_path, cfg.format)
    return export(rebuilt, datamodule, cfg.format, str(out), cfg.ckpt_path, cfg.samples)


if __name__ == "__main__":
    preflight("export", sys.argv[1:])
    main()
