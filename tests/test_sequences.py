"""The sequence zoo: recurrent, convolutional, linear and MLP networks on text and time series.

Every sequence model on every sequence dataset for a few steps (the downloadable sets from small
files in their real formats), real learning (a forecaster beats the naive forecast, a character
model beats the unigram entropy), what TensorBoard shows, generation from a checkpoint."""

from __future__ import annotations

import json
import math
from collections import Counter
from functools import partial

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from datamodules.spec import DataSpec
from tests.helpers import command, run_train
from tests.helpers.formats import write_mnist
from tests.helpers.sequences import write_sequence_data
from zoo.callbacks.logger import tensorboard_tag as tb
from zoo.errors import UserError
from zoo.tasks.registry import build_net

# A few steps, without the per-run cost of the TensorBoard logger (it is tested below).
FEW_STEPS = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "callbacks.histograms=null",
    "callbacks.lr_monitor=null",
    "callbacks.gradient_norms=null",
    "logger=none",
]

DATASETS = {  # data= choice -> overrides that keep a run small
    "shakespeare": ["data.seq_len=32"],
    "text_file": ["data.seq_len=32"],  # data.path added by the test
    "pydoc": ["data.seq_len=32"],
    "ag_news": ["data.val_size=40", "data.max_length=24"],
    "sine": ["data.length=600"],
    "csv": ["data.lookback=24", "data.horizon=8"],  # data.path added by the test
    "etth1": ["data.lookback=24", "data.horizon=24"],
    "etth2": ["data.lookback=24", "data.horizon=24", "data.features=S"],
    "ettm1": ["data.lookback=24", "data.horizon=24", "data.features=MS"],
    "ettm2": ["data.lookback=24", "data.horizon=24"],
    "mnist": ["data.val_size=16", "data.batch_size=16"],  # sequential MNIST: rows as time steps
}
TEXT, TOKENS, SERIES = (
    ("shakespeare", "text_file", "pydoc"),
    ("ag_news",),
    ("sine", "csv", "etth1", "etth2", "ettm1", "ettm2"),
)
MODELS = {  # model= choice -> (small sizes, the datasets it takes)
    "rnn": (["model.hidden=16"], [*TEXT, *TOKENS, *SERIES, "mnist"]),
    "lstm": (["model.hidden=16"], [*TEXT, *TOKENS, *SERIES, "mnist"]),
    "gru": (["model.hidden=16"], [*TEXT, *TOKENS, *SERIES, "mnist"]),
    "linear": ([], list(SERIES)),
    "mlp": (["model.widths=[16]"], list(SERIES)),
    "cnn": (["model.channels=[8,8]"], [*TEXT, *TOKENS, *SERIES]),
}
PAIRS = [(m, d) for m, (_, ds) in MODELS.items() for d in ds]
METRICS = {
    "language_model": {"test/loss", "test/bpc", "test/ppl", "test/acc"},
    "classify": {"test/loss", "test/acc", "test/macro_f1"},
    "forecast": {"test/loss", "test/mse", "test/mae", "test/mse_orig", "test/mae_orig", "test/naive_mse"},
}

pytestmark = pytest.mark.usefixtures("one_thread")


def task_of(data: str) -> str:
    return "language_model" if data in TEXT else "forecast" if data in SERIES else "classify"


@pytest.fixture(scope="module")
def seq_data(tmp_path_factory):
    data = tmp_path_factory.mktemp("seq") / "data"
    own = write_sequence_data(data)
    write_mnist(data)
    return data, own


def dataset_overrides(data: str, own: dict) -> list[str]:
    extra = {"text_file": [f"data.path={own['text']}"], "csv": [f"data.path={own['csv']}", "data.target=[OT]"]}
    return [f"data={data}", *DATASETS[data], *extra.get(data, [])]


@pytest.mark.slow
@pytest.mark.parametrize("model, data", PAIRS, ids=[f"{m}-{d}" for m, d in PAIRS])
def test_every_sequence_model_trains_on_every_sequence_dataset(model, data, seq_data, tmp_path):
    data_dir, own = seq_data
    out = tmp_path / "run"
    metrics = run_train(
        [f"model={model}", *dataset_overrides(data, own), *MODELS[model][0], "model.dropout=0.1", *FEW_STEPS],
        out,
        data_dir=data_dir,
    )
    assert metrics["global_step"] == 2
    assert METRICS[task_of(data)] <= set(metrics), sorted(metrics)
    assert all(math.isfinite(v) for k, v in metrics.items() if k.startswith("test/"))
    assert (out / "checkpoints" / "last.ckpt").is_file()


NOT_PAIRS = [
    ("linear", "shakespeare", "it needs numeric series, and shakespeare yields token sequences"),
    ("linear", "mnist", "it needs numeric series, and mnist yields images"),
    ("mlp", "pydoc", "it needs images or numeric series or tables, and pydoc yields token sequences"),
    ("resnet", "sine", "it needs images, and sine yields numeric series"),
]


@pytest.mark.parametrize("model, data, why", NOT_PAIRS, ids=[f"{m}-{d}" for m, d, _ in NOT_PAIRS])
def test_a_pairing_that_cannot_work_names_both_sides(model, data, why, seq_data, tmp_path):
    data_dir, own = seq_data
    with pytest.raises(UserError) as err:
        run_train([f"model={model}", *dataset_overrides(data, own), *FEW_STEPS], tmp_path / "run", data_dir=data_dir)
    assert str(err.value) == f"model={model} cannot take data={data}: {why}; pick another model or dataset."


def test_a_language_model_cannot_be_bidirectional():
    from zoo.nets.rnn import LSTM

    spec = DataSpec(
        name="pydoc", kind="tokens", shape=(32,), task="language_model", vocab_size=5, vocabulary=tuple("abcde")
    )
    with pytest.raises(
        UserError, match=r"^model=lstm cannot be built for data=pydoc: .*set model.bidirectional=false\.$"
    ):
        build_net(partial(LSTM, bidirectional=True), spec, "lstm", "pydoc")


# ---- learning for real ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sine_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sine") / "run"
    metrics = run_train(
        [
            "experiment=sine_lstm",
            "trainer.max_epochs=4",
            "callbacks.histograms=null",
            "callbacks.gradient_norms.every_n_steps=5",
        ],
        out,
    )
    return out, metrics


@pytest.mark.slow
def test_sine_forecaster_beats_the_naive_forecast(sine_run):
    _, metrics = sine_run
    assert metrics["test/mse"] < 0.5 * metrics["test/naive_mse"], metrics
    assert metrics["test/mae"] < metrics["test/naive_mae"]
    # The same errors on the original scale (the sine data's channels have std ~0.7).
    assert 0 < metrics["test/mse_orig"] < metrics["test/mse"] * 2


@pytest.mark.slow
def test_linear_baseline_beats_the_naive_forecast(tmp_path):
    metrics = run_train(
        ["model=linear", "data=sine", "trainer.max_epochs=3", "callbacks.histograms=null"], tmp_path / "run"
    )
    assert metrics["test/mse"] < 0.5 * metrics["test/naive_mse"], metrics


def unigram_entropy_nats(text: str) -> float:
    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log(c / n) for c in counts.values())


@pytest.fixture(scope="module")
def char_lm(tmp_path_factory):
    out = tmp_path_factory.mktemp("lm") / "run"
    metrics = run_train(
        [
            "model=lstm",
            "data=pydoc",
            "model.hidden=96",
            "model.layers=1",
            "model.embedding=32",
            "model.dropout=0.0",
            "data.seq_len=64",
            "data.batch_size=32",
            "optimizer.lr=5e-3",
            "trainer.max_epochs=2",
            "trainer.limit_train_batches=60",
            "callbacks.histograms=null",
            "callbacks.gradient_norms.every_n_steps=10",
            "callbacks.generated_text.length=80",
        ],
        out,
    )
    return out, metrics


@pytest.mark.slow
def test_char_lm_beats_the_unigram_entropy_of_the_text(char_lm):
    from pydoc_data.topics import topics

    _, metrics = char_lm
    text = "\n".join(topics[k] for k in sorted(topics))
    assert metrics["val/loss"] < unigram_entropy_nats(text) - 0.3, metrics
    assert metrics["val/bpc"] == pytest.approx(metrics["val/loss"] / math.log(2))
    assert metrics["test/ppl"] == pytest.approx(math.exp(metrics["test/loss"]), rel=1e-4)


def read_events(folder) -> EventAccumulator:
    ea = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    ea.Reload()
    return ea


@pytest.mark.slow
def test_tensorboard_shows_bpc_generated_text_and_recurrent_layer_gradients(char_lm):
    out, metrics = char_lm
    ea = read_events(out)
    scalars = set(ea.Tags()["scalars"])
    written = ("train/loss", "train/loss_step", "train/bpc", "val/loss", "val/bpc", "val/ppl", "test/bpc")
    assert {tb(t) for t in written} <= scalars
    assert {tb("watch/grad_norm/lstm1"), tb("watch/grad_norm/embed1"), tb("watch/grad_norm/fc1")} <= scalars, scalars
    samples = ea.Tensors(tb("samples/generated/text_summary"))
    assert len(samples) == metrics["epochs"]  # one per epoch
    text = samples[-1].tensor_proto.string_val[0].decode()
    assert len(text.replace("\n    ", "")) >= 80


@pytest.mark.slow
def test_tensorboard_shows_forecast_plots_and_errors(sine_run):
    out, metrics = sine_run
    ea = read_events(out)
    written = ("val/loss", "val/mse", "val/mae", "val/mse_orig", "test/mse", "test/naive_mse")
    assert {tb(t) for t in written} <= set(ea.Tags()["scalars"])
    assert {tb("watch/grad_norm/lstm1"), tb("watch/grad_norm/lstm2")} <= set(ea.Tags()["scalars"])  # two stacked layers
    plots = ea.Images(tb("val/forecast"))
    # Within the figure budget: the first epoch's and the last epoch's plot always, the others as
    # the budget allows (zoo.callbacks.common.FigureBudget).
    val_steps = [e.step for e in ea.Scalars(tb("val/loss"))]
    assert plots[0].step == val_steps[0] and plots[-1].step == val_steps[-1] and len(plots) <= metrics["epochs"]
    assert plots[-1].encoded_image_string[:4] == b"\x89PNG" and plots[-1].width >= 800


@pytest.mark.slow
def test_news_classifier_shows_misclassified_articles_and_macro_f1(seq_data, tmp_path):
    data_dir, own = seq_data
    out = tmp_path / "run"
    metrics = run_train(
        [
            "model=gru",
            *dataset_overrides("ag_news", own),
            "model.hidden=16",
            "model.bidirectional=true",
            "model.pool=mean",
            "trainer.max_epochs=1",
            "callbacks.histograms=null",
        ],
        out,
        data_dir=data_dir,
        views=True,
    )
    assert {"test/acc", "test/macro_f1", "val/macro_f1"} <= set(metrics)
    ea = read_events(out)
    assert tb("test/confusion_matrix") in ea.Tags()["images"] and tb("test/misclassified") not in ea.Tags()["images"]
    table = ea.Tensors(tb("test/misclassified/text_summary"))[-1].tensor_proto.string_val[0].decode()
    rows = table.splitlines()
    assert rows[0] == "| true | predicted | text |" and len(rows) > 2
    assert rows[2].split(" | ")[0].lstrip("| ") in ("World", "Sports", "Business", "Sci/Tech")
    assert "<pad>" not in table and " the " in table  # decoded words, padding left out


@pytest.mark.slow
def test_best_checkpoint_is_chosen_by_the_lowest_validation_loss(sine_run):
    out, metrics = sine_run
    ea = read_events(out)
    losses = [e.value for e in ea.Scalars(tb("val/loss"))]
    assert metrics["val/loss"] == pytest.approx(min(losses))
    assert metrics["best_checkpoint"].endswith(f"best-epoch{losses.index(min(losses)):03d}.ckpt")


@pytest.mark.slow
def test_eval_of_a_forecast_checkpoint_gives_the_same_test_metrics(sine_run):
    from omegaconf import OmegaConf

    import eval as evaluate_module

    _, metrics = sine_run
    again = evaluate_module.evaluate(
        OmegaConf.create(
            {
                "ckpt_path": metrics["best_checkpoint"],
                "data_dir": None,
                "split": "test",
                "accelerator": "cpu",
                "batch_size": None,
                "out": None,
            }
        )
    )
    assert again["test/mse"] == pytest.approx(metrics["test/mse"], rel=1e-5)


@pytest.mark.slow
def test_generate_prints_text_from_a_language_model_checkpoint(char_lm, tmp_path):
    _, metrics = char_lm
    r = command(
        "generate.py",
        f"ckpt_path={metrics['best_checkpoint']}",
        "prompt='The name '",
        "length=120",
        "temperature=0.8",
        "accelerator=cpu",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    text = r.stdout.removesuffix("\n")  # print's line end
    assert text.startswith("The name ") and len(text) == 9 + 120
    assert text[9:].strip()  # something printable came after the prompt

    bad = command("generate.py", f"ckpt_path={metrics['best_checkpoint']}", "prompt='Ωmega'", "accelerator=cpu")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [bad.stderr.strip()]
    assert bad.stderr.startswith("error: the prompt has characters this model never saw ('Ω')")


@pytest.mark.slow
def test_sampling_from_a_checkpoint_in_process(char_lm):
    from omegaconf import OmegaConf

    from zoo.run.generate import language_model
    from zoo.run.rebuild import rebuild

    _, metrics = char_lm
    rebuilt = rebuild(metrics["best_checkpoint"])

    def cfg(**kw):
        return OmegaConf.create(
            {
                "prompt": "def",
                "length": 40,
                "temperature": 0,
                "top_k": None,
                "seed": 0,
                "accelerator": "cpu",
                **kw,
            }
        )

    import contextlib
    import io

    def printed(**kw) -> str:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            language_model(rebuilt, cfg(**kw))
        return buf.getvalue()

    assert printed() == printed() and printed().startswith("def")  # temperature 0: the most likely character
    assert printed(temperature=1.0, seed=1) == printed(temperature=1.0, seed=1)  # a seed repeats a sample
    assert printed(temperature=1.0, seed=1) != printed(temperature=1.0, seed=2)
    assert len(printed(top_k=3, temperature=1.0)) == 3 + 40 + 1
    for bad, sentence in [
        ({"length": 0}, "length must be a positive whole number"),
        ({"temperature": -1}, "temperature must be a number >= 0"),
        ({"top_k": 0}, "top_k must be a positive whole number or null"),
    ]:
        with pytest.raises(UserError, match=sentence):
            printed(**bad)


# ---- settings a user can rely on ------------------------------------------------------------------


def compose(*overrides: str):
    from zoo.run.config import compose_config

    return compose_config(list(overrides))


@pytest.mark.parametrize("model, clip", [("lstm", 1.0), ("gru", 1.0), ("rnn", 1.0), ("mlp", None), ("linear", None)])
def test_recurrent_models_clip_gradients_by_default(model, clip):
    assert compose(f"model={model}", "data=sine").trainer.gradient_clip_val == clip
    assert compose(f"model={model}", "data=sine", "trainer.gradient_clip_val=null").trainer.gradient_clip_val is None


@pytest.mark.parametrize(
    "data, monitor, mode",
    [
        ("digits", "val/acc", "max"),
        ("ag_news", "val/acc", "max"),
        ("pydoc", "val/loss", "min"),
        ("etth1", "val/loss", "min"),
    ],
)
def test_the_checkpoint_metric_fits_the_task(data, monitor, mode):
    cfg = compose(f"data={data}")
    assert (cfg.callbacks.checkpoint.monitor, cfg.callbacks.checkpoint.mode) == (monitor, mode)
    assert cfg.optimized_metric == monitor
    assert compose(f"data={data}", "callbacks=none").callbacks == {}  # the user's choice still wins


def test_experiments_compose():
    for name, data, model in [
        ("shakespeare_lstm", "shakespeare", "lstm"),
        ("ag_news_gru", "ag_news", "gru"),
        ("etth1_lstm", "etth1", "lstm"),
        ("sine_lstm", "sine", "lstm"),
    ]:
        cfg = compose(f"experiment={name}")
        assert cfg.data._target_.endswith(
            {"shakespeare": "TinyShakespeare", "ag_news": "AGNews", "etth1": "ETTData", "sine": "SineData"}[data]
        )
        assert cfg.model._target_ == f"zoo.nets.rnn.{model.upper()}"
        assert cfg.trainer.gradient_clip_val


def test_spec_with_a_vocabulary_and_a_scaler_is_plain_data():
    spec = DataSpec(
        name="x",
        kind="series",
        shape=(96, 7),
        task="forecast",
        horizon=24,
        target_channels=1,
        channel_names=tuple("abcdefg"),
        channel_mean=(1.0,) * 7,
        channel_std=(2.0,) * 7,
    )
    d = spec.to_dict()
    assert all(not isinstance(v, tuple) for v in d.values())
    assert DataSpec.from_dict(json.loads(json.dumps(d))) == spec
    assert DataSpec.from_dict({**d, "a_field_from_the_future": 1}) == spec
