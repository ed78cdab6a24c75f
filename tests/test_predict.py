"""predict.py and ``zoo.load(ckpt).predict(x)``: a trained model answering new inputs as a user gives
them (image files of any size and mode, text files and CSVs, a dated CSV), with the accuracy the run
reported on the same examples, timestamps and units of the user's file, one sentence and exit status
2 for what does not fit, and no CSV left behind by a refusal."""

from __future__ import annotations

import csv
import datetime as dt
import os

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from tests.helpers import ROOT, cli, command, run_train
from tests.helpers.sequences import ag_news_csv, series_values

FIXTURES = ROOT / "tests" / "fixtures" / "checkpoints"
pytestmark = pytest.mark.usefixtures("one_thread")


def digits_test_split():
    """The 360 test images of data=digits as uint8 (N, 8, 8) and their labels, as the datamodule has them."""
    from datamodules.images import DigitsData

    _, _, x, y = DigitsData().load_raw()
    return x[:, 0].numpy(), y.numpy()


def read_rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def assert_refused(result, *phrases: str) -> str:
    """Exit status 2, one ``error:`` sentence holding every phrase, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for phrase in phrases:
        assert phrase in lines[-1], (phrase, lines[-1])
    return lines[-1]


# ---- image classifier ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_cnn(tmp_path_factory):
    """A small CNN trained on data=digits: (its best checkpoint, its metrics)."""
    out = tmp_path_factory.mktemp("digits_cnn")
    metrics = run_train(
        [
            "model=cnn",
            "data=digits",
            "model.channels=[8,16]",
            "model.hidden=32",
            "model.dropout=0",
            "optimizer.lr=0.01",
            "trainer.max_epochs=3",
        ],
        out / "run",
    )
    return metrics["best_checkpoint"], metrics


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory):
    """The digits test images written as a user has them: PNGs at their own 8x8 size (grey) in class
    folders; and the same images as JPEGs and PNGs of other sizes and modes."""
    folder = tmp_path_factory.mktemp("digit_files")
    x, y = digits_test_split()
    png, mixed = folder / "png", folder / "mixed"
    mixed.mkdir()
    modes = ["RGB", "RGBA", "P", "I;16", "LA", "CMYK"]
    for i, (pixels, label) in enumerate(zip(x, y)):
        (png / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, "L").save(png / str(label) / f"{i:03d}.png")
        if i < 60:
            size = (8 + 4 * (i % 7), 8 + 3 * (i % 5))
            img = Image.fromarray(pixels, "L").resize(size, Image.Resampling.BILINEAR)
            mode = modes[i % len(modes)]
            if mode == "I;16":
                img = Image.fromarray(np.asarray(img).astype(np.uint16) * 257)
            else:
                img = img.convert(mode)
            ext = ".jpg" if mode in ("RGB", "CMYK") else ".png"
            img.save(mixed / f"{i:03d}_{label}{ext}")
    return png, mixed, x, y


@pytest.mark.slow
def test_a_folder_of_pngs_gets_the_test_accuracy_of_the_run(digits_cnn, digit_files, tmp_path):
    ckpt, metrics = digits_cnn
    png, _, _, _ = digit_files
    r = command("predict.py", f"ckpt_path={ckpt}", f"input={png}", f"out={tmp_path / 'out'}")
    assert r.returncode == 0, r.stderr
    assert "Predicted 360 images" in r.stdout
    rows = read_rows(tmp_path / "out" / "predictions.csv")
    assert list(rows[0]) == [
        "path",
        "label",
        "probability",
        "label_2",
        "probability_2",
        "label_3",
        "probability_3",
        "error",
    ]
    assert len(rows) == 360 and all(r["error"] == "" for r in rows)
    truth = [os.path.basename(os.path.dirname(r["path"])) for r in rows]
    accuracy = np.mean([r["label"] == t for r, t in zip(rows, truth)])
    assert accuracy == pytest.approx(metrics["test/acc"], abs=1e-6)  # metrics.json holds a float32
    p = np.array([[float(r["probability"]), float(r["probability_2"]), float(r["probability_3"])] for r in rows])
    assert (np.diff(p, axis=1) <= 0).all() and (p > 0).all() and (p.sum(axis=1) <= 1 + 1e-6).all()
    command_file = (tmp_path / "out" / "command.txt").read_text()
    assert command_file.startswith("python predict.py ckpt_path=") and f"input={png}" in command_file


@pytest.mark.slow
def test_jpegs_and_pngs_of_any_size_and_mode_are_read_and_labelled(digits_cnn, digit_files, tmp_path):
    ckpt, _ = digits_cnn
    _, mixed, _, _ = digit_files
    r = command("predict.py", f"ckpt_path={ckpt}", f"input={mixed}/*", f"out={tmp_path / 'p.csv'}", "top_k=2")
    assert r.returncode == 0, r.stderr
    rows = read_rows(tmp_path / "p.csv")
    assert len(rows) == 60 and all(r["error"] == "" for r in rows)
    assert set(rows[0]) == {"path", "label", "probability", "label_2", "probability_2", "error"}
    truth = [os.path.basename(r["path"]).split("_")[1].split(".")[0] for r in rows]
    # Blurred by the round trip through other sizes: most, not all, keep their label.
    assert np.mean([r["label"] == t for r, t in zip(rows, truth)]) >= 0.6


@pytest.mark.slow
def test_a_folder_with_broken_images_predicts_the_rest_and_lists_them(digits_cnn, digit_files, tmp_path):
    ckpt, _ = digits_cnn
    png, _, _, _ = digit_files
    folder = tmp_path / "photos" / "deeper"
    folder.mkdir(parents=True)
    for name in sorted(os.listdir(png / "3"))[:5]:
        (folder / name).write_bytes((png / "3" / name).read_bytes())
    whole = (folder / name).read_bytes()
    (folder / "truncated.png").write_bytes(whole[: len(whole) // 2])
    (folder / "notes.txt").write_text("not an image\n")
    (folder / ".hidden.png").write_bytes(b"hidden files are not inputs")
    r = command("predict.py", f"ckpt_path={ckpt}", f"input={tmp_path / 'photos'}", f"out={tmp_path / 'out'}")
    assert r.returncode == 0, r.stderr
    assert "Predicted 5 images" in r.stdout and "2 of 7 could not be read" in r.stderr
    rows = {os.path.basename(row["path"]): row for row in read_rows(tmp_path / "out" / "predictions.csv")}
    assert len(rows) == 7 and ".hidden.png" not in rows
    for bad in ("truncated.png", "notes.txt"):
        assert rows[bad]["error"] and rows[bad]["label"] == "" and rows[bad]["probability"] == ""
    assert all(row["label"] and not row["error"] for n, row in rows.items() if n.endswith(".png") and n[0].isdigit())


@pytest.mark.slow
def test_image_refusals_name_the_input_and_leave_no_csv(digits_cnn, tmp_path):
    ckpt, _ = digits_cnn
    out = tmp_path / "out"
    text = tmp_path / "photo.png"
    text.write_text("this is not a picture")
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.jpg").write_bytes(b"\xff\xd8\xff nothing")
    cases = [
        ([f"input={text}"], [str(text), "cannot be read as an image"]),
        ([f"input={empty}"], [str(empty), "has no files"]),
        ([f"input={tmp_path}/*.gif"], ["no file matches", "*.gif"]),
        ([f"input={broken}"], ["none of the 1 files could be read", "a.jpg"]),
        ([], ["give the images to label with input="]),
    ]
    for args, phrases in cases:
        assert_refused(command("predict.py", f"ckpt_path={ckpt}", f"out={out}", *args), *phrases)
        assert not out.exists()
    assert_refused(command("predict.py", f"ckpt_path={ckpt}", f"input={tmp_path}/nowhere"), "no file or folder")


@pytest.mark.slow
def test_the_python_api_reads_arrays_tensors_pil_images_and_paths_alike(digits_cnn, digit_files):
    from zoo import load

    ckpt, _ = digits_cnn
    png, _, x, y = digit_files
    model = load(ckpt)
    assert model.class_names == [str(i) for i in range(10)]
    files = [png / str(label) / f"{i:03d}.png" for i, label in enumerate(y[:40])]
    by_path = model.predict([str(f) for f in files])
    by_array = model.predict(x[:40])  # numpy (N, H, W) uint8
    by_tensor = model.predict(torch.from_numpy(x[:40])[:, None])  # torch (N, C, H, W)
    by_float = model.predict(torch.from_numpy(x[:40])[:, None].float() / 255)
    by_pil = model.predict([Image.fromarray(a, "L") for a in x[:40]])
    assert list(by_path["path"]) == [str(f) for f in files]
    assert list(by_array["index"]) == list(range(40))
    for other in (by_array, by_tensor, by_float, by_pil):
        assert list(other["label"]) == list(by_path["label"])
        np.testing.assert_allclose(other["probability"], by_path["probability"], rtol=1e-5)
    one = model.predict(Image.fromarray(x[0], "L").resize((80, 80)).convert("RGB"), top_k=10)
    assert len(one) == 1 and one.filter(like="probability").sum(axis=1).iloc[0] == pytest.approx(1, abs=1e-5)
    probabilities = model.outputs(model.read(x[:40]))
    assert probabilities.shape == (40, 10)
    from zoo.errors import UserError

    with pytest.raises(UserError, match="float pixels from -1 to 1"):
        model.predict(torch.linspace(-1, 1, 64).reshape(1, 1, 8, 8))
    with pytest.raises(UserError, match="cannot read a dict as an image"):
        model.predict({"a": 1})


# ---- text classifier -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def news_classifier(tmp_path_factory):
    """A small CNN trained on AG News files of the real format; (checkpoint, metrics, test texts, labels)."""
    data = tmp_path_factory.mktemp("news")
    (data / "ag_news").mkdir()
    (data / "ag_news" / "train.csv").write_bytes(ag_news_csv(400, seed=1))
    (data / "ag_news" / "test.csv").write_bytes(ag_news_csv(80, seed=2))
    metrics = run_train(
        [
            "model=cnn",
            "data=ag_news",
            "data.val_size=40",
            "data.max_length=24",
            "model.channels=[8,8]",
            "trainer.max_epochs=3",
        ],
        data / "run",
        data_dir=data,
    )
    rows = list(csv.reader(ag_news_csv(80, seed=2).decode().splitlines()))
    texts = [row[1] + " " + row[2] for row in rows]
    labels = ["World", "Sports", "Business", "Sci/Tech"]
    return metrics["best_checkpoint"], metrics, texts, [labels[int(row[0]) - 1] for row in rows]


@pytest.mark.slow
def test_a_text_file_and_a_csv_column_get_the_test_accuracy_of_the_run(news_classifier, tmp_path):
    ckpt, metrics, texts, truth = news_classifier
    lines = tmp_path / "news.txt"
    lines.write_text("\n".join(texts[:40]) + "\n\n" + "\n".join(texts[40:]) + "\n")  # a blank line is no example
    r = command("predict.py", f"ckpt_path={ckpt}", f"input={lines}", f"out={tmp_path / 'a'}")
    assert r.returncode == 0, r.stderr
    rows = read_rows(tmp_path / "a" / "predictions.csv")
    assert [row["text"] for row in rows] == texts and rows[40]["line"] == "42"
    assert np.mean([row["label"] == t for row, t in zip(rows, truth)]) == pytest.approx(metrics["test/acc"])
    table = tmp_path / "news.csv"
    pd.DataFrame({"id": range(len(texts)), "body": texts}).to_csv(table, index=False)
    r = command("predict.py", f"ckpt_path={ckpt}", f"input={table}", "column=body", f"out={tmp_path / 'b.csv'}")
    assert r.returncode == 0, r.stderr
    assert [row["label"] for row in read_rows(tmp_path / "b.csv")] == [row["label"] for row in rows]
    assert_refused(
        command("predict.py", f"ckpt_path={ckpt}", f"input={table}", f"out={tmp_path / 'c'}"),
        str(table),
        "id, body",
        "column=NAME",
    )
    assert_refused(
        command("predict.py", f"ckpt_path={ckpt}", f"input={table}", "column=title", f"out={tmp_path / 'c'}"),
        "no column 'title'",
    )
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9 prices rise\n".encode("latin-1"))
    assert_refused(command("predict.py", f"ckpt_path={ckpt}", f"input={latin}", f"out={tmp_path / 'c'}"), "UTF-8")
    assert not (tmp_path / "c").exists()

    from zoo import load

    model = load(ckpt)
    one = model.predict(texts[0])
    assert one["label"][0] == rows[0]["label"] and one["text"][0] == texts[0]
    many = model.predict(texts)
    assert list(many["label"]) == [row["label"] for row in rows]
    frame = model.predict(pd.DataFrame({"body": texts, "n": range(len(texts))}), column="body")
    assert list(frame["label"]) == list(many["label"])
    empty = model.predict(["", "oil shares bank"])
    assert empty["error"][0] == "no words in this text" and empty["label"][1]


# ---- forecaster ----------------------------------------------------------------------------------


def dated_csv(path, n: int, start: str, freq: str, offset: float = 1000.0, seed: int = 0) -> pd.DataFrame:
    """A dated CSV of three channels (load, temp, OT) far from zero (``offset``): values in a file's
    own units, which a forecast must come back in."""
    values = series_values(n, 3, 12, seed) * 10 + offset
    frame = pd.DataFrame(values.round(4), columns=["load", "temp", "OT"])
    frame.insert(0, "date", pd.date_range(start, periods=n, freq=freq))
    frame.to_csv(path, index=False)
    return frame


@pytest.fixture(scope="module")
def csv_forecaster(tmp_path_factory):
    """model=linear trained on a daily CSV (lookback 24, horizon 8): (checkpoint, the training file)."""
    folder = tmp_path_factory.mktemp("forecaster")
    dated_csv(folder / "train.csv", 400, "2020-01-01", "D")
    metrics = run_train(
        [
            "model=linear",
            "data=csv",
            f"data.path={folder / 'train.csv'}",
            "data.lookback=24",
            "data.horizon=8",
            "trainer.max_epochs=2",
        ],
        folder / "run",
    )
    return metrics["best_checkpoint"], folder / "train.csv"


def expected_forecast(ckpt, history: np.ndarray) -> np.ndarray:
    """The network's forecast of ``history`` (lookback, C) worked out by hand: z-scores with the stored
    scaler, the network, and back to the file's units."""
    from zoo.run.rebuild import rebuild

    rebuilt = rebuild(str(ckpt))
    spec = rebuilt.spec
    mean, std = np.array(spec.channel_mean), np.array(spec.channel_std)
    x = torch.from_numpy((history - mean) / std).float()[None]
    with torch.no_grad():
        z = rebuilt.net.eval()(x)[0].double().numpy()
    k = spec.target_channels
    return z * std[-k:] + mean[-k:]


@pytest.mark.slow
@pytest.mark.parametrize(
    "freq, step",
    [("h", dt.timedelta(hours=1)), ("D", dt.timedelta(days=1)), ("W-MON", dt.timedelta(weeks=1))],
    ids=["hourly", "daily", "weekly"],
)
def test_a_dated_csv_gets_the_next_horizon_in_its_own_timestamps_and_units(csv_forecaster, freq, step, tmp_path):
    ckpt, _ = csv_forecaster
    frame = dated_csv(tmp_path / "recent.csv", 50, "2023-03-06", freq, seed=3)
    shuffled = tmp_path / "shuffled.csv"
    frame.sample(frac=1, random_state=0).to_csv(shuffled, index=False)  # rows are put in date order first
    r = command("predict.py", f"ckpt_path={ckpt}", f"input={shuffled}", f"out={tmp_path / 'out'}")
    assert r.returncode == 0, r.stderr
    assert "Forecast of the next 8 steps" in r.stdout
    result = pd.read_csv(tmp_path / "out" / "predictions.csv", parse_dates=["date"])
    assert list(result.columns) == ["date", "load", "temp", "OT"] and len(result) == 8
    last = frame["date"].iloc[-1]
    assert list(result["date"]) == [last + step * (i + 1) for i in range(8)]
    want = expected_forecast(ckpt, frame[["load", "temp", "OT"]].to_numpy()[-24:])
    np.testing.assert_allclose(result[["load", "temp", "OT"]].to_numpy(), want, rtol=1e-5, atol=1e-3)
    assert result["OT"].between(900, 1100).all()  # the file's units, not z-scores

    from zoo import load

    model = load(ckpt)
    api = model.predict(frame)
    assert list(api["date"]) == list(result["date"])
    np.testing.assert_allclose(api[["load", "temp", "OT"]].to_numpy(), result[["load", "temp", "OT"]], rtol=1e-5)
    arrays = model.predict(np.stack([frame[["load", "temp", "OT"]].to_numpy()] * 2))
    assert list(arrays.columns) == ["series", "step", "load", "temp", "OT"] and len(arrays) == 16
    np.testing.assert_allclose(arrays[arrays.series == 1][["load", "temp", "OT"]], want, rtol=1e-5, atol=1e-3)


@pytest.mark.slow
def test_forecast_refusals_name_the_file_row_or_column_and_leave_no_csv(csv_forecaster, tmp_path):
    ckpt, _ = csv_forecaster
    frame = dated_csv(tmp_path / "ok.csv", 40, "2023-01-01", "D")
    out = tmp_path / "out"
    short = tmp_path / "short.csv"
    frame.iloc[:10].to_csv(short, index=False)
    no_temp = tmp_path / "no_temp.csv"
    frame.drop(columns="temp").to_csv(no_temp, index=False)
    text = tmp_path / "text.csv"
    bad = frame.astype({"load": object})
    bad.loc[30, "load"] = "n/a?"
    bad.to_csv(text, index=False)
    gap = tmp_path / "gap.csv"
    frame.astype({"OT": object}).assign(OT=lambda f: f.OT.where(f.index != 12, None)).to_csv(gap, index=False)
    cases = [
        (short, [str(short), "10 rows of history", "lookback"]),
        (no_temp, [str(no_temp), "no column 'temp'"]),
        (text, [str(text), "column 'load'", "line 32", "n/a?"]),
        (gap, [str(gap), "column 'OT'", "line 14"]),
    ]
    for path, phrases in cases:
        assert_refused(command("predict.py", f"ckpt_path={ckpt}", f"input={path}", f"out={out}"), *phrases)
        assert not out.exists()
    # Trained on a file of the user's: its stored path is never read again.
    assert_refused(command("predict.py", f"ckpt_path={ckpt}", f"out={out}"), "give the CSV file", "input=")
    assert sorted(os.listdir(tmp_path)) == sorted(["ok.csv", "short.csv", "no_temp.csv", "text.csv", "gap.csv"])


def test_without_input_a_generated_series_is_forecast_after_its_end(tmp_path):
    r = command(
        "predict.py", f"ckpt_path={FIXTURES / 'forecast_lstm.ckpt'}", f"out={tmp_path / 'f.csv'}", "batch_size=7"
    )
    assert r.returncode == 0, r.stderr
    result = pd.read_csv(tmp_path / "f.csv")
    assert list(result.columns) == ["step", "sine0", "sine1", "sine2"] and list(result.step) == list(range(1, 17))
    from datamodules.series import SineData
    from zoo import load

    values = SineData().load()[0]  # the fixture's data=sine, as conf/ builds it
    direct = load(FIXTURES / "forecast_lstm.ckpt").predict(values[-64:])
    np.testing.assert_allclose(direct[["sine0", "sine1", "sine2"]], result[["sine0", "sine1", "sine2"]], rtol=1e-5)


# ---- what predict.py does not do ----------------------------------------------------------------


@pytest.mark.parametrize(
    "fixture, phrases",
    [
        ("language_model_lstm", ["'language_model' task", "python generate.py ckpt_path="]),
        ("adversarial_gan", ["'adversarial' task", "python generate.py ckpt_path="]),
    ],
)
def test_language_models_and_gans_are_pointed_to_generate_py(fixture, phrases, tmp_path):
    r = command("predict.py", f"ckpt_path={FIXTURES / f'{fixture}.ckpt'}", f"input={tmp_path}", f"out={tmp_path}/o")
    assert_refused(r, *phrases)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["top_k=0"], "top_k must be a positive whole number, got 0"),
        (["batch_size=1.5"], "batch_size must be a positive whole number"),
        (["input=/no/such/place"], "input=/no/such/place: no file or folder there"),
        ([], "ckpt_path must be given"),
    ],
)
def test_predict_options_are_checked_before_the_checkpoint_is_read(args, phrase):
    ckpt = [] if not args else ["ckpt_path=/no/such.ckpt"]
    assert_refused(command("predict.py", *ckpt, *args), phrase)


def test_help_lists_predicts_own_options_and_import_zoo_stays_light():
    r = cli("predict.py", "--help")
    assert r.returncode == 0
    for option in ("ckpt_path:", "input:", "out:", "column:", "top_k:", "batch_size:", "data_dir:"):
        assert option in r.stdout
    assert "generate.py" in r.stdout
    light = cli("-c", "import sys, zoo; print('torch' in sys.modules)")
    assert light.stdout.strip() == "False", light.stderr
