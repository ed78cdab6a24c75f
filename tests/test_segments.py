"""model.segment: the recurrent forecasters that read a series in segments, each channel on its own (SegRNN)."""

from __future__ import annotations

import pytest
import torch

from tests.helpers.sequences import series_spec
from zoo.nets.rnn import GRU, LSTM, RecurrentForecaster, SegmentRecurrentForecaster


def spec(lookback: int = 96, horizon: int = 96, targets: int = 7):
    return series_spec(lookback, horizon, targets)


def steps_the_cell_reads(net, x) -> list[int]:
    """The sequence length of each call of the recurrent cell during ``net(x)``."""
    lengths = []
    handle = net.rnn.register_forward_hook(lambda module, args, out: lengths.append(args[0].shape[1]))
    try:
        with torch.no_grad():
            net(x)
    finally:
        handle.remove()
    return lengths


def test_a_window_is_read_a_segment_a_step_and_the_horizon_decoded_in_one_step():
    net = LSTM(spec(), hidden=16, layers=2, segment=24)
    assert isinstance(net, SegmentRecurrentForecaster)
    x = torch.randn(3, 96, 7)
    assert net(x).shape == (3, 96, 7)
    # 96 steps in 4 segments of 24; then every output segment of every channel at once, one step each
    assert steps_the_cell_reads(net, x) == [4, 1]
    assert isinstance(LSTM(spec(), hidden=16, segment=None), RecurrentForecaster)  # null: point by point


def test_each_channel_is_forecast_from_its_own_window_only():
    torch.manual_seed(0)
    net = GRU(spec(), hidden=16, segment=24).eval()
    x = torch.randn(2, 96, 7)
    changed = x.clone()
    changed[:, :, 0] += torch.randn(2, 96)
    with torch.no_grad():
        before, after = net(x), net(changed)
    assert not torch.allclose(before[..., 0], after[..., 0])
    assert torch.equal(before[..., 1:], after[..., 1:])


def test_uneven_windows_and_horizons_and_the_target_channels():
    torch.manual_seed(0)
    net = LSTM(spec(lookback=50, horizon=30, targets=1), hidden=8, segment=24).eval()
    x = torch.randn(2, 50, 7)
    assert net(x).shape == (2, 30, 1)  # the last channel only; 2 output segments cut to 30 steps
    assert steps_the_cell_reads(net, x) == [3, 1]
    # 50 steps are 3 segments of 24: the window's first value fills the 22 steps before it, as if
    # the window had been 72 steps long
    whole = LSTM(spec(lookback=72, horizon=30, targets=1), hidden=8, segment=24).eval()
    whole.load_state_dict(net.state_dict())
    normalized = torch.randn(2, 50, 7)
    padded = torch.cat([normalized[:, :1].expand(-1, 22, -1), normalized], dim=1)
    with torch.no_grad():
        assert torch.allclose(net.body(normalized), whole.body(padded))
        assert not torch.allclose(net.body(normalized), whole.body(torch.cat([padded[:, 22:44], normalized], 1)))


def test_the_linear_path_adds_a_window_to_horizon_map():
    torch.manual_seed(0)
    plain = LSTM(spec(), hidden=8, segment=24)
    torch.manual_seed(0)
    both = LSTM(spec(), hidden=8, segment=24, linear_path=True)
    x = torch.randn(3, 96, 7)
    with torch.no_grad():
        both.linear.weight.zero_()
        both.linear.bias.zero_()
        assert torch.allclose(both.eval()(x), plain.eval()(x), atol=1e-6)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(segment=97), "model.segment=97 does not fit the lookback window of 96 steps"),
        (dict(segment=0), "model.segment=0 does not fit"),
        (dict(segment=24, bidirectional=True), "set model.bidirectional=false or model.segment=null"),
        (dict(segment=24, pool="mean"), "set model.pool=last or model.segment=null"),
    ],
)
def test_a_segment_that_cannot_work_is_one_sentence(options, message):
    with pytest.raises(ValueError, match=message):
        LSTM(spec(), hidden=8, **options)


def test_the_command_line_says_it_in_one_sentence_and_writes_no_run(tmp_path):
    from tests.helpers import command

    r = command("train.py", "model=gru", "data=sine", "model.segment=100", f"hydra.run.dir={tmp_path / 'run'}")
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.strip().splitlines() == [
        "error: model=gru cannot be built for data=sine: model.segment=100 does not fit the lookback window of 64 "
        "steps; use 1 to 64, best a divisor of the window (24 for a window of 96 or 336)."
    ]
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_per_layer_views_name_every_part_as_a_layer():
    from zoo.nets.naming import parameter_names

    layers = {layer for layer, _ in parameter_names(LSTM(spec(), hidden=16, layers=2, segment=24)).values()}
    # segment embedding, two stacked cells, the decoder's position and channel embeddings, the head, RevIN
    assert layers == {"fc1", "lstm1", "lstm2", "embed1", "embed2", "fc2", "revin1"}
