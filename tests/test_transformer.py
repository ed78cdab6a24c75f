"""model=transformer: every data kind trains, the language model is causal and its key/value cache
gives the same text as recomputing, padding changes nothing, checkpoints reload, and TensorBoard
shows what the attention heads do."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from datamodules.spec import DataSpec
from tests.helpers import run_train
from tests.helpers.formats import write_mnist
from tests.helpers.sequences import write_sequence_data
from zoo.callbacks.logger import tensorboard_tag as tb
from zoo.errors import UserError
from zoo.nets.transformer import Transformer, patch_side
from zoo.tasks.language_model import sample_from
from zoo.tasks.registry import build_net

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = DataSpec(
    name="pydoc", kind="tokens", shape=(16,), task="language_model", vocab_size=12, vocabulary=tuple("abcdefghij \n")
)
NEWS = DataSpec(name="ag_news", kind="tokens", shape=(12,), num_classes=4, vocab_size=11, pad_index=0)
SMALL = dict(dim=16, heads=2, layers=2)

FEW_STEPS = [
    "model=transformer",
    "model.dim=16",
    "model.heads=2",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "callbacks.histograms=null",
    "callbacks.lr_monitor=null",
]
DATA = {  # data= -> overrides that keep the run small, the task's test metric
    "pydoc": (["data.seq_len=32", "data.eval_seq_len=80"], "test/bpc"),  # val/test windows > the context
    "ag_news": (["data.val_size=40", "data.max_length=24"], "test/acc"),
    "etth1": (["data.lookback=48", "data.horizon=24"], "test/mse"),
    "digits": ([], "test/acc"),
    "mnist": (["data.val_size=16", "data.batch_size=16"], "test/acc"),
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    data = tmp_path_factory.mktemp("tf") / "data"
    write_sequence_data(data)
    write_mnist(data)
    return data


@pytest.mark.parametrize("data", sorted(DATA))
def test_the_transformer_trains_on_every_kind_of_data(data, data_dir, tmp_path):
    overrides, metric = DATA[data]
    out = tmp_path / "run"
    metrics = run_train([f"data={data}", *overrides, *FEW_STEPS], out, data_dir=data_dir)
    assert metrics["global_step"] == 2
    assert math.isfinite(metrics[metric])
    assert (out / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize("position", ["learned", "sinusoidal", "none"])
def test_the_language_model_never_sees_the_future(position):
    torch.manual_seed(0)
    net = Transformer(TEXT, position=position, **SMALL).eval()
    x = torch.randint(0, 12, (3, 16))
    changed = x.clone()
    changed[:, 9] = (changed[:, 9] + 1) % 12  # a later token changes...
    before, after = net(x), net(changed)
    torch.testing.assert_close(after[:, :9], before[:, :9])  # ...earlier outputs do not
    assert (after[:, 9:] - before[:, 9:]).abs().max() > 1e-4  # (and the ones from it on do)


def test_windows_longer_than_the_context_are_read_one_context_at_a_time():
    torch.manual_seed(0)
    net = Transformer(TEXT, **SMALL).eval()  # a context of 16 positions
    x = torch.randint(0, 12, (2, 40))
    parts = [net(x[:, :16]), net(x[:, 16:32]), net(x[:, 32:])]  # each window from its start
    torch.testing.assert_close(net(x), torch.cat(parts, dim=1))


def test_the_key_value_cache_gives_the_logits_of_a_full_pass():
    torch.manual_seed(0)
    net = Transformer(TEXT, **SMALL).eval()
    x = torch.randint(0, 12, (2, 16))
    logits, state = net.forward_with_state(x[:, :6])
    steps = [logits]
    for i in range(6, 16):
        logits, state = net.forward_with_state(x[:, i : i + 1], state)
        assert logits.shape == (2, 1, 12)  # one position computed per new token
        steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), net(x), atol=1e-5, rtol=1e-5)


class Uncached(torch.nn.Module):
    """The same network without its cache: sampling recomputes the whole context for every token."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)


def test_cached_sampling_writes_the_same_text_as_recomputing_for_a_seed():
    torch.manual_seed(1)
    net = Transformer(TEXT, **SMALL)
    vocab = list(TEXT.vocabulary)

    def sample(model, length):
        return sample_from(model, vocab, "abc", length, 1.0, None, 16, torch.Generator().manual_seed(5))

    assert sample(net, 13) == sample(Uncached(net), 13)  # the whole context: identical draws
    long = sample(net, 60)  # past the context: the cache restarts from its recent half, and goes on
    assert len(long) == 63 and set(long) <= set(vocab)


def test_padding_changes_no_classification():
    torch.manual_seed(0)
    for pool in ("cls", "mean"):
        net = Transformer(NEWS, pool=pool, **SMALL).eval()
        short = torch.tensor([[3, 4, 5, 6, 0, 0]])
        longer = torch.tensor([[3, 4, 5, 6, 0, 0, 0, 0, 0, 0, 0, 0]])
        torch.testing.assert_close(net(short), net(longer))
        other = torch.tensor([[3, 4, 5, 7, 0, 0]])  # (a real token still matters)
        assert (net(other) - net(short)).abs().max() > 1e-5
        assert torch.isfinite(net(torch.zeros(2, 12, dtype=torch.long))).all()  # all padding: no NaN


def test_images_are_cut_into_patches_sized_from_the_data():
    assert patch_side(8, 8) == 2 and patch_side(28, 28) == 4 and patch_side(32, 32) == 4
    spec = DataSpec(name="cifar10", kind="image", shape=(3, 32, 32), num_classes=10)
    net = Transformer(spec, **SMALL)
    assert net.patches.kernel_size == (4, 4) and net.encoder.position.shape == (65, 16)  # 64 patches + class
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_the_forecaster_reads_each_channel_on_its_own():
    spec = DataSpec(name="etth1", kind="series", shape=(96, 7), task="forecast", horizon=24, target_channels=7)
    torch.manual_seed(0)
    net = Transformer(spec, **SMALL).eval()
    x = torch.randn(2, 96, 7)
    y = net(x)
    assert y.shape == (2, 24, 7)
    changed = x.clone()
    changed[..., 3] += torch.randn(2, 96)  # another channel's history...
    torch.testing.assert_close(net(changed)[..., 0], y[..., 0])  # ...does not move channel 0's forecast


def test_sizes_that_cannot_work_get_the_one_sentence_every_model_gives():
    spec = DataSpec(name="digits", kind="image", shape=(1, 8, 8), num_classes=10)
    with pytest.raises(UserError, match=r"^model=transformer cannot be built for data=digits: model.dim must be"):
        build_net(partial(Transformer, dim=30, heads=4), spec, "transformer", "digits")
    with pytest.raises(UserError, match=r"model.patch=3 does not divide the 8x8 images; try model.patch=null\.$"):
        build_net(partial(Transformer, patch=3), spec, "transformer", "digits")


def test_tensorboard_shows_attention_and_per_layer_gradients_and_the_checkpoint_reloads(data_dir, tmp_path):
    from zoo.run.rebuild import rebuild

    out = tmp_path / "run"
    run_train(
        [
            "data=pydoc",
            "data.seq_len=32",
            *FEW_STEPS,
            "trainer.limit_train_batches=4",
            "callbacks.gradient_norms.every_n_steps=2",
            "callbacks.generated_text.length=20",
        ],
        out,
        data_dir=data_dir,
        views=True,
    )
    readers = [
        EventAccumulator(str(f), size_guidance={"images": 0, "scalars": 0}).Reload()
        for f in out.rglob("events.out.tfevents.*")
    ]
    scalars = {t: r for r in readers for t in r.Tags()["scalars"]}
    images = {t for r in readers for t in r.Tags()["images"]}
    for layer in (0, 1):
        assert tb(f"watch/attention/entropy/layer{layer}") in scalars
        tag = tb(f"watch/attention/entropy_ratio/layer{layer}")
        ratio = scalars[tag].Scalars(tag)[-1].value
        assert 0.0 < ratio <= 1.0 + 1e-6  # at most the entropy of attending to everything
        assert tb(f"watch/attention/layer{layer}") in images
    assert sum(t.startswith(tb("watch/grad_norm/")) for t in scalars) > 10, sorted(scalars)  # a curve per layer

    rebuilt = rebuild(str(out / "checkpoints" / "last.ckpt"))
    x = torch.randint(0, rebuilt.spec.vocab_size, (2, 32))
    state = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    again = Transformer(rebuilt.spec, dim=16, heads=2)
    again.load_state_dict({k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")})
    torch.testing.assert_close(rebuilt.net.eval()(x), again.eval()(x))
