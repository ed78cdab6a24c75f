"""Serve a checkpoint over HTTP: ``python serve.py ckpt_path=PATH [port=8000] [host=127.0.0.1]``.

POST /predict with JSON (pixels, texts, a series) or an uploaded image; GET /health. The checkpoint is
rebuilt through this project's conf/ (nothing stored in it is instantiated) and answers with the same
reading and rows as predict.py (zoo/run/serve.py, on LitServe).
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from zoo import compat
from zoo.run.config import check_serve_config, preflight, user_errors

# Before Lightning imports torchmetrics: torchvision, scipy and matplotlib are then imported only by the
# code that uses them (image data, figures), not with every metric family torchmetrics has.
compat.torchmetrics_without_optional_imports()


@hydra.main(version_base="1.3", config_path="conf", config_name="serve")
def main(cfg: DictConfig) -> None:
    with user_errors():
        check_serve_config(cfg)  # also when Hydra's flags made preflight step aside
        server = prepare(cfg)
    print(f"Serving {cfg.ckpt_path} at http://{cfg.host}:{cfg.port}/predict (GET /health); Ctrl+C stops it.")
    sys.stdout.flush()
    server.run(host=cfg.host, port=int(cfg.port), log_level="warning", generate_client_file=False, num_api_servers=1)


def prepare(cfg: DictConfig):
    """The server, after the checkpoint was loaded once here: a checkpoint that cannot be served is
    one sentence before any process starts."""
    from zoo.run.predict import load
    from zoo.run.serve import server

    load(cfg.ckpt_path, data_dir=cfg.data_dir, accelerator="cpu")
    return server(cfg)


if __name__ == "__main__":
    preflight("serve", sys.argv[1:])
    main()
