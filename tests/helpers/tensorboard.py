"""What TensorBoard itself reads from a logs folder: the event reader of one run, and the HParams
tab's definition (the "experiment") and rows (session groups) as TensorBoard's own hparams plugin
computes them for its web page, and the order its frontend shows tags and sections in."""

from __future__ import annotations

import functools
import math
from pathlib import Path


def read_events(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(
        str(folder), size_guidance={"scalars": 0, "histograms": 0, "images": 0, "tensors": 0, "graph": 0}
    )
    ea.Reload()
    return ea


def hparams_tab(logdir: Path):
    """(experiment, session groups) of ``tensorboard --logdir logdir``'s HParams tab."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import api_pb2, backend_context, get_experiment, list_session_groups

    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    tb = base_plugin.TBContext(
        logdir=str(logdir), multiplexer=mux, data_provider=data_provider.MultiplexerDataProvider(mux, str(logdir))
    )
    backend = backend_context.Context(tb)
    ctx = context.RequestContext()
    experiment = get_experiment.Handler(ctx, backend, "", api_pb2.GetExperimentRequest()).run()
    columns = [api_pb2.ColParams(hparam=h.name) for h in experiment.hparam_infos] + [
        api_pb2.ColParams(metric=m.name) for m in experiment.metric_infos
    ]
    statuses = [api_pb2.STATUS_UNKNOWN, api_pb2.STATUS_SUCCESS, api_pb2.STATUS_FAILURE, api_pb2.STATUS_RUNNING]
    request = api_pb2.ListSessionGroupsRequest(
        start_index=0, slice_size=1000, col_params=columns, allowed_statuses=statuses
    )
    groups = list_session_groups.Handler(ctx, backend, "", request).run().session_groups
    return experiment, list(groups)


def _number_end(s: str, i: int) -> int:
    """Where the number starting before ``i`` ends, as TensorBoard's frontend reads it (digits, a
    fraction, an exponent)."""
    state = "natural"
    while i < len(s):
        c = s[i]
        if state in ("natural", "real") and c in "eE":
            state = "sign"
        elif state == "natural" and c == ".":
            state = "real"
        elif state == "sign" and (c.isdigit() or c in "+-"):
            state = "exponent"
        elif state == "sign" or not ("0" <= c <= "9"):
            break
        i += 1
    return i


def _js_number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan  # JavaScript's Number("1e") is NaN: neither smaller nor larger


def compare_tag_names(a: str, b: str, breaks: str = "/") -> int:
    """TensorBoard 2.21's frontend order of tags and sections (``compareTagNames`` in its
    webfiles.zip): a natural sort, digits compared as numbers, and digits and ``breaks`` before
    any other character. The Time Series dashboard breaks on "/", the older dashboards (Scalars,
    Images, Histograms, ...) on "/" and "_"."""

    def is_break(c: str) -> bool:
        return c in breaks or "0" <= c <= "9"

    i = j = 0
    while True:
        if i == len(a):
            return 0 if j == len(b) else -1
        if j == len(b):
            return 1
        if "0" <= a[i] <= "9" and "0" <= b[j] <= "9":
            i0, j0 = i, j
            i, j = _number_end(a, i + 1), _number_end(b, j + 1)
            x, y = _js_number(a[i0:i]), _js_number(b[j0:j])
            if x < y:
                return -1
            if x > y:
                return 1
            continue
        if is_break(a[i]):
            if not is_break(b[j]):
                return -1
        elif is_break(b[j]):
            return 1
        elif a[i] != b[j]:
            return -1 if a[i] < b[j] else 1
        i += 1
        j += 1


def sections_in_order(tags, breaks: str = "/") -> list[str]:
    """The sections (the part of a tag before its first "/") in the order TensorBoard shows them:
    the tags sorted as its frontend sorts them, each section where its first tag is."""
    ordered = sorted(tags, key=functools.cmp_to_key(lambda a, b: compare_tag_names(a, b, breaks)))
    return list(dict.fromkeys(t.split("/", 1)[0] for t in ordered))
