"""serve.py: the real server (LitServe) started on a free port in its own process, called with a real
HTTP client (httpx): answers the same rows as predict.py, 32 clients at once, bad requests each
get a 400 with one sentence while the server goes on, the request size limit, no request can
name a file; the server's process group is stopped after each module."""

from __future__ import annotations

import concurrent.futures
import io

import numpy as np
import pytest

from tests.helpers import ROOT, command
from tests.helpers.serving import free_port, start_server, stop_server

httpx = pytest.importorskip("httpx")

FIXTURES = ROOT / "tests" / "fixtures" / "checkpoints"


def digits_pixels(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` test digits as uint8 pixels (how data=digits reads them) and their labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return np.round(d.images[:n] * 255 / 16).astype(np.uint8), d.target[:n]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    log = open(tmp_path_factory.mktemp("serve") / "server.log", "w")  # noqa: SIM115
    proc, url = start_server(FIXTURES / "classify_cnn.ckpt", "max_batch_size=8", "batch_timeout=0.05", log=log)
    yield url, proc
    stop_server(proc)
    log.close()


@pytest.fixture(scope="module")
def forecaster():
    proc, url = start_server(FIXTURES / "forecast_lstm.ckpt", "max_batch_size=1")  # without batching
    yield url, proc
    stop_server(proc)


@pytest.fixture(scope="module")
def predictor():
    from zoo import load

    return load(FIXTURES / "classify_cnn.ckpt", accelerator="cpu")


@pytest.mark.slow
def test_answers_pixels_and_uploads_as_predict_does(classifier, predictor):
    url, _ = classifier
    pixels, _ = digits_pixels(4)
    expected = predictor.predict(pixels)  # zoo.load(...).predict: predict.py's code path
    r = httpx.post(f"{url}/predict", json={"pixels": pixels.tolist()}, timeout=60)
    assert r.status_code == 200, r.text
    rows = r.json()["predictions"]
    assert [row["label"] for row in rows] == list(expected["label"])
    np.testing.assert_allclose([row["probability"] for row in rows], expected["probability"], atol=1e-6)
    assert set(rows[0]) == {
        "index",
        "label",
        "probability",
        "label_2",
        "probability_2",
        "label_3",
        "probability_3",
        "error",
    }
    # an uploaded PNG of another size, as curl -F image=@digit.png sends it
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels[0]).resize((40, 40)).save(buf, "PNG")
    up = httpx.post(f"{url}/predict", files={"image": ("digit.png", buf.getvalue(), "image/png")}, timeout=60)
    assert up.status_code == 200, up.text
    assert up.json()["predictions"][0]["label"] == predictor.predict(Image.open(io.BytesIO(buf.getvalue())))["label"][0]
    k1 = httpx.post(f"{url}/predict", json={"pixels": pixels[0].tolist(), "top_k": 1}, timeout=60).json()
    assert "label_2" not in k1["predictions"][0]


@pytest.mark.slow
def test_32_concurrent_clients_are_batched_and_each_gets_its_own_answer(classifier, predictor):
    url, _ = classifier
    pixels, _ = digits_pixels(32)
    expected = list(predictor.predict(pixels)["label"])

    def ask(i):
        with httpx.Client(timeout=120) as client:
            return client.post(f"{url}/predict", json={"pixels": pixels[i].tolist()})

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(ask, range(32)))
    assert [a.status_code for a in answers] == [200] * 32
    assert [a.json()["predictions"][0]["label"] for a in answers] == expected


BAD = [
    (b"{not json", "application/json", 400, "the request body is not valid JSON"),
    (b'{"pixels": "/etc/passwd"}', "application/json", 400, "pixels must hold numbers only"),
    (
        b'{"ckpt_path": "other.ckpt"}',
        "application/json",
        400,
        "the request has the field 'ckpt_path', which this model does not read",
    ),
    (b'{"pixels": [[1, 2], [3]]}', "application/json", 400, "pixels must be a rectangular nested list of numbers"),
    (b'{"pixels": [[1, 2], [3, 300]]}', "application/json", 400, "pixels holds whole numbers outside 0-255"),
    (b'{"pixels": [[0.5, 2.0], [0.1, 0.2]]}', "application/json", 400, "holds float pixels from 0.1 to 2"),
    (b"[1, 2, 3]", "application/json", 400, "the request must be a JSON object"),
    (b'{"pixels": [[1, 2]], "top_k": 0}', "application/json", 400, "top_k must be a positive whole number"),
    (b"pixels=1", "text/plain", 400, "send JSON (Content-Type: application/json) or an image upload"),
]


@pytest.mark.slow
def test_bad_requests_get_400_with_one_sentence_and_the_server_goes_on(classifier, predictor):
    url, proc = classifier
    for body, kind, status, sentence in BAD:
        r = httpx.post(f"{url}/predict", content=body, headers={"Content-Type": kind}, timeout=60)
        assert r.status_code == status, (body, r.text)
        detail = r.json()["detail"]
        assert detail.startswith(sentence) or sentence in detail, (body, detail)
        assert "Traceback" not in r.text and "\n" not in detail
    broken = httpx.post(f"{url}/predict", files={"image": ("x.png", b"not an image", "image/png")}, timeout=60)
    assert broken.status_code == 400 and broken.json()["detail"].startswith(
        "the uploaded file cannot be read as an image"
    )
    big = httpx.post(
        f"{url}/predict", content=b"[" + b"0," * 9_000_000 + b"0]", headers={"Content-Type": "application/json"}
    )
    assert big.status_code == 413
    assert (
        big.json()["detail"]
        == "the request is larger than the server's limit of 16 MB (max_request_mb); send a smaller one."
    )
    # a bad request batched with good ones fails alone
    pixels, _ = digits_pixels(6)
    bodies = [{"pixels": p.tolist()} for p in pixels] + [{"pixels": "x"}, {"texts": ["a"]}]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda b: httpx.post(f"{url}/predict", json=b, timeout=120), bodies))
    assert [a.status_code for a in answers] == [200] * 6 + [400, 400]
    assert proc.poll() is None and httpx.get(f"{url}/health").text == "ok"


@pytest.mark.slow
def test_a_forecaster_takes_a_series_as_columns_rows_or_numbers(forecaster):
    from zoo import load

    url, _ = forecaster
    model = load(FIXTURES / "forecast_lstm.ckpt", accelerator="cpu")
    t = np.arange(80)
    history = np.stack([np.sin(t / 5), np.cos(t / 7), np.sin(t / 3)], axis=1)
    expected = model.predict(history)
    names = list(model.spec.channel_names)
    columns = {name: history[:, j].tolist() for j, name in enumerate(names)}
    rows = [dict(zip(names, r)) for r in history.tolist()]
    for series in (history.tolist(), columns, rows):
        r = httpx.post(f"{url}/predict", json={"series": series}, timeout=60)
        assert r.status_code == 200, r.text
        got = r.json()["predictions"]
        assert len(got) == model.spec.horizon
        np.testing.assert_allclose([row[names[-1]] for row in got], expected[names[-1]], atol=1e-5)
    short = httpx.post(f"{url}/predict", json={"series": history[:10].tolist()}, timeout=60)
    assert short.status_code == 400 and "at least 64 rows (the lookback)" in short.json()["detail"]
    missing = httpx.post(
        f"{url}/predict", json={"series": {k: v for k, v in columns.items() if k != names[0]}}, timeout=60
    )
    assert missing.status_code == 400
    assert missing.json()["detail"].startswith(
        f"the DataFrame has no column '{names[0]}', which the model was trained on"
    )
    upload = httpx.post(f"{url}/predict", files={"image": ("x.png", b"\x89PNG")}, timeout=60)
    assert upload.status_code == 400 and upload.json()["detail"].startswith("this model reads JSON")


def test_the_api_reads_texts_as_texts_never_as_files(tmp_path):
    """The request-to-input step, for a text classifier's fields: a string is a text even when a
    file of that name exists (no request can make the server read a file)."""
    from zoo.run.serve import BadRequest, request_input

    secret = tmp_path / "secret.txt"
    secret.write_text("do not read me")
    assert request_input({"text": str(secret)}, "tokens") == [str(secret)]
    assert request_input({"texts": ["a", "b"], "top_k": 2}, "tokens") == ["a", "b"]
    for body, sentence in [
        ({"texts": "a"}, "texts must be a non-empty list of strings."),
        ({"text": ["a"]}, "text must be a string."),
        ({"text": "a", "texts": ["b"]}, "the request holds more than one"),
        ({}, "the request holds none"),
    ]:
        with pytest.raises(BadRequest) as e:
            request_input(body, "tokens")
        assert str(e.value).startswith(sentence)


@pytest.mark.parametrize(
    "args, message",
    [
        (["port=70000"], "error: port must be at most 65535, got 70000; try port=8000.\n"),
        (
            ["max_batch_size=0"],
            "error: max_batch_size must be a positive whole number, got 0; try max_batch_size=32.\n",
        ),
        (["batch_timeout=-1"], "error: batch_timeout must be seconds from 0 to 10, got -1; try batch_timeout=0.01.\n"),
        ([], "error: ckpt_path must be given; add ckpt_path=... to the command line.\n"),
    ],
)
def test_serve_options_are_checked_before_anything_starts(args, message):
    ckpt = [f"ckpt_path={FIXTURES / 'classify_cnn.ckpt'}"] if args else []
    r = command("serve.py", *ckpt, *args)
    assert (r.returncode, r.stderr) == (2, message)


def test_a_checkpoint_that_cannot_be_served_is_one_sentence_before_any_server_starts():
    r = command("serve.py", f"ckpt_path={FIXTURES / 'language_model_lstm.ckpt'}", f"port={free_port()}")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "a language model continues text rather than labelling inputs" in r.stderr and "generate.py" in r.stderr


def test_help_lists_the_options_of_serve():
    r = command("serve.py", "--help")
    assert r.returncode == 0
    for option in ("host: 127.0.0.1", "port: 8000", "max_batch_size: 32", "batch_timeout: 0.01", "max_request_mb: 16"):
        assert option in r.stdout
