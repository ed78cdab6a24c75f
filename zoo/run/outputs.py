"""A network's outputs -> the rows of predictions.csv (and of ``zoo.load(ckpt).predict(x)``'s
DataFrame), by the task that trained it: ``ROWS[task]``.

A rows function takes the outputs of the rows that were read (what the task's ``predict_step``
returns, stacked), the ``Inputs`` they came from (zoo/run/inputs.py) and the data spec, and returns a
DataFrame: the columns that name each input first, then what the model says, in the data's own
terms (class names, timestamps, the file's units). A classifier's rows keep the inputs that could
not be read, with their reason in the ``error`` column.
"""

from __future__ import annotations

import importlib

import numpy as np

from zoo.errors import UserError

# task name -> "module:function" (imported only when used)
ROWS = {
    "classify": "zoo.run.outputs:classify_rows",
    "forecast": "zoo.run.outputs:forecast_rows",
}

# Tasks whose checkpoints make things rather than answer inputs: where to go instead.
ELSEWHERE = {
    "language_model": "a language model continues text rather than labelling inputs; sample from it with "
    'python generate.py ckpt_path={ckpt} prompt="ROMEO:"',
    "adversarial": "a GAN draws new images rather than labelling inputs; sample from it with "
    "python generate.py ckpt_path={ckpt}",
}


def rows_function(task: str, ckpt: str = "..."):
    """The rows function of ``task``, or the sentence saying what to do with such a checkpoint."""
    if task in ELSEWHERE:
        raise UserError(f"{ckpt} was trained by the '{task}' task: {ELSEWHERE[task].format(ckpt=ckpt)}.")
    if task not in ROWS:
        raise UserError(
            f"{ckpt} was trained by the '{task}' task, which predict.py cannot turn into rows yet "
            f"(it knows {', '.join(sorted(ROWS))}); evaluate it with eval.py instead."
        )
    module, _, name = ROWS[task].partition(":")
    return getattr(importlib.import_module(module), name)


def classify_rows(outputs, inputs, spec, options):
    """One row per input: its name, ``label`` (the class name) and its ``probability``, then the next
    ``top_k - 1`` classes as ``label_2``, ``probability_2``, ...; and ``error``: why an input could
    not be read (its other columns then empty)."""
    import pandas as pd

    names = list(spec.class_names) or [str(i) for i in range(spec.num_classes)]
    k = max(1, min(int(options.top_k), len(names)))
    n = len(inputs)
    table = {key: list(values) for key, values in inputs.columns.items()}
    labels = np.full((n, k), None, dtype=object)
    probabilities = np.full((n, k), np.nan)
    read = inputs.read
    if read:
        top = outputs.float().topk(k, dim=1)
        labels[read] = np.asarray(names, dtype=object)[top.indices.cpu().numpy()]
        probabilities[read] = top.values.cpu().double().numpy()
    for j in range(k):
        suffix = "" if j == 0 else f"_{j + 1}"
        table[f"label{suffix}"] = list(labels[:, j])
        table[f"probability{suffix}"] = list(probabilities[:, j])
    table["error"] = [e or "" for e in inputs.errors]
    return pd.DataFrame(table)


def forecast_rows(outputs, inputs, spec, options):
    """``horizon`` rows per series: its name (an array's ``series`` index), ``date`` (the timestamps
    after its last row, at its own frequency) or, for a series without dates, ``step`` (1 is the first
    step after its last row), then one column per forecast channel in the data's own units."""
    import pandas as pd

    names = list(spec.channel_names)
    k = spec.target_channels or len(names)
    targets = names[-k:] if names else [f"target{i}" for i in range(k)]
    values = outputs.float().cpu().double().numpy()  # (series, horizon, targets)
    frames = []
    for i, stamps in enumerate(inputs.extra.get("timestamps") or [None] * len(values)):
        frame = {key: [column[i]] * spec.horizon for key, column in inputs.columns.items()}
        if stamps is not None:
            frame["date"] = stamps
        else:
            frame["step"] = np.arange(1, spec.horizon + 1)
        for j, name in enumerate(targets):
            frame[name] = values[i, :, j]
        frames.append(pd.DataFrame(frame))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["step", *targets])
