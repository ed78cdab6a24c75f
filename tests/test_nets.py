"""Networks stay what they were: checkpoints written before the architecture change still load and
compute the same outputs, and every network is created the same way for a seed (the same parameter
names in the same order, the same initial values), so runs give the same metrics as before."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
import torch
from hydra.utils import get_object
from omegaconf import OmegaConf

from datamodules.spec import DataSpec
from tests.helpers import assert_fixture_outputs
from zoo.run.checkpoints import load_checkpoint, net_state
from zoo.tasks.registry import build_net

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "tests" / "fixtures" / "checkpoints"
EXPECTED = json.loads((CHECKPOINTS / "expected.json").read_text())
SEEDED = json.loads((ROOT / "tests" / "fixtures" / "nets_seed0.json").read_text())


def model_target(choice: str) -> str:
    """The ``_target_`` of conf/model/<choice>.yaml (a GAN's config sits under ``model:``)."""
    conf = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "model" / f"{choice}.yaml"))
    return conf.get("model", conf)["_target_"]


def build(choice: str, spec: DataSpec, **options) -> torch.nn.Module:
    """The network of model=<choice> as today's config builds it, with the given option values."""
    return build_net(partial(get_object(model_target(choice)), **options), spec, choice, spec.name)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_checkpoint_written_before_the_move_loads_and_computes_the_same(name):
    ckpt = load_checkpoint(str(CHECKPOINTS / f"{name}.ckpt"))
    hp, expected = ckpt["hyper_parameters"], EXPECTED[name]
    spec = DataSpec.from_dict(hp["spec"])
    # The stored config is data: its values are used, what its _target_ names is not.
    options = {k: v for k, v in hp["config"]["model"].items() if k not in ("_target_", "_partial_")}
    net = build(expected["model"], spec, **options)
    state = net_state(ckpt["state_dict"])
    assert list(net.state_dict()) == list(state)  # the same names, in the order they were created
    net.load_state_dict(state, strict=True)
    assert_fixture_outputs(net.eval(), spec, expected)


# ---- the same network for a seed, for every pairing of model and data kind ---------------------

IMAGE = DataSpec(name="digits", kind="image", shape=(1, 8, 8), num_classes=10)
TEXT = DataSpec(
    name="pydoc", kind="tokens", shape=(12,), task="language_model", vocab_size=11, vocabulary=tuple("abcdefghijk")
)
NEWS = DataSpec(name="ag_news", kind="tokens", shape=(12,), num_classes=4, vocab_size=11, pad_index=0)
SERIES = DataSpec(name="sine", kind="series", shape=(24, 3), task="forecast", horizon=8, target_channels=2)
SPECS = {"image": IMAGE, "text": TEXT, "news": NEWS, "series": SERIES}

# (model, data, options): each way a network family is built
PAIRINGS = [
    ("mlp", "image", {"dropout": 0.2}),
    ("mlp", "image", {"widths": 16, "depth": 2, "activation": "gelu", "batchnorm": True}),
    ("mlp", "series", {"dropout": 0.2}),
    ("mlp", "series", {"revin": False}),
    ("cnn", "image", {"dropout": 0.2}),
    ("cnn", "image", {"pooling": "avg", "batchnorm": False}),
    ("cnn", "text", {"dropout": 0.2}),
    ("cnn", "news", {"dropout": 0.2}),
    ("cnn", "series", {}),
    ("cnn", "series", {"revin": False, "pooling": "none"}),
    ("resnet", "image", {"widths": [8, 16], "blocks": 1}),
    ("linear", "series", {"dropout": 0.2}),
    ("linear", "series", {"individual": True, "revin": False}),
    ("linear", "series", {"decomposition": False}),
    ("lstm", "text", {"dropout": 0.2}),
    ("lstm", "news", {}),
    ("lstm", "news", {"pool": "max", "bidirectional": True}),
    ("lstm", "image", {"layers": 2}),
    ("lstm", "series", {"layers": 2, "dropout": 0.2}),
    ("lstm", "series", {"revin": False, "pool": "mean"}),
    ("gru", "text", {"layers": 2}),
    ("gru", "news", {"pool": "mean"}),
    ("gru", "image", {"bidirectional": True}),
    ("gru", "series", {}),
    ("rnn", "text", {"nonlinearity": "relu"}),
    ("rnn", "news", {}),
    ("rnn", "image", {"dropout": 0.2}),
    ("rnn", "series", {}),
    ("gan", "image", {"conditional": False}),  # (auto, the default, is conditional on labelled images)
    ("gan", "image", {"conditional": True, "d_norm": "layer"}),
    ("dcgan", "image", {"width": 8, "conditional": False}),
    ("dcgan", "image", {"width": 8, "conditional": True, "loss": "wgan-gp"}),
]


def pairing_id(pairing) -> str:
    model, data, options = pairing
    return "-".join([model, data, *(f"{k}={v}" for k, v in options.items())]).replace(" ", "")


def seeded_digest(model: str, data: str, options: dict) -> dict:
    """What a network built under seed 0 is: its parameter and buffer names in order, the sum of
    each, and the sum of its output on a fixed input (eval mode, then one training-mode forward)."""
    spec = SPECS[data]
    torch.manual_seed(0)
    net = build(model, spec, **options)
    g = torch.Generator().manual_seed(1)
    gan = model in ("gan", "dcgan")
    if gan:
        x = torch.randn(3, net.latent_dim, generator=g)
        labels = torch.arange(3) if net.conditional else None
    elif spec.kind == "tokens":
        x = torch.randint(1, spec.vocab_size, (3, *spec.shape), generator=g)
        if spec.pad_index == 0:
            x[1, 7:] = 0  # a shorter, padded sequence
    else:
        x = torch.randn(3, *spec.shape, generator=g)

    def run() -> torch.Tensor:
        if gan:
            # Two passes through G, as when the fixture was written (in training mode each moves
            # BatchNorm's running statistics).
            return torch.cat([net.generate(x, labels).flatten(), net.discriminate(net.generate(x, labels), labels)])
        return net(x)

    with torch.no_grad():
        net.eval()
        eval_out = float(run().double().sum())
        net.train()
        torch.manual_seed(2)
        train_out = float(run().double().sum())
    return {
        "state": {k: round(float(v.double().sum()), 4) for k, v in net.state_dict().items()},
        "eval_output": round(eval_out, 4),
        "train_output": round(train_out, 4),
    }


@pytest.mark.parametrize("pairing", PAIRINGS, ids=[pairing_id(p) for p in PAIRINGS])
def test_a_network_is_created_as_before_for_a_seed(pairing):
    expected = SEEDED[pairing_id(pairing)]
    got = seeded_digest(*pairing)
    assert list(got["state"]) == list(expected["state"])  # checkpoint keys, in creation order
    assert got["state"] == pytest.approx(expected["state"], abs=2e-4)
    assert got["eval_output"] == pytest.approx(expected["eval_output"], abs=2e-4, rel=1e-5)
    assert got["train_output"] == pytest.approx(expected["train_output"], abs=2e-4, rel=1e-5)
