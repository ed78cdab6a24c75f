"""predict.py and ``zoo.load(ckpt).predict(x)`` for tables: the reader of kind "table" (READERS in
zoo/run/inputs.py) and the rows of a regression (ROWS["regress"] in zoo/run/outputs.py); a
classifier's rows are the classifier's (class names and probabilities).

The rows are encoded from the checkpoint's spec alone (``datamodules.tables.encode_rows``): the
trained columns standardised with the training split's scalers, a category never seen in training
mapped to "unknown", a missing value to the training mean with its indicator. Extra columns are
ignored; the target column may be there or not (when it is, it is kept beside the prediction).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from zoo.errors import UserError
from zoo.run.inputs import Inputs, PredictOptions


def read_tables(x, spec, options: PredictOptions) -> Inputs:
    """``x``: a CSV or Parquet file (a path), a pandas DataFrame, or a dict of columns / list of
    row dicts. Returns every row, encoded as in training, named by ``row`` (0-based, in the order
    given) and, where the input has it, the true target (``<target>``)."""
    import pandas as pd

    from datamodules.tables import encode_rows, read_table

    if isinstance(x, (str, os.PathLike)):
        where = str(x)
        frame = read_table(os.path.expanduser(where))
    elif isinstance(x, pd.DataFrame):
        where, frame = "the DataFrame", x
    elif isinstance(x, (dict, list)):
        where, frame = "the rows given", pd.DataFrame(x)
    elif x is None:
        raise UserError(
            "give the rows to predict: input=FILE (a CSV or Parquet file with the columns the model was "
            "trained on), or a DataFrame to zoo.load(ckpt).predict."
        )
    else:
        raise UserError(
            f"a table model predicts from a CSV or Parquet file, a DataFrame or a dict of columns, not a "
            f"{type(x).__name__}; give one of those."
        )
    frame = frame.copy()
    frame.columns = [str(c).strip() for c in frame.columns]
    if len(frame) == 0:
        raise UserError(f"{where} has no rows; give at least one row to predict.")
    features = torch.from_numpy(encode_rows(frame, spec, where))
    columns: dict[str, list] = {"row": list(range(len(frame)))}
    if spec.target and spec.target in frame.columns:
        columns[spec.target] = frame[spec.target].tolist()
    return Inputs(x=features, columns=columns, errors=[None] * len(frame), noun="rows")


def regress_rows(outputs, inputs: Inputs, spec, options: PredictOptions):
    """One row per input: its ``row`` (and true target, when given), then ``prediction``: the
    predicted value in the target's own units."""
    import pandas as pd

    table = {key: list(values) for key, values in inputs.columns.items()}
    values = np.full(len(inputs), np.nan)
    read = inputs.read
    if read:
        values[read] = outputs.float().reshape(len(read), -1)[:, 0].cpu().double().numpy()
    table["prediction"] = list(values)
    return pd.DataFrame(table)
