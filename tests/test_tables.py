"""Tables (data=tabular and the presets): reading CSV and Parquet, what the spec publishes, the
preprocessing (standardised on train only, categories with an unknown index, missing values with
indicators), stratified splits, the refusals, training a classifier and a regressor, the views in
TensorBoard and the California housing download."""

from __future__ import annotations

import hashlib
import io
import tarfile

import numpy as np
import pandas as pd
import pytest
import torch

from datamodules.tables import MISSING, BundledTable, CaliforniaHousing, TableFile, encode_rows
from tests.helpers import command, run_train
from tests.helpers.tensorboard import read_events
from zoo.callbacks.logger import tensorboard_tag as tb
from zoo.errors import UserError

FAST = ["trainer.max_epochs=3", "callbacks.signals=null", "callbacks.gradient_norms=null", "callbacks.histograms=null"]


def customers(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """A made-up table with numbers, strings and gaps: whether a customer churns (from their plan,
    city, age and spend) and how much they spend."""
    rng = np.random.default_rng(seed)
    plan = rng.choice(["basic", "plus", "pro"], n)
    city = rng.choice(["Lyon", "Oslo", "Kyiv", "Lima"], n)
    age = rng.integers(18, 80, n).astype(float)
    spend = np.round(rng.gamma(2.0, 30.0, n) + (plan == "pro") * 40, 2)
    churn = np.where((plan == "basic") & (age < 40) | (spend < 20), "yes", "no")
    frame = pd.DataFrame(
        {"id": [f"c{i:04d}" for i in range(n)], "plan": plan, "city": city, "age": age, "spend": spend, "churn": churn}
    )
    frame["age"] = frame["age"].astype(object)
    frame.loc[::7, "age"] = np.nan  # gaps written three ways below
    return frame


def write_csv(path, frame: pd.DataFrame) -> None:
    text = frame.to_csv(index=False)
    lines = text.splitlines()
    # missing ages as an empty field, "?" and "NA" in turn
    out = [lines[0]]
    for i, line in enumerate(lines[1:]):
        cells = line.split(",")
        if cells[3] == "":
            cells[3] = ["", "?", "NA"][i % 3]
        out.append(",".join(cells))
    path.write_text("\n".join(out) + "\n")


def text_tag(events, tag: str) -> str:
    return events.Tensors(tb(f"{tag}/text_summary"))[-1].tensor_proto.string_val[0].decode()


@pytest.fixture
def churn_csv(tmp_path):
    path = tmp_path / "customers.csv"
    write_csv(path, customers())
    return path


def test_a_csv_with_strings_numbers_and_gaps_becomes_a_spec_and_tensors(churn_csv):
    dm = TableFile(path=str(churn_csv), target="churn", drop=["id"])
    dm.setup("fit")
    spec = dm.spec
    assert spec.kind == "table" and spec.task == "classify" and spec.class_names == ("no", "yes")
    # numbers first in file order, categories embedded, then the indicator of the one column with gaps
    assert list(zip(spec.columns, spec.column_kinds)) == [
        ("plan", "categorical"),
        ("city", "categorical"),
        ("age", "numeric"),
        ("spend", "numeric"),
        ("age", "missing"),
    ]
    assert spec.cardinalities == (4, 5, 0, 0, 0)  # 3 plans and 4 cities, each + the unknown index 0
    assert spec.categories == ("basic", "plus", "pro", "Kyiv", "Lima", "Lyon", "Oslo")
    assert spec.shape == (5,) and "id" not in spec.columns
    # standardised with the training rows only: their mean 0 and std 1; the imputed gaps sit at 0
    frame = customers()
    train = dm.rows["train"]
    spend = frame["spend"].to_numpy()[train]
    assert spec.column_mean[3] == pytest.approx(spend.mean()) and spec.column_std[3] == pytest.approx(spend.std())
    x_train = dm.splits["train"][0]
    assert float(x_train[:, 3].mean()) == pytest.approx(0, abs=1e-5)
    gaps = frame["age"].isna().to_numpy()
    x_all = torch.cat([dm.splits[s][0] for s in ("train", "val", "test")])
    rows = np.concatenate([dm.rows[s] for s in ("train", "val", "test")])
    assert torch.equal(x_all[:, 4], torch.from_numpy(gaps[rows].astype(np.float32)))  # "", "?" and "NA" alike
    assert (x_all[:, 2][x_all[:, 4] == 1] == 0).all()  # a missing age is the training mean
    # stratified: each split keeps the share of churners
    share = {s: float(dm.splits[s][1].float().mean()) for s in ("train", "val", "test")}
    assert max(share.values()) - min(share.values()) < 0.03
    assert {s: len(dm.splits[s][0]) for s in share} == {"train": 180, "val": 60, "test": 60}


def test_the_spec_alone_reproduces_the_inputs_and_unseen_categories_are_unknown(churn_csv):
    dm = TableFile(path=str(churn_csv), target="churn", drop=["id"])
    dm.setup("fit")
    frame = customers().iloc[dm.rows["test"]]
    x = encode_rows(frame.drop(columns=["churn"]), dm.spec)  # the spec as plain data: what a checkpoint holds
    assert torch.equal(torch.from_numpy(x), dm.splits["test"][0])
    new = pd.DataFrame(
        {"plan": ["enterprise", "pro"], "city": ["Oslo", None], "age": [None, "30"], "spend": [10, 99.5]}
    )
    x = encode_rows(new, dm.spec)
    assert x[0, 0] == 0 and x[1, 0] == 3  # a plan never seen in training: the unknown index
    assert x[1, 1] == 0  # a missing city, never missing in training: unknown too
    assert x[0, 4] == 1 and x[1, 4] == 0 and x[0, 2] == 0
    with pytest.raises(UserError, match="has no column 'spend'"):
        encode_rows(new.drop(columns=["spend"]), dm.spec)


def test_a_missing_category_seen_in_training_is_a_category_of_its_own(tmp_path):
    frame = customers(120)
    frame.loc[::5, "city"] = None
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    dm = TableFile(path=str(path), target="churn", drop=["id"])
    dm.setup("fit")
    assert MISSING in dm.spec.categories


def test_the_task_comes_from_the_target_and_data_task_overrides_it(churn_csv, tmp_path):
    dm = TableFile(path=str(churn_csv), target="spend", drop=["id"])
    dm.setup("fit")
    spec = dm.spec
    assert spec.task == "regress" and spec.num_classes == 0 and spec.target == "spend"
    y = dm.splits["train"][1]
    assert y.dtype == torch.float32 and float(y.mean()) == pytest.approx(0, abs=1e-5)  # standardised on train
    spend = customers()["spend"].to_numpy()[dm.rows["train"]]
    assert spec.target_mean == pytest.approx(spend.mean()) and spec.target_std == pytest.approx(spend.std())
    # whole numbers with few values are classes; data.task=regress makes them a value
    frame = customers()
    frame["stars"] = np.arange(len(frame)) % 5 + 1
    path = tmp_path / "stars.csv"
    frame.to_csv(path, index=False)
    dm = TableFile(path=str(path), target="stars", drop=["id"])
    dm.setup("fit")
    assert dm.spec.task == "classify" and dm.spec.class_names == ("1", "2", "3", "4", "5")
    dm = TableFile(path=str(path), target="stars", drop=["id"], task="regress")
    dm.setup("fit")
    assert dm.spec.task == "regress"
    with pytest.raises(UserError, match="needs a numeric target"):
        TableFile(path=str(path), target="plan", task="regress").setup("fit")


def test_parquet_and_categorical_override(tmp_path):
    frame = customers(150)
    frame["age"] = pd.to_numeric(frame["age"])
    frame["region"] = np.arange(150) % 3  # a code: numbers that are categories
    path = tmp_path / "customers.parquet"
    frame.to_parquet(path)
    dm = TableFile(path=str(path), target="churn", drop=["id"], categorical=["region"])
    dm.setup("fit")
    kinds = dict(zip(dm.spec.columns, dm.spec.column_kinds))
    assert kinds["region"] == "categorical" and kinds["age"] in ("numeric", "missing")
    assert dm.spec.cardinalities[dm.spec.columns.index("region")] == 4


@pytest.mark.parametrize(
    "text, target, message",
    [
        ("a,b,y\n1,2,x\n3,4,z\n", "label", "has no column 'label' \\(data.target\\); its columns are: a, b, y"),
        ("a,b,y\n1,2,x\n3,4,x\n5,6,x\n", "y", "has one class \\('x'\\) in every row"),
        (
            "a,b,y\n1,,x\n3,,z\n5,?,x\n",
            "y",
            "column 'b' of .* is empty in every row; leave it out with data.drop=\\[b\\]",
        ),
        ("a,b,y\n", "y", "has a header but no rows"),
        ("a,b,a,y\n1,2,3,x\n4,5,6,z\n", "y", "more than one column named 'a'"),
        ("", "y", "is empty"),
    ],
)
def test_a_table_that_cannot_be_learned_from_is_refused_in_one_sentence(tmp_path, text, target, message):
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        TableFile(path=str(path), target=target).setup("fit")


def test_train_py_refuses_a_bad_table_with_exit_status_2(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b,a,y\n1,2,3,x\n4,5,6,z\n")
    r = command("train.py", "data=tabular", f"data.path={path}", "data.target=y", f"hydra.run.dir={tmp_path / 'run'}")
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "more than one column named 'a'" in lines[-1]
    assert "Traceback" not in r.stderr


def test_the_bundled_presets():
    specs = {}
    for name in ("breast_cancer", "wine", "diabetes"):
        dm = BundledTable(name=name)
        dm.setup("fit")
        specs[name] = dm.spec
    assert specs["breast_cancer"].class_names == ("benign", "malignant") and specs["breast_cancer"].shape == (30,)
    assert specs["wine"].num_classes == 3 and specs["wine"].shape == (13,)
    assert specs["diabetes"].task == "regress" and specs["diabetes"].shape == (10,)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mlp", "transformer"])
def test_a_classifier_and_a_regressor_train_on_a_csv_and_their_checkpoints_rebuild(churn_csv, tmp_path, model):
    from zoo.run.rebuild import rebuild

    out = tmp_path / "cls"
    s = run_train(
        [
            "data=tabular",
            f"data.path={churn_csv}",
            "data.target=churn",
            "data.drop=[id]",
            f"model={model}",
            "trainer.max_epochs=15",
            "optimizer.lr=3e-3",
        ],
        out,
    )
    assert s["test/acc"] > 0.8, s  # the rule is learnable: well above the majority class
    rebuilt = rebuild(str(out / "checkpoints" / "last.ckpt"))
    assert rebuilt.spec.kind == "table" and rebuilt.spec.categories[:3] == ("basic", "plus", "pro")
    out = tmp_path / "reg"
    s = run_train(
        [
            "data=tabular",
            f"data.path={churn_csv}",
            "data.target=spend",
            "data.drop=[id,churn]",
            f"model={model}",
            *FAST,
        ],
        out,
    )
    assert {"test/mse", "test/mae", "test/r2"} <= set(s) and s["test/mse"] > 0
    rebuilt = rebuild(str(out / "checkpoints" / "last.ckpt"))
    assert rebuilt.task == "regress" and rebuilt.spec.target == "spend"


def test_a_regression_on_diabetes_logs_mse_mae_r2_the_scatter_and_the_importance(tmp_path):
    out = tmp_path / "run"
    s = run_train(["data=diabetes", "model=mlp", "trainer.max_epochs=1", *FAST[1:]], out)
    assert {"val/mse", "val/mae", "val/r2", "test/r2"} <= set(s)
    events = read_events(out)
    images = events.Tags()["images"]
    assert {tb("test/predicted_vs_true"), tb("val/predicted_vs_true"), tb("test/permutation_importance")} <= set(images)
    text = text_tag(events, "test/permutation_importance")
    assert "| bmi |" in text and "R2" in text  # every column of the table, scored by R2


@pytest.mark.slow
def test_permutation_importance_ranks_the_columns_a_classifier_uses(churn_csv, tmp_path):
    out = tmp_path / "run"
    run_train(
        [
            "data=tabular",
            f"data.path={churn_csv}",
            "data.target=churn",
            "data.drop=[id]",
            "trainer.max_epochs=20",
            "optimizer.lr=3e-3",
            "callbacks.permutation_importance.repeats=3",
        ],
        out,
    )
    text = text_tag(read_events(out), "test/permutation_importance")
    rows = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ") and "column" not in line]
    assert sorted(rows) == ["age", "city", "plan", "spend"]
    assert "city" not in rows[:2]  # churn follows plan, age and spend; the city is noise


def test_california_housing_downloads_from_a_mirror_with_its_checksum(http_server, tmp_path):
    www, url, asked = http_server
    rng = np.random.default_rng(0)
    n = 200
    rows = np.column_stack(
        [
            rng.uniform(-124, -114, n),
            rng.uniform(32, 42, n),
            rng.integers(1, 52, n),
            rng.integers(500, 5000, n),
            rng.integers(100, 1000, n),
            rng.integers(300, 3000, n),
            rng.integers(100, 1000, n),
            rng.uniform(0.5, 15, n),
            rng.uniform(15000, 500000, n),
        ]
    )
    data = "\n".join(",".join(f"{v:.4f}" for v in row) for row in rows).encode()
    blob = io.BytesIO()
    with tarfile.open(fileobj=blob, mode="w:gz") as tar:
        info = tarfile.TarInfo("CaliforniaHousing/cal_housing.data")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (www / "cal_housing.tgz").write_bytes(blob.getvalue())
    sha = "sha256:" + hashlib.sha256(blob.getvalue()).hexdigest()
    dm = CaliforniaHousing(data_dir=str(tmp_path / "data"), mirror=url, checksum=sha)
    dm.prepare_data()
    dm.setup("fit")
    assert asked == ["/cal_housing.tgz"]
    spec = dm.spec
    assert spec.task == "regress" and spec.columns[:3] == ("MedInc", "HouseAge", "AveRooms") and spec.shape == (8,)
    truth = torch.cat([dm.splits[s][1] for s in ("train", "val", "test")]) * spec.target_std + spec.target_mean
    assert float(truth.max()) <= 5.0 + 1e-4  # in $100,000
    asked.clear()
    CaliforniaHousing(data_dir=str(tmp_path / "data"), mirror=url, checksum=sha).prepare_data()
    assert asked == []  # present: not downloaded again
    with pytest.raises(UserError, match="not the expected"):
        CaliforniaHousing(data_dir=str(tmp_path / "other"), mirror=url, checksum="sha256:" + "0" * 64).prepare_data()
    assert not (tmp_path / "other" / "california_housing" / "cal_housing.tgz").exists()
