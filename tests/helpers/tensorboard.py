"""What TensorBoard itself reads from a logs folder: the event reader of one run, and the HParams
tab's definition (the "experiment") and rows (session groups) as TensorBoard's own hparams plugin
computes them for its web page."""

from __future__ import annotations

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
