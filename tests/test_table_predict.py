"""predict.py and ``zoo.load(ckpt).predict(x)`` on tables: new rows read from a CSV, Parquet file or
DataFrame of the trained columns, encoded from the checkpoint's spec alone (unseen categories ->
unknown, gaps -> the training mean), the target column optional; a classifier's labels and
probabilities, a regression's value in the target's own units."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from datamodules.tables import TableFile
from tests.helpers import command, run_train
from tests.test_tables import customers, write_csv
from zoo.errors import UserError
from zoo.run.inputs import PredictOptions
from zoo.run.tables import read_tables

pytestmark = pytest.mark.usefixtures("one_thread")
QUICK = ["callbacks.signals=null", "callbacks.gradient_norms=null", "callbacks.histograms=null", "optimizer.lr=3e-3"]


def best_checkpoint(run) -> str:
    return str(next((run / "checkpoints").glob("best-*.ckpt")))


def test_the_table_reader_encodes_new_rows_from_the_spec_and_needs_no_target(tmp_path):
    path = tmp_path / "customers.csv"
    write_csv(path, customers())
    dm = TableFile(path=str(path), target="churn", drop=["id"])
    dm.setup("fit")
    new = pd.DataFrame(
        {"id": ["n1", "n2"], "plan": ["pro", "platinum"], "city": ["Oslo", "Rome"], "age": [33, None], "spend": [5, 80]}
    )
    inputs = read_tables(new, dm.spec, PredictOptions(data={}, data_dir=str(tmp_path)))
    assert inputs.x.shape == (2, 5) and inputs.columns == {"row": [0, 1]} and inputs.errors == [None, None]
    assert inputs.x[1, 0] == 0 and inputs.x[1, 1] == 0  # a plan and a city never seen in training: unknown
    assert inputs.x[1, 4] == 1 and inputs.x[1, 2] == 0  # a missing age: the training mean, flagged
    with_target = read_tables(new.assign(churn=["no", "yes"]), dm.spec, PredictOptions(data={}, data_dir="."))
    assert with_target.columns["churn"] == ["no", "yes"]  # kept beside the prediction when given
    with pytest.raises(UserError, match="has no column 'spend'"):
        read_tables(new.drop(columns=["spend"]), dm.spec, PredictOptions(data={}, data_dir="."))


@pytest.mark.slow
def test_predict_on_a_csv_gives_the_runs_test_accuracy_and_reads_unseen_categories(tmp_path):
    from zoo import load

    frame = customers()
    path = tmp_path / "customers.csv"
    write_csv(path, frame)
    run = tmp_path / "run"
    s = run_train(
        ["data=tabular", f"data.path={path}", "data.target=churn", "data.drop=[id]", "trainer.max_epochs=10", *QUICK],
        run,
    )
    dm = TableFile(path=str(path), target="churn", drop=["id"])
    dm.setup("fit")
    test_rows = dm.frame_of("test")
    predictor = load(best_checkpoint(run))
    out = predictor.predict(test_rows.drop(columns=["churn"]))
    assert list(out.columns[:3]) == ["row", "label", "probability"]
    accuracy = float((out["label"].to_numpy() == test_rows["churn"].to_numpy()).mean())
    assert accuracy == pytest.approx(s["test/acc"], abs=1e-6)  # the same rows, the same answers
    # predict.py on a CSV without the target, with a category never seen in training
    new = tmp_path / "new.csv"
    new.write_text("id,plan,city,age,spend\nn1,pro,Oslo,45,120\nn2,gold,Atlantis,?,3\n")
    r = command("predict.py", f"ckpt_path={best_checkpoint(run)}", f"input={new}", f"out={tmp_path / 'p.csv'}")
    assert r.returncode == 0, r.stderr
    rows = pd.read_csv(tmp_path / "p.csv")
    assert len(rows) == 2 and set(rows["label"]) <= {"yes", "no"} and rows["probability"].between(0.5, 1).all()
    bad = tmp_path / "bad.csv"
    bad.write_text("id,plan,city,age\nn1,pro,Oslo,45\n")
    r = command("predict.py", f"ckpt_path={best_checkpoint(run)}", f"input={bad}", f"out={tmp_path / 'q.csv'}")
    assert r.returncode == 2 and "has no column 'spend'" in r.stderr and not (tmp_path / "q.csv").exists()


@pytest.mark.slow
def test_a_regression_predicts_values_in_the_targets_units(tmp_path):
    from zoo import load

    frame = customers()
    path = tmp_path / "customers.csv"
    write_csv(path, frame)
    run = tmp_path / "run"
    s = run_train(
        [
            "data=tabular",
            f"data.path={path}",
            "data.target=spend",
            "data.drop=[id,churn]",
            "trainer.max_epochs=5",
            *QUICK,
        ],
        run,
    )
    dm = TableFile(path=str(path), target="spend", drop=["id", "churn"])
    dm.setup("fit")
    test_rows = dm.frame_of("test")
    out = load(best_checkpoint(run)).predict(test_rows)
    assert list(out.columns) == ["row", "spend", "prediction"]
    truth = pd.to_numeric(test_rows["spend"]).to_numpy()
    mse = float(np.mean((out["prediction"].to_numpy() - truth) ** 2))
    assert mse == pytest.approx(s["test/mse"], rel=1e-4)  # the run's test MSE, in the target's units
