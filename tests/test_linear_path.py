"""model.linear_path: the recurrent forecasters' linear map from the window to the horizon."""

from __future__ import annotations

import torch

from tests.helpers.sequences import series_spec
from zoo.nets.rnn import GRU, LSTM


def spec(targets: int = 7):
    return series_spec(48, 12, targets)


def test_the_linear_path_adds_a_window_to_horizon_map_and_nothing_else():
    torch.manual_seed(0)
    plain = LSTM(spec(), hidden=8, layers=1)
    torch.manual_seed(0)
    both = LSTM(spec(), hidden=8, layers=1, linear_path=True)
    assert list(both.state_dict())[: len(plain.state_dict())] == list(plain.state_dict())  # old keys, old order
    assert both.linear.weight.shape == (1, 12, 48)
    x = torch.randn(3, 48, 7)
    with torch.no_grad():
        both.linear.weight.zero_()
        both.linear.bias.zero_()
        assert torch.allclose(both.eval()(x), plain.eval()(x), atol=1e-6)  # a zero map adds nothing
        both.linear.bias.fill_(1.0)
        assert not torch.allclose(both(x), plain(x))


def test_the_linear_path_forecasts_the_target_channels_only():
    net = GRU(spec(targets=1), hidden=8, linear_path=True)
    assert net(torch.randn(2, 48, 7)).shape == (2, 12, 1)
