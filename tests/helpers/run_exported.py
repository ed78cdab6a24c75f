"""Runs an exported file as a user without this repository would: ``python run_exported.py FORMAT
MODEL OUT.npy NAME=IN.npy ...``. It imports only numpy and onnxruntime (ONNX) or torch (TorchScript,
pt2); importing zoo or datamodules fails here, so a file that needed them would fail. Writes the
output to OUT.npy and prints the file's metadata as JSON."""

import importlib.abc
import json
import sys


class NoRepository(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("zoo", "datamodules", "train", "eval", "generate", "export", "serve", "predict"):
            raise ImportError(f"{name} is part of the repository, which an exported file must not need")
        return None


sys.meta_path.insert(0, NoRepository())


def main(fmt, model, out, *inputs):
    import numpy as np

    arrays = {}
    for item in inputs:
        name, path = item.split("=", 1)
        arrays[name] = np.load(path)
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        result = session.run(None, arrays)[0]
        meta = {k: json.loads(v) for k, v in session.get_modelmeta().custom_metadata_map.items()}
    else:
        import torch

        extra = {"zoo.json": ""}
        if fmt == "pt2":
            module = torch.export.load(model, extra_files=extra).module()
        else:
            module = torch.jit.load(model, _extra_files=extra)
        with torch.no_grad():
            result = module(*(torch.from_numpy(a) for a in arrays.values())).numpy()
        meta = json.loads(extra["zoo.json"])
    np.save(out, result)
    print(json.dumps(meta))
    assert not [m for m in sys.modules if m.split(".")[0] in ("zoo", "datamodules")]


if __name__ == "__main__":
    main(*sys.argv[1:])
