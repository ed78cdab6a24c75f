"""A checkpoint answering over HTTP (serve.py), on LitServe: POST /predict, GET /health.

The model is the checkpoint named when the server starts; a request carries data only. A request
body becomes what predict.py's readers take (``request_input``: numbers become arrays, texts a
list of strings, a series a DataFrame or an array, an uploaded image a Pillow image; never a path),
and is then read, run and written as rows by the same code as predict.py and ``zoo.load``
(zoo/run/predict.py: ``Predictor.read``, the task's ``predict_step``, ``Predictor.rows``).

Concurrent requests are batched by LitServe (``max_batch_size``, ``batch_timeout``): the readable
inputs of a batch run through the network together, and a request that cannot be read gets its own
HTTP 400 with one sentence while the others in its batch are answered. ``RequestCheck`` refuses,
before LitServe sees them, a body over the size limit (413) and a body that is not JSON or an upload
(400), each with one sentence.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math

import litserve as ls

from zoo.errors import UserError

# Per kind of data: the fields a JSON request may hold, with what each is.
FIELDS = {
    "image": {"pixels": "the pixels of one image ((H, W) or (H, W, C)) or a batch ((N, H, W) or (N, H, W, C))"},
    "tokens": {"text": "one text", "texts": "a list of texts"},
    "series": {
        "series": "the history: columns ({column: [values]}, with the date column if the data had one), "
        "rows ([{column: value}]) or numbers ((rows, channels) or (series, rows, channels))"
    },
}
COMMON = ("top_k",)
UPLOAD_FIELD = "image"  # the multipart field of an uploaded image file


class BadRequest(Exception):
    """A request that cannot be answered: its sentence goes back with HTTP 400."""


def _numbers(value, what: str, ints: bool = False):
    """A nested list of numbers as a numpy array (uint8 when ``ints`` and whole numbers 0-255)."""
    import numpy as np

    try:
        a = np.asarray(value)
    except ValueError:
        raise BadRequest(f"{what} must be a rectangular nested list of numbers (every row the same length).") from None
    if a.dtype == object or a.dtype.kind not in "iuf" or a.dtype == bool:
        raise BadRequest(f"{what} must hold numbers only (a rectangular nested list of them).")
    if a.size == 0:
        raise BadRequest(f"{what} is empty; give at least one value.")
    if ints and a.dtype.kind in "iu":
        if a.min() < 0 or a.max() > 255:
            raise BadRequest(f"{what} holds whole numbers outside 0-255; give pixels 0-255 or floats in [0, 1].")
        return a.astype(np.uint8)
    return a.astype(np.float32 if ints else np.float64)


def request_input(body: dict, kind: str):
    """What predict.py's reader of ``kind`` takes, from a JSON request (``body``); never a path:
    a string is read as a text, not as a file name."""
    import pandas as pd

    if not isinstance(body, dict):
        raise BadRequest(f"the request must be a JSON object with one of the fields {', '.join(FIELDS[kind])}.")
    fields = FIELDS[kind]
    unknown = [k for k in body if k not in fields and k not in COMMON]
    given = [k for k in body if k in fields]
    if unknown or len(given) != 1:
        listing = "; ".join(f"{k}: {v}" for k, v in fields.items())
        problem = (
            f"has the field '{unknown[0]}', which" if unknown else "holds none" if not given else "holds more than one"
        )
        raise BadRequest(f"the request {problem} this model does not read; give exactly one of ({listing}).")
    key = given[0]
    value = body[key]
    if kind == "image":
        return _numbers(value, "pixels", ints=True)
    if kind == "tokens":
        texts = [value] if key == "text" else value
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise BadRequest(f"{key} must be {'a string' if key == 'text' else 'a non-empty list of strings'}.")
        return texts
    if isinstance(value, dict):  # columns
        if not value or not all(isinstance(v, list) for v in value.values()):
            raise BadRequest("series as columns must map each column name to a list of its values.")
        if len({len(v) for v in value.values()}) != 1:
            raise BadRequest("every column of the series must have the same number of values.")
        return pd.DataFrame(value)
    if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):  # rows
        return pd.DataFrame(value)
    return _numbers(value, "series")


def uploaded_image(form) -> object:
    """The Pillow image of the upload in the form's ``image`` field, decoded here (so a broken file is
    this request's 400, not the batch's)."""
    from PIL import Image, UnidentifiedImageError

    upload = form.get(UPLOAD_FIELD) if hasattr(form, "get") else None
    data = getattr(upload, "file", None)
    if data is None:
        raise BadRequest(
            f"upload the image as the multipart field '{UPLOAD_FIELD}' (curl -F {UPLOAD_FIELD}=@photo.png)."
        )
    try:
        data.seek(0)
        img = Image.open(io.BytesIO(data.read()))
        img.load()
    except UnidentifiedImageError:
        raise BadRequest(
            "the uploaded file cannot be read as an image (not a format Pillow reads); upload a PNG, JPEG or other image."
        ) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise BadRequest(
            f"the uploaded file cannot be read as an image ({reason}); upload a PNG, JPEG or other image."
        ) from None
    return img


def top_k_of(body, default: int) -> int:
    k = body.get("top_k", default) if isinstance(body, dict) else default
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise BadRequest(f"top_k must be a positive whole number, got {k!r}.")
    return k


def plain(value):
    """A cell of a rows table as JSON: NaN as null, timestamps as ISO text, numpy scalars as numbers."""
    import numpy as np
    import pandas as pd

    if isinstance(value, (pd.Timestamp, np.datetime64)):
        return pd.Timestamp(value).isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def records(table) -> list[dict]:
    """The rows of a table as JSON objects."""
    keys = [str(k) for k in table.columns]
    columns = [[plain(v) for v in table[k].tolist()] for k in table.columns]
    return [dict(zip(keys, values)) for values in zip(*columns)]


REQUEST = "_request"  # the column that says which request of a batch a row answers


def combined(requests: list):
    """The ``Inputs`` of several requests as one (their rows in order), each row's request in the
    column ``REQUEST``: a rows function copies the columns that name the inputs into its rows, so
    the table of the whole batch is cut back into each request's rows by it."""
    from zoo.run.inputs import Inputs

    first = requests[0]
    keys, extra = list(first.columns), list(first.extra)
    if any(list(r.columns) != keys or list(r.extra) != extra for r in requests):
        return None
    columns = {k: [v for r in requests for v in r.columns[k]] for k in keys}
    columns[REQUEST] = [i for i, r in enumerate(requests) for _ in range(len(r))]
    return Inputs(
        x=torch_cat([r.x for r in requests]),
        columns=columns,
        errors=[e for r in requests for e in r.errors],
        extra={k: [v for r in requests for v in r.extra[k]] for k in extra},
        noun=first.noun,
    )


def tensors_of(x) -> tuple:
    """An ``Inputs.x`` as the tuple of tensors a task's batch is (a network of several inputs has several)."""
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def torch_cat(xs):
    """The rows of several ``Inputs.x`` in one, tensor by tensor."""
    import torch

    parts = [tensors_of(x) for x in xs]
    joined = tuple(torch.cat(column) for column in zip(*parts))
    return joined if isinstance(xs[0], (tuple, list)) else joined[0]


class Failed:
    """A request of a batch that could not be read or answered: its sentence."""

    def __init__(self, sentence: str):
        self.sentence = sentence


class PredictAPI(ls.LitAPI):
    """The checkpoint's Predictor (zoo/run/predict.py) as a LitServe API. The API is sent to the
    worker process as its path and options; the network is built there, in ``setup``."""

    def __init__(self, ckpt_path: str, data_dir: str | None, top_k: int, threads: int | None = None, **options):
        super().__init__(**options)
        self.ckpt_path, self.data_dir, self.top_k, self.threads = ckpt_path, data_dir, top_k, threads

    def setup(self, device) -> None:
        import torch

        if self.threads:
            torch.set_num_threads(self.threads)

        from zoo.run.predict import load

        self.predictor = load(self.ckpt_path, data_dir=self.data_dir, accelerator="cpu" if device == "cpu" else "auto")
        spec = self.predictor.spec
        if spec.kind == "image" and not (spec.pixel_mean and spec.pixel_std):
            # a checkpoint from before the spec stored its images' scaling: recomputed once, not per request
            from zoo.run.inputs import pixel_scaler

            mean, std = pixel_scaler(spec, self.predictor.options())
            self.predictor.spec = dataclasses.replace(
                spec, pixel_mean=tuple(mean.tolist()), pixel_std=tuple(std.tolist())
            )
        self.device = torch.device(device)
        self.task = self.predictor.task.to(self.device)

    # -- one request ------------------------------------------------------------------------------
    def decode_request(self, request):
        """The request's inputs as predict.py reads them (``Inputs``), or ``Failed``: never raises, so
        one bad request in a batch does not fail the others."""
        try:
            if hasattr(request, "getlist"):  # a multipart form
                if self.predictor.spec.kind != "image":
                    raise BadRequest("this model reads JSON, not an uploaded file; POST application/json.")
                item, top_k = [uploaded_image(request)], self.top_k
            else:
                item, top_k = request_input(request, self.predictor.spec.kind), top_k_of(request, self.top_k)
            inputs = self.predictor.read(item)
            if not inputs.read:
                raise BadRequest("; ".join(e for e in inputs.errors if e) or "nothing in the request could be read.")
            return inputs, top_k
        except (BadRequest, UserError) as e:
            return Failed(str(e))

    # -- a batch of requests ----------------------------------------------------------------------
    def batch(self, inputs):
        return list(inputs)

    def predict(self, x):
        """The task's ``predict_step`` (what Trainer.predict runs for predict.py) on the rows of every
        readable request at once, then each request's rows (``Predictor.rows``)."""
        import torch

        single = not isinstance(x, list)
        requests = [x] if single else x
        readable = [r for r in requests if not isinstance(r, Failed)]
        answers: dict[int, object] = {}
        if readable:
            rows = tensors_of(torch_cat([inputs.x for inputs, _ in readable]))
            with torch.inference_mode():
                outputs = self.task.predict_step(tuple(t.to(self.device) for t in rows), 0).float().cpu()
            starts = [0]
            for inputs, _ in readable:
                starts.append(starts[-1] + len(tensors_of(inputs.x)[0]))
            by_top_k: dict[int, list[int]] = {}
            for i, (_, top_k) in enumerate(readable):
                by_top_k.setdefault(top_k, []).append(i)
            for top_k, members in by_top_k.items():
                answers.update(self.answer(readable, members, outputs, starts, top_k))
        out, j = [], 0
        for r in requests:
            if isinstance(r, Failed):
                out.append(r)
            else:
                out.append(answers[j])
                j += 1
        return out[0] if single else out

    def answer(self, readable, members, outputs, starts, top_k) -> dict[int, object]:
        """The rows (``Predictor.rows``: predict.py's) of the requests ``members`` of ``readable``,
        made once for all of them when they can be (``combined``), else one request at a time."""
        import torch

        parts = [outputs[starts[i] : starts[i + 1]] for i in members]
        together = combined([readable[i][0] for i in members]) if len(members) > 1 else None
        if together is not None:
            try:
                table = self.predictor.rows(torch.cat(parts), together, top_k)
            except UserError as e:
                return {i: Failed(str(e)) for i in members}
            owner = table.pop(REQUEST).tolist()
            answers = {i: {"predictions": []} for i in members}
            for n, row in zip(owner, records(table)):
                answers[members[n]]["predictions"].append(row)
            return answers
        answers = {}
        for i, part in zip(members, parts):
            try:
                answers[i] = {"predictions": records(self.predictor.rows(part, readable[i][0], top_k))}
            except UserError as e:
                answers[i] = Failed(str(e))
        return answers

    def unbatch(self, output):
        return list(output)

    def encode_response(self, output):
        if isinstance(output, Failed):
            from fastapi.responses import JSONResponse

            return JSONResponse({"detail": output.sentence}, status_code=400)
        return output


class RequestCheck:
    """ASGI middleware: a POST body over ``max_bytes`` is refused with 413, one that is neither JSON
    nor a multipart upload (or not valid as what it says) with 400, each with one sentence and before
    LitServe reads it; the body it read is handed on unchanged."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        limit = f"{self.max_bytes / 2**20:g} MB"
        too_large = f"the request is larger than the server's limit of {limit} (max_request_mb); send a smaller one."
        try:
            if int(headers.get("content-length", "0") or 0) > self.max_bytes:
                await self.refuse(send, 413, too_large)
                return
        except ValueError:
            await self.refuse(send, 400, "the request's Content-Length is not a number.")
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self.refuse(send, 413, too_large)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        kind = headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "application/json":
            try:
                json.loads(body)
            except (ValueError, UnicodeDecodeError) as e:
                await self.refuse(send, 400, f"the request body is not valid JSON ({str(e).split(':')[0]}).")
                return
        elif kind == "multipart/form-data":
            if not await self.form_is_readable(scope, body):
                await self.refuse(
                    send, 400, f"the multipart upload cannot be read; send the image as -F {UPLOAD_FIELD}=@FILE."
                )
                return
        else:
            await self.refuse(
                send,
                400,
                f"send JSON (Content-Type: application/json) or an image upload (multipart/form-data), not "
                f"{kind or 'a body without a Content-Type'}.",
            )
            return
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def form_is_readable(scope, body: bytes) -> bool:
        from starlette.requests import Request

        async def once():
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(scope, once).form()
            await form.close()
            return True
        except Exception:  # noqa: BLE001 - any failure to parse the upload is the client's: a 400
            return False

    @staticmethod
    async def refuse(send, status: int, sentence: str) -> None:
        body = json.dumps({"detail": sentence}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def server(cfg) -> ls.LitServer:
    """The LitServer for serve.py's config: batching on when ``max_batch_size`` > 1."""
    api = PredictAPI(
        str(cfg.ckpt_path),
        cfg.get("data_dir"),
        int(cfg.top_k),
        cfg.get("threads"),
        max_batch_size=int(cfg.max_batch_size),
        batch_timeout=float(cfg.batch_timeout),
    )
    return ls.LitServer(
        api,
        accelerator="cpu" if cfg.accelerator == "cpu" else "auto",
        devices=1,
        workers_per_device=int(cfg.workers),
        timeout=float(cfg.timeout),
        middlewares=[(RequestCheck, {"max_bytes": int(cfg.max_request_mb * 2**20)})],
    )
