"""A checkpoint as a file that runs without this repository (export.py): ONNX, TorchScript or a
``torch.export`` program (pt2).

What is exported is the network as a caller meets it, not as training fed it (``graph_for``):

- image classifiers take the image's pixels, uint8 (B, C, H, W) at the trained size, and scale and
  normalise them inside, the way the training data was (``x / 255``, then the training split's
  per-channel mean and std); they give the class probabilities (B, classes).
- text classifiers take the padded token ids (B, max_length) and give the class probabilities.
- forecasters take the lookback window in the file's own units (B, lookback, channels), normalise
  it with the training split's channel mean and std inside, and give the forecast in the same
  units (B, horizon, target channels).
- language models take a fixed context of token ids (B, context) and give the next token's
  logits (B, vocabulary).
- GAN generators take noise (B, latent) (and class ids (B,) when conditional) and give images
  (B, C, H, W) in [0, 1].

The batch size is dynamic; the file carries what a caller needs as JSON (``metadata``: class names,
vocabulary, input columns, lookback and horizon, the input layout, the run it came from): ONNX in
its ``metadata_props``, TorchScript and pt2 as the embedded file ``zoo.json``.

A file is checked before it is kept (``check``): loaded back (ONNX through onnxruntime) and run on
the test split against the PyTorch network; a file that disagrees is deleted and the export fails
with one sentence. The figures go beside the file as export.json.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
import warnings

import torch
from torch import nn

from zoo.errors import UserError

FORMATS = {"onnx": ".onnx", "torchscript": ".pt", "pt2": ".pt2"}
TOLERANCE = 1e-4  # the largest absolute difference between the file's outputs and the network's
METADATA_FILE = "zoo.json"  # the embedded metadata of TorchScript and pt2 files
GAN_SAMPLES = 256  # noise vectors a generator is checked on (it has no test split)
CHECK_BATCH = 256


# -- the graph a caller runs --------------------------------------------------------------------


class ImageClassifierGraph(nn.Module):
    """uint8 pixels (B, C, H, W) -> class probabilities (B, classes), scaled and normalised inside."""

    def __init__(self, net: nn.Module, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.net = net
        self.register_buffer("mean", mean.float().reshape(1, -1, 1, 1).clone())
        self.register_buffer("std", std.float().reshape(1, -1, 1, 1).clone())

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = (pixels.float() / 255 - self.mean) / self.std  # as datamodules/images.py and folders.py do
        return self.net(x).softmax(dim=-1)


class TokenClassifierGraph(nn.Module):
    """Token ids (B, T), padded with the pad id -> class probabilities (B, classes)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.net(ids).softmax(dim=-1)


class ForecasterGraph(nn.Module):
    """A window in the data's own units (B, lookback, C) -> the forecast in the same units
    (B, horizon, targets): normalised with the training split's scaler, forecast, mapped back."""

    def __init__(self, net: nn.Module, mean: list[float], std: list[float], targets: int):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))
        self.register_buffer("target_mean", torch.tensor(mean[-targets:], dtype=torch.float32))
        self.register_buffer("target_std", torch.tensor(std[-targets:], dtype=torch.float32))

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        y = self.net((window - self.mean) / self.std)
        return y * self.target_std + self.target_mean


class LanguageModelGraph(nn.Module):
    """A fixed context of token ids (B, context) -> the next token's logits (B, vocabulary)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.net(ids)[:, -1]


class GeneratorGraph(nn.Module):
    """Noise (B, latent) [and class ids (B,)] -> images (B, C, H, W) in [0, 1], as generate.py's."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.generator = net.generator
        self.num_classes = net.num_classes

    def forward(self, noise: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if labels is not None:
            noise = torch.cat([noise, nn.functional.one_hot(labels, self.num_classes).to(noise.dtype)], dim=1)
        return ((self.generator(noise) + 1) / 2).clamp(0, 1)


class UnpackedRecurrentClassifier(nn.Module):
    """A ``TokenRecurrentClassifier`` of padded text, computed without ``pack_padded_sequence``.

    Packing gives each sequence its own length, a shape that depends on the data and that neither
    torch.export nor tracing can follow. The same result, layer by layer: each direction of each
    layer is a one-layer cell with that layer's weights; the forward one reads the padded sequence
    (its state at a sequence's last real step is what packing gives), the backward one reads each
    sequence reversed within its own length; padded steps are zeroed, as pad_packed_sequence does."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net, rnn = net, net.rnn
        self.pad_index, self.pool, self.hidden = net.pad_index, net.pool, rnn.hidden_size
        options = {"nonlinearity": rnn.nonlinearity} if isinstance(rnn, nn.RNN) else {}
        self.cells = nn.ModuleList()
        width = rnn.input_size
        for layer in range(rnn.num_layers):
            directions = nn.ModuleList()
            for suffix in ("", "_reverse")[: 2 if rnn.bidirectional else 1]:
                cell = type(rnn)(width, rnn.hidden_size, num_layers=1, batch_first=True, bias=rnn.bias, **options)
                with torch.no_grad():
                    for name, p in cell.named_parameters():
                        p.copy_(getattr(rnn, f"{name[: -len('_l0')]}_l{layer}{suffix}"))
                directions.append(cell)
            self.cells.append(directions)
            width = rnn.hidden_size * len(directions)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lengths = (x != self.pad_index).sum(dim=1).clamp_min(1)
        steps = torch.arange(x.shape[1], device=x.device)[None, :]
        real = steps < lengths[:, None]  # (B, T)
        reverse = torch.where(real, lengths[:, None] - 1 - steps, steps)  # within each length
        h = self.net.embed(x)
        last = lengths - 1
        finals = []
        for directions in self.cells:
            outs, finals = [], []
            forward = directions[0](h)[0]
            outs.append(forward)
            finals.append(forward.gather(1, last[:, None, None].expand(-1, 1, self.hidden))[:, 0])
            if len(directions) > 1:
                backward = directions[1](h.gather(1, reverse[..., None].expand(-1, -1, h.shape[-1])))[0]
                backward = backward.gather(1, reverse[..., None].expand(-1, -1, self.hidden))
                outs.append(backward)
                finals.append(backward[:, 0])
            h = torch.cat(outs, dim=-1) * real[..., None].to(forward.dtype)
        if self.pool == "last":
            summary = torch.cat(finals, dim=-1)
        elif self.pool == "mean":
            mask = real[..., None].to(h.dtype)
            summary = (h * mask).sum(dim=1) / mask.sum(dim=1)
        else:
            summary = h.masked_fill(~real[..., None], float("-inf")).amax(dim=1)
        return self.net.head(self.net.dropout(summary))


def exportable_net(net: nn.Module) -> nn.Module:
    """``net``, or the same computation in operations an exporter can follow."""
    from zoo.nets.rnn import TokenRecurrentClassifier

    if isinstance(net, TokenRecurrentClassifier) and net.pad_index is not None:
        return UnpackedRecurrentClassifier(net)
    return net


class Graph:
    """What is exported: the module, its inputs (name -> a batch of samples, N first), the names
    of its outputs, the metadata a caller needs, and whether it classifies."""

    def __init__(self, module, inputs, outputs, metadata, classifies):
        self.module, self.inputs, self.outputs = module.eval(), inputs, outputs
        self.metadata, self.classifies = metadata, classifies


def graph_for(rebuilt, datamodule, samples: int | None) -> Graph:
    """The module a caller runs for the rebuilt checkpoint, and up to ``samples`` inputs of its
    test split (GANs: noise) in the form that module takes."""
    spec, task = rebuilt.spec, rebuilt.task
    net = exportable_net(rebuilt.net.eval())
    meta: dict = {"task": task, "kind": spec.kind, "data": spec.name}
    if task == "adversarial":
        g = torch.Generator().manual_seed(0)
        n = samples or GAN_SAMPLES
        inputs = {"noise": torch.randn(n, rebuilt.net.latent_dim, generator=g)}
        meta["inputs"] = [_input("noise", "float32", ["batch", rebuilt.net.latent_dim], "standard normal noise")]
        if rebuilt.net.conditional:
            inputs["labels"] = torch.arange(n) % rebuilt.net.num_classes
            meta["inputs"].append(
                _input("labels", "int64", ["batch"], "the class of each image, an index of class_names")
            )
            meta["class_names"] = list(spec.class_names)
        meta["outputs"] = [_input("images", "float32", ["batch", *spec.shape], "images in [0, 1], NCHW")]
        meta["latent_dim"] = rebuilt.net.latent_dim
        return Graph(GeneratorGraph(rebuilt.net.eval()), inputs, ["images"], meta, classifies=False)
    x = _test_inputs(datamodule, samples)
    if task == "language_model":
        context = spec.shape[0]
        inputs = {"ids": x[:, :context].long().contiguous()}
        meta["inputs"] = [
            _input("ids", "int64", ["batch", context], f"the last {context} token ids of the text (ids of vocabulary)")
        ]
        meta["outputs"] = [_input("logits", "float32", ["batch", spec.vocab_size], "the next token's logits")]
        meta.update(context=context, vocabulary=list(spec.vocabulary), tokenizer="characters")
        return Graph(LanguageModelGraph(net), inputs, ["logits"], meta, classifies=False)
    if task == "forecast":
        mean, std = list(spec.channel_mean), list(spec.channel_std)
        m, s = torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)
        window = (x.float() * s + m).contiguous()  # the test windows in the file's units
        names = list(spec.channel_names)
        meta["inputs"] = [
            _input(
                "window",
                "float32",
                ["batch", *spec.shape],
                "the last lookback rows of the input columns, in their units",
            )
        ]
        meta["outputs"] = [
            _input(
                "forecast",
                "float32",
                ["batch", spec.horizon, spec.target_channels],
                "the next horizon rows of the target columns",
            )
        ]
        meta.update(
            input_columns=names,
            target_columns=names[len(names) - spec.target_channels :],
            lookback=spec.shape[0],
            horizon=spec.horizon,
            channel_mean=mean,
            channel_std=std,
        )
        graph = ForecasterGraph(net, mean, std, spec.target_channels)
        return Graph(graph, {"window": window}, ["forecast"], meta, classifies=False)
    meta["class_names"] = list(spec.class_names)
    meta["outputs"] = [_input("probabilities", "float32", ["batch", spec.num_classes], "one per class_names")]
    if spec.kind == "tokens":
        meta["inputs"] = [
            _input("ids", "int64", ["batch", spec.shape[0]], "word ids of vocabulary, padded with pad_index at the end")
        ]
        meta.update(
            vocabulary=list(spec.vocabulary),
            pad_index=spec.pad_index,
            unknown_index=spec.vocabulary.index("<unk>") if "<unk>" in spec.vocabulary else None,
            tokenizer="lower-cased words, numbers and single punctuation marks",
        )
        return Graph(TokenClassifierGraph(net), {"ids": x.long().contiguous()}, ["probabilities"], meta, True)
    mean, std = _pixel_statistics(datamodule, spec)
    pixels = x if x.dtype == torch.uint8 else ((x.float() * std.reshape(1, -1, 1, 1) + mean.reshape(1, -1, 1, 1)) * 255)
    pixels = pixels.round().clamp(0, 255).to(torch.uint8).contiguous()
    c, h, w = spec.shape
    meta["inputs"] = [
        _input(
            "pixels",
            "uint8",
            ["batch", c, h, w],
            f"NCHW, {'grayscale' if c == 1 else 'RGB'} pixels 0-255 at {h}x{w}",
        )
    ]
    meta.update(layout="NCHW", pixel_mean=mean.tolist(), pixel_std=std.tolist())
    return Graph(ImageClassifierGraph(net, mean, std), {"pixels": pixels}, ["probabilities"], meta, True)


def _input(name: str, dtype: str, shape: list, description: str) -> dict:
    return {"name": name, "dtype": dtype, "shape": shape, "description": description}


def _pixel_statistics(datamodule, spec) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-channel mean and std training normalised [0, 1] pixels with: the spec's (stored in
    checkpoints since issue 25), else the datamodule's (set up from the training split)."""
    if spec.pixel_mean and spec.pixel_std:
        return torch.tensor(spec.pixel_mean, dtype=torch.float32), torch.tensor(spec.pixel_std, dtype=torch.float32)
    mean, std = getattr(datamodule, "pixel_mean", None), getattr(datamodule, "pixel_std", None)
    if mean is None or std is None:
        raise UserError(
            f"data={spec.name} does not say how it normalised its images, so its classifier cannot be exported."
        )
    c = spec.shape[0]
    return mean.float().cpu().flatten().expand(c).clone(), std.float().cpu().flatten().expand(c).clone()


def _test_inputs(datamodule, samples: int | None) -> torch.Tensor:
    """Up to ``samples`` inputs of the test split (all of it when None), as its batches hold them."""
    splits = getattr(datamodule, "splits", None)
    if isinstance(splits, dict) and "test" in splits:
        x = splits["test"][0]
        return x[:samples].cpu() if samples else x.cpu()
    batches, n = [], 0
    for batch in datamodule.test_dataloader():
        x = batch[0]
        if not isinstance(x, torch.Tensor):
            continue  # a batch the folder reader could not read (datamodules/folders.py)
        batches.append(x)
        n += len(x)
        if samples and n >= samples:
            break
    if not batches:
        raise UserError("the test split of the checkpoint's data has no readable samples to check the export on.")
    x = torch.cat(batches)
    return x[:samples] if samples else x


# -- writing and checking -------------------------------------------------------------------------


def _dynamic_shapes(graph: Graph) -> dict:
    batch = torch.export.Dim("batch", min=1)
    return {name: {0: batch} for name in graph.inputs}


def _example(graph: Graph) -> tuple:
    """Three samples (two when there are fewer): a batch size of one would be fixed into the graph."""
    return tuple(t[:3] if len(t) >= 2 else torch.cat([t, t])[:2] for t in graph.inputs.values())


def unexportable(e: BaseException, fmt: str, what: str) -> UserError:
    """One sentence for an exporter's failure, naming the operation it could not export."""
    text = " ".join(str(e).split())
    ops = re.findall(r"aten[.:]+[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)?", text)
    op = ops[0] if ops else None
    if op is None:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        reason = first[:200]
        return UserError(f"{what} cannot be exported to {fmt}: {reason}; try another format=.")
    return UserError(f"{what} cannot be exported to {fmt}: the operation {op} has no {fmt} form; try another format=.")


def write(graph: Graph, fmt: str, path: str, what: str) -> None:
    """The graph as a file of format ``fmt`` at ``path`` with its metadata embedded."""
    meta = json.dumps(graph.metadata, sort_keys=True)
    example = _example(graph)
    names = list(graph.inputs)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporters' and tracer's advice is not the user's to act on
        try:
            if fmt == "onnx":
                _write_onnx(graph, example, names, path, graph.metadata)
            elif fmt == "torchscript":
                traced = torch.jit.trace(graph.module, example, check_trace=False)
                # _extra_files is torch.jit.save's public, documented argument for files stored in the archive
                torch.jit.save(traced, path, _extra_files={METADATA_FILE: meta})
            else:
                program = torch.export.export(graph.module, example, dynamic_shapes=_dynamic_shapes(graph))
                torch.export.save(program, path, extra_files={METADATA_FILE: meta})
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - every exporter failure is said as one sentence
            raise unexportable(e, fmt, what) from None


def _write_onnx(graph: Graph, example: tuple, names: list[str], path: str, metadata: dict) -> None:
    import logging

    import onnx

    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    program = torch.onnx.export(
        graph.module,
        example,
        input_names=names,
        output_names=graph.outputs,
        dynamic_shapes=_dynamic_shapes(graph),
        dynamo=True,
        verbose=False,
    )
    program.save(path)
    model = onnx.load(path)
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    model.producer_name = "zoo export.py"
    onnx.save(model, path)


def load_runner(fmt: str, path: str):
    """A function that runs the file at ``path`` on a dict of arrays and gives its output, as a
    user of that format would load it."""
    import numpy as np

    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        return lambda inputs: session.run(None, {k: np.ascontiguousarray(v.numpy()) for k, v in inputs.items()})[0]
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", FutureWarning
        )  # torch.jit.load's deprecation: the user chose format=torchscript
        module = torch.jit.load(path, map_location="cpu") if fmt == "torchscript" else torch.export.load(path).module()

    def run(inputs):
        with torch.no_grad():
            return module(*inputs.values()).numpy()

    return run


def check(graph: Graph, run) -> dict:
    """The file's outputs (``run``) against the PyTorch module's on every input, in batches of
    one (once) and of ``CHECK_BATCH``: the largest absolute difference and, for classifiers, the
    share of samples whose top class is the same."""
    import numpy as np

    n = len(next(iter(graph.inputs.values())))
    bounds = [(0, 1)] + [(i, min(i + CHECK_BATCH, n)) for i in range(1, n, CHECK_BATCH)]
    worst, same, torch_s, file_s = 0.0, 0, 0.0, 0.0
    for start, end in bounds:
        batch = {k: v[start:end] for k, v in graph.inputs.items()}
        t = time.perf_counter()
        with torch.no_grad():
            expected = graph.module(*batch.values()).numpy()
        torch_s += time.perf_counter() - t
        t = time.perf_counter()
        got = np.asarray(run(batch))
        file_s += time.perf_counter() - t
        if got.shape != expected.shape:
            raise UserError(
                f"the exported file gives outputs of shape {list(got.shape)} where the network gives {list(expected.shape)}."
            )
        worst = max(worst, float(np.abs(got.astype(np.float64) - expected).max()) if got.size else 0.0)
        if graph.classifies:
            same += int((got.argmax(-1) == expected.argmax(-1)).sum())
    figures = {"samples": n, "max_abs_diff": worst, "tolerance": TOLERANCE, "torch_s": torch_s, "file_s": file_s}
    if graph.classifies:
        figures["top1_agreement"] = same / n if n else 1.0
    figures["passed"] = bool(worst <= TOLERANCE and figures.get("top1_agreement", 1.0) == 1.0)
    return figures


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def default_out(ckpt_path: str, fmt: str) -> str:
    """<run folder>/export/<format>/ for a checkpoint in a run's checkpoints/ folder, else
    export/<format>/ beside the checkpoint."""
    folder = os.path.dirname(os.path.abspath(ckpt_path))
    if os.path.basename(folder) == "checkpoints":
        folder = os.path.dirname(folder)
    return os.path.join(folder, "export", fmt)


def run_metadata(rebuilt, ckpt_path: str) -> dict:
    """The run a file came from: its checkpoint, the conf/ choices, and the run's test metrics."""
    from zoo.run.files import read_json

    path = os.path.abspath(ckpt_path)
    folder = os.path.dirname(path)
    folder = os.path.dirname(folder) if os.path.basename(folder) == "checkpoints" else folder
    metrics = read_json(os.path.join(folder, "metrics.json")) or {}
    return {
        "checkpoint": path,
        "checkpoint_sha256": sha256(path),
        "run_dir": folder,
        "choices": dict(rebuilt.choices),
        "test_metrics": {k: v for k, v in metrics.items() if k.startswith("test/") and isinstance(v, (int, float))},
    }


def export(rebuilt, datamodule, fmt: str, out_dir: str, ckpt_path: str, samples: int | None = None) -> dict:
    """Export the rebuilt checkpoint to ``out_dir``/model.<ext>, check it, and write export.json
    beside it; returns export.json's contents. Nothing is left in ``out_dir`` when the check fails."""
    from zoo.run.files import write_json_atomic

    if fmt not in FORMATS:
        raise UserError(f"format={fmt} is not one of {', '.join(FORMATS)}.")
    what = f"model={rebuilt.choices['model']} ({type(rebuilt.net).__name__})"
    graph = graph_for(rebuilt, datamodule, samples)
    graph.metadata.update(
        format=fmt,
        run=run_metadata(rebuilt, ckpt_path),
        exported_with={"torch": torch.__version__},
        tolerance=TOLERANCE,
    )
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "model" + FORMATS[fmt])
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".tmp-model-", suffix=FORMATS[fmt])
    os.close(fd)
    try:
        t = time.perf_counter()
        write(graph, fmt, tmp, what)
        export_s = time.perf_counter() - t
        figures = check(graph, load_runner(fmt, tmp))
        if not figures["passed"]:
            agreement = figures.get("top1_agreement")
            raise UserError(
                f"the exported {fmt} file disagrees with the network on the test split (largest difference "
                f"{figures['max_abs_diff']:.3g}, allowed {TOLERANCE:g}"
                + (f"; same top class for {agreement:.2%}" if agreement is not None else "")
                + "), so it was not written; try another format=."
            )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    report = {
        "file": path,
        "format": fmt,
        "bytes": os.path.getsize(path),
        "export_s": round(export_s, 3),
        "check": figures,
        "inputs": graph.metadata["inputs"],
        "outputs": graph.metadata["outputs"],
        "run": graph.metadata["run"],
    }
    write_json_atomic(os.path.join(out_dir, "export.json"), report)
    return report


def read_metadata(path: str) -> dict:
    """The metadata of an exported file (any of the formats), as a dict."""
    if path.endswith(".onnx"):
        import onnx

        model = onnx.load(path, load_external_data=False)
        return {p.key: json.loads(p.value) for p in model.metadata_props}
    extra = {METADATA_FILE: ""}
    if path.endswith(".pt2"):
        torch.export.load(path, extra_files=extra)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            torch.jit.load(path, map_location="cpu", _extra_files=extra)
    return json.loads(extra[METADATA_FILE])
