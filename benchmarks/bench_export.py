"""An exported ONNX file under onnxruntime against the same network in PyTorch eager, at batch 1 and 64,
for mlp, cnn, lstm and transformer.

    python benchmarks/bench_export.py [--rounds 7] [--threads 1] [--models mlp,cnn,lstm,transformer]

Each network is built by conf/ with its default options for the shape of a dataset it is made for
(mlp, cnn and transformer: 28x28 grey images, 10 classes, as MNIST; lstm: ETTh1's windows, 96 hourly
steps of 7 channels forecast 96 steps ahead, in segments of 24), with random weights (the time does
not depend on their values), wrapped as export.py wraps it (the preprocessing inside) and exported by
export.py's own code (zoo.run.export.write). Both run on the CPU with the same number of threads,
PyTorch under ``torch.inference_mode()``; the two are timed interleaved, several rounds, each round
the median of ``repeats`` calls, and the table gives the median over the rounds and the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = {  # model= -> (data spec fields, what it stands for)
    "mlp": ("image", "MNIST 1x28x28"),
    "cnn": ("image", "MNIST 1x28x28"),
    "transformer": ("image", "MNIST 1x28x28 (ViT)"),
    "lstm": ("series", "ETTh1 96x7 -> 96"),
}


def spec_of(kind: str):
    from datamodules.spec import DataSpec

    if kind == "image":
        return DataSpec(
            name="mnist",
            kind="image",
            shape=(1, 28, 28),
            num_classes=10,
            class_names=tuple(str(i) for i in range(10)),
            pixel_mean=(0.1307,),
            pixel_std=(0.3081,),
        )
    names = ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")
    return DataSpec(
        name="etth1",
        kind="series",
        shape=(96, 7),
        task="forecast",
        horizon=96,
        target_channels=7,
        channel_names=names,
        channel_mean=(0.0,) * 7,
        channel_std=(1.0,) * 7,
    )


def graph_of(model: str):
    """The network as export.py exports it, with one input batch of 64."""
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from zoo.run.config import compose_config
    from zoo.run.export import ForecasterGraph, Graph, ImageClassifierGraph
    from zoo.tasks.registry import build_net

    kind, _ = MODELS[model]
    spec = spec_of(kind)
    data = "mnist" if kind == "image" else "etth1"
    cfg = compose_config([f"model={model}", f"data={data}"])
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    torch.manual_seed(0)
    net = build_net(instantiate(model_cfg), spec, model, data).eval()
    if kind == "image":
        module = ImageClassifierGraph(net, torch.tensor(spec.pixel_mean), torch.tensor(spec.pixel_std))
        inputs = {"pixels": torch.randint(0, 256, (64, *spec.shape), dtype=torch.uint8)}
        return Graph(module, inputs, ["probabilities"], {}, classifies=True)
    module = ForecasterGraph(net, list(spec.channel_mean), list(spec.channel_std), spec.target_channels)
    inputs = {"window": torch.randn(64, *spec.shape)}
    return Graph(module, inputs, ["forecast"], {}, classifies=False)


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="threads of both PyTorch and onnxruntime")
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()

    import numpy as np
    import onnxruntime as ort
    import torch

    from zoo.run.export import write

    torch.set_num_threads(args.threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for model in args.models.split(","):
            graph = graph_of(model)
            path = os.path.join(folder, f"{model}.onnx")
            write(graph, "onnx", path, f"model={model}")
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            name, x = next(iter(graph.inputs.items()))
            for batch in (1, 64):
                xt = x[:batch].contiguous()
                xn = {name: xt.numpy()}
                repeats = 50 if batch == 1 else 10

                def eager(xt=xt, graph=graph):
                    with torch.inference_mode():
                        graph.module(xt)

                def onnx(xn=xn, session=session):
                    session.run(None, xn)

                with torch.inference_mode():
                    diff = float(np.abs(session.run(None, xn)[0] - graph.module(xt).numpy()).max())
                eager(), onnx()  # warm-up
                t_eager, t_onnx = [], []
                for _ in range(args.rounds):
                    t_eager.append(median_time(eager, repeats))
                    t_onnx.append(median_time(onnx, repeats))
                te, to = statistics.median(t_eager), statistics.median(t_onnx)
                rows.append((model, MODELS[model][1], batch, 1000 * te, 1000 * to, te / to, diff))
                print(
                    f"  {model} batch {batch}: eager {1000 * te:.3f} ms, onnxruntime {1000 * to:.3f} ms",
                    file=sys.stderr,
                )
    print(
        f"torch {torch.__version__}, onnxruntime {ort.__version__}, {args.threads} thread(s) each, "
        f"median of {args.rounds} rounds\n"
    )
    print("| model | input | batch | PyTorch eager ms | onnxruntime ms | speed-up | max abs diff |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for model, what, batch, te, to, ratio, diff in rows:
        print(f"| {model} | {what} | {batch} | {te:.3f} | {to:.3f} | {ratio:.2f}x | {diff:.1e} |")


if __name__ == "__main__":
    main()
