"""What a trained model says about new inputs: ``python predict.py ckpt_path=PATH input=...``.

Image classifiers read an image file, a folder or a glob; text classifiers a text file (one example
per line) or a CSV with column=; forecasters a CSV with the trained columns (without input=, the
forecast after the end of their training data). The checkpoint is rebuilt as data
(zoo.run.rebuild), the inputs are read as the training data was (zoo.run.inputs), the task's
predict_step runs through Lightning's Trainer.predict, and the rows (zoo.run.outputs) go to
predictions.csv, written whole or not at all. The same from Python: ``zoo.load(ckpt).predict(x)``.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from zoo import compat
from zoo.run.config import check_predict_config, preflight, user_errors

# Before Lightning imports torchmetrics: torchvision, scipy and matplotlib are then imported only by the
# code that uses them (image data, figures), not with every metric family torchmetrics has.
compat.torchmetrics_without_optional_imports()


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    with user_errors():
        check_predict_config(cfg)  # also when Hydra's flags made preflight step aside
        from zoo.run.predict import predict

        predict(cfg)


if __name__ == "__main__":
    preflight("predict", sys.argv[1:])
    main()
