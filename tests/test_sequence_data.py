"""Text and time-series data: downloads from a 127.0.0.1 server with checksums, the published ETT
protocol, AG News' vocabulary and padding, and bad input answered with one sentence."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch

from datamodules.series import CSVSeries, ETTData, SineData
from datamodules.text import AGNews, PydocCorpus, TextFile, TinyShakespeare
from tests.helpers import command
from tests.helpers.sequences import ag_news_csv, ett_csv, md5, plain_csv, shakespeare_text
from zoo.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/"


# ---- downloads ------------------------------------------------------------------------------------


def test_shakespeare_downloads_with_its_checksum(http_server, tmp_path):
    www, url, asked = http_server
    blob = shakespeare_text().encode()
    (www / "input.txt").write_bytes(blob)
    sha = "sha256:" + __import__("hashlib").sha256(blob).hexdigest()
    dm = TinyShakespeare(data_dir=str(tmp_path / "data"), mirror=url, checksum=sha, seq_len=32)
    dm.prepare_data()
    dm.setup("fit")
    assert asked == ["/input.txt"] and (tmp_path / "data" / "shakespeare" / "input.txt").read_bytes() == blob
    assert not list((tmp_path / "data" / "shakespeare").glob(".download-*"))  # no temporary file left
    spec = dm.spec
    assert spec.kind == "tokens" and spec.task == "language_model" and spec.vocab_size == len(set(blob.decode()))
    # Contiguous 90/5/5: the windows of each split come from its own part of the text, in order.
    n = len(blob.decode())
    assert dm.bases["train"].numel() == int(0.9 * n) and dm.bases["val"].numel() == int(0.05 * n)
    x, y = dm.splits["train"]
    assert torch.equal(x[:, 1:], y[:, :-1]) and torch.equal(x[1, :], dm.bases["train"][32:64])
    asked.clear()
    TinyShakespeare(data_dir=str(tmp_path / "data"), mirror=url, checksum=sha).prepare_data()
    assert asked == []  # present: not downloaded again


def test_a_download_with_the_wrong_checksum_is_not_kept(http_server, tmp_path):
    www, url, _ = http_server
    (www / "input.txt").write_text("not Shakespeare at all\n" * 50)
    dm = TinyShakespeare(data_dir=str(tmp_path / "data"), mirror=url, checksum="sha256:" + "0" * 64)
    with pytest.raises(UserError, match=r"has sha256 [0-9a-f]{64}, not the expected 0{64} \(data\.checksum\)"):
        dm.prepare_data()
    assert not (tmp_path / "data" / "shakespeare" / "input.txt").exists()
    assert not list((tmp_path / "data" / "shakespeare").iterdir())


def test_offline_without_the_file_names_the_file_and_the_offline_dataset(tmp_path):
    dm = TinyShakespeare(data_dir=str(tmp_path / "data"), mirror=closed_port_url(), checksum=None)
    with pytest.raises(UserError) as err:
        dm.prepare_data()
    msg = str(err.value)
    assert msg.startswith(
        f"Tiny Shakespeare (input.txt) is not at {tmp_path / 'data' / 'shakespeare' / 'input.txt'} "
        f"and downloading it from "
    )
    assert "use data=pydoc, which ships with Python" in msg and "\n" not in msg
    with pytest.raises(UserError, match="data.download=false"):
        TinyShakespeare(data_dir=str(tmp_path), download=False).prepare_data()


def test_ag_news_downloads_both_files_and_builds_its_vocabulary_from_the_training_split(http_server, tmp_path):
    www, url, asked = http_server
    train, test = ag_news_csv(300, seed=1), ag_news_csv(60, seed=2)
    (www / "train.csv").write_bytes(train)
    (www / "test.csv").write_bytes(test)
    dm = AGNews(
        data_dir=str(tmp_path / "data"),
        mirror=url,
        checksums={"train": md5(train), "test": md5(test)},
        val_size=50,
        max_length=12,
        min_freq=2,
        max_vocab=40,
    )
    dm.prepare_data()
    dm.setup("fit")
    assert sorted(asked) == ["/test.csv", "/train.csv"]
    assert dm.split_sizes() == {"train": 250, "val": 50, "test": 60}
    spec = dm.spec
    assert spec.vocabulary[:2] == ("<pad>", "<unk>") and spec.vocab_size == 40 == len(spec.vocabulary)
    assert spec.pad_index == 0 and spec.num_classes == 4 and spec.class_names[1] == "Sports"
    x, y = dm.splits["train"]
    assert x.shape == (250, 12) and x.dtype == torch.long and set(y.tolist()) <= {0, 1, 2, 3}
    assert ((x != 0).sum(1) >= 1).all() and (x == 1).any()  # at least one token each; unknown words are <unk>
    # Padding only at the end of a row.
    lengths = (x != 0).sum(1)
    assert all((row[:n] != 0).all() and (row[n:] == 0).all() for row, n in zip(x, lengths))


def test_ag_news_file_in_another_format_is_refused(tmp_path):
    folder = tmp_path / "ag_news"
    folder.mkdir()
    (folder / "train.csv").write_text('"label","text"\n"5","x"\n')
    (folder / "test.csv").write_bytes(ag_news_csv(10))
    with pytest.raises(UserError, match=r"train.csv is not in the AG News format \(line 1 .*delete it to download"):
        AGNews(data_dir=str(tmp_path)).setup("fit")


@pytest.mark.parametrize("name", ["ETTh1", "ETTm2"])
def test_ett_downloads_and_follows_the_published_protocol(name, http_server, tmp_path):
    www, url, asked = http_server
    blob = ett_csv(name)
    (www / f"{name}.csv").write_bytes(blob)
    dm = ETTData(name=name, data_dir=str(tmp_path / "data"), mirror=url, checksum=md5(blob), lookback=96, horizon=96)
    dm.prepare_data()
    dm.setup("fit")
    assert asked == [f"/{name}.csv"] and (tmp_path / "data" / "ETT" / f"{name}.csv").is_file()
    k = 4 if name.startswith("ETTm") else 1
    train, val, test = 8640 * k, 2880 * k, 2880 * k
    # Informer/Autoformer's Dataset_ETT: len = border2 - border1 - seq_len - pred_len + 1.
    assert dm.split_sizes() == {"train": train - 192 + 1, "val": val + 96 - 192 + 1, "test": test + 96 - 192 + 1}
    spec = dm.spec
    assert spec.name == name.lower() and spec.shape == (96, 7) and spec.horizon == 96 and spec.target_channels == 7
    assert spec.channel_names[-1] == "OT" and spec.task == "forecast"
    # z-normalised with the training months only: mean 0 and std 1 over the training rows.
    base = dm.bases["train"]
    assert base.shape == (train, 7)
    assert torch.allclose(base.mean(0), torch.zeros(7), atol=1e-4) and torch.allclose(
        base.std(0, unbiased=False), torch.ones(7), atol=1e-4
    )
    values = np.loadtxt(blob.decode().splitlines()[1:], delimiter=",", usecols=range(1, 8))
    assert np.allclose(spec.channel_mean, values[:train].mean(0)) and np.allclose(
        spec.channel_std, values[:train].std(0)
    )
    # The first validation window forecasts the first step after the training months.
    x, y = dm.splits["val"]
    first_val_row = (values[train] - values[:train].mean(0)) / values[:train].std(0)
    assert np.allclose(y[0, 0].numpy(), first_val_row, atol=1e-4)
    assert np.allclose(
        x[0, -1].numpy(), (values[train - 1] - values[:train].mean(0)) / values[:train].std(0), atol=1e-4
    )


def test_ett_univariate_and_multivariate_to_univariate(tmp_path):
    (tmp_path / "ETT").mkdir()
    (tmp_path / "ETT" / "ETTh1.csv").write_bytes(ett_csv("ETTh1"))
    s = ETTData(data_dir=str(tmp_path), features="S", lookback=48, horizon=24)
    s.setup()
    assert s.spec.shape == (48, 1) and s.spec.target_channels == 1 and s.spec.channel_names == ("OT",)
    ms = ETTData(data_dir=str(tmp_path), features="MS", lookback=48, horizon=24)
    ms.setup()
    assert ms.spec.shape == (48, 7) and ms.spec.target_channels == 1 and ms.spec.channel_names[-1] == "OT"
    assert ms.splits["test"][1].shape[1:] == (24, 1)
    assert torch.allclose(ms.splits["test"][1], s.splits["test"][1])  # the same OT targets


def test_sine_is_the_same_series_for_every_seed_and_split_in_time():
    a, b = SineData(seed=1), SineData(seed=2)
    a.setup()
    b.setup()
    assert torch.equal(a.bases["test"], b.bases["test"])
    assert a.split_sizes() == {"train": 2100 - 80 + 1, "val": 300 + 64 - 80 + 1, "test": 600 + 64 - 80 + 1}
    assert a.spec.shape == (64, 3) and a.spec.horizon == 16


def test_csv_series_sorts_by_date_and_scales_on_the_training_rows(tmp_path):
    text = plain_csv(200).splitlines()
    shuffled = [text[0]] + text[1:][::-1]  # newest first
    path = tmp_path / "load.csv"
    path.write_text("\n".join(shuffled) + "\n")
    dm = CSVSeries(path=str(path), target="OT", features="MS", columns=["temp", "OT"], lookback=10, horizon=5)
    dm.setup()
    assert dm.spec.channel_names == ("temp", "OT") and dm.spec.target_channels == 1
    values = np.loadtxt(text[1:], delimiter=",", usecols=(2, 3))  # in date order
    n_train = int(200 * 0.7)
    assert np.allclose(dm.spec.channel_mean, values[:n_train].mean(0))
    assert torch.allclose(
        dm.bases["train"][0],
        torch.tensor((values[0] - values[:n_train].mean(0)) / values[:n_train].std(0)).float(),
        atol=1e-5,
    )


def test_text_file_and_offline_corpus():
    corpus = PydocCorpus(seq_len=64)
    corpus.setup()
    assert corpus.spec.vocab_size > 60 and "\n" in corpus.spec.vocabulary
    assert corpus.split_sizes()["train"] > 5000


def test_val_and_test_are_read_in_windows_of_eval_seq_len(tmp_path):
    path = tmp_path / "play.txt"
    path.write_text("To be, or not to be, that is the question.\n" * 400)  # 17,200 characters
    same = TextFile(path=str(path), seq_len=32)
    same.setup()
    assert {split: x.shape[1] for split, (x, _) in same.splits.items()} == {"train": 32, "val": 32, "test": 32}
    corpus = TextFile(path=str(path), seq_len=32, eval_seq_len=128)
    corpus.setup()
    assert corpus.splits["train"][0].shape[1] == 32 and corpus.spec.shape == (32,)
    for split in ("val", "test"):
        x, y = corpus.splits[split]
        assert x.shape == ((len(corpus.bases[split]) - 1) // 128, 128)  # whole windows, each from its start
        torch.testing.assert_close(x[:, 1:], y[:, :-1])  # the targets are the next characters
        torch.testing.assert_close(x[1:, 0], corpus.bases[split][128 : 128 * x.shape[0] : 128])
    with pytest.raises(
        UserError,
        match=r"^the text_file text has 17,200 characters, so its val split \(860\) is shorter than one window of "
        r"data.eval_seq_len\+1=1001; use a shorter data.eval_seq_len or a text of at least 20,020 characters\.$",
    ):
        TextFile(path=str(path), seq_len=32, eval_seq_len=1000).setup()


# ---- bad input: one sentence each -----------------------------------------------------------------


def csv_file(tmp_path, text: str):
    path = tmp_path / "data.csv"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "text, kwargs, sentence",
    [
        (
            plain_csv(100),
            {"target": "load_mw"},
            r"has no column 'load_mw' \(data.target\); its columns are: date, load, temp, OT\.$",
        ),
        (plain_csv(100), {"date_column": "day"}, r"has no column 'day' \(data.date_column\)"),
        (
            plain_csv(100).replace(",5.", ",n/a5.", 1),
            {},
            r"^column '\w+' of .*data.csv is not numeric \(line 2 has 'n/a5\.\d+'\); fix the file",
        ),
        (
            plain_csv(100).replace("2020-01-03", "yesterday"),
            {},
            r"has 'yesterday' \(line 4\), which is not a date pandas recognises; give the format with data.date_format",
        ),
        ("date,OT\n", {}, r"has a header but no data rows"),
        (plain_csv(100) + "2021-01-01,1,2,3,4\n", {}, r"line 102 of .* has 5 fields but the header has 4"),
        (
            plain_csv(100) + "2021-01-01,1\n",
            {},
            r"column 'temp' of .* has no value at line 102 and 1 more missing value; fill the gaps with data.fill=ffill",
        ),
        (
            plain_csv(40),
            {"lookback": 96, "horizon": 24},
            r"^the csv series has 40 rows, too few for one train window of data.lookback=96 \+ data.horizon=24 steps",
        ),
    ],
)
def test_bad_csv_gets_one_sentence(text, kwargs, sentence, tmp_path):
    dm = CSVSeries(path=csv_file(tmp_path, text), **{"lookback": 8, "horizon": 4, **kwargs})
    with pytest.raises(UserError, match=sentence) as err:
        dm.setup()
    assert "\n" not in str(err.value)


def test_bad_text_files_get_one_sentence(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n\n")
    with pytest.raises(UserError, match=r"empty.txt is empty; give a text file with something to learn from\."):
        TextFile(path=str(empty)).setup()
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("Café crème\n".encode("latin-1") * 100)
    with pytest.raises(
        UserError, match=r"latin1.txt is not UTF-8 text \(byte 0xe9 at line 1 cannot be decoded\); convert it"
    ):
        TextFile(path=str(latin)).setup()
    short = tmp_path / "short.txt"
    short.write_text("To be or not to be.\n" * 5)
    with pytest.raises(
        UserError,
        match=r"^the text_file text has 100 characters, so its train split \(90\) is shorter than one window of "
        r"data.seq_len\+1=129; use a shorter data.seq_len or a text of at least 2,580 characters\.$",
    ):
        TextFile(path=str(short)).setup()
    with pytest.raises(UserError, match=r"data.path=.*nowhere.txt is not a file"):
        TextFile(path=str(tmp_path / "nowhere.txt")).setup()


@pytest.mark.slow
def test_bad_text_file_on_the_command_line(tmp_path):
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("Café crème\n".encode("latin-1") * 100)
    r = command("train.py", "data=text_file", f"data.path={latin}", "model=lstm", f"hydra.run.dir={tmp_path / 'run'}")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        f"error: {latin} is not UTF-8 text (byte 0xe9 at line 1 cannot be decoded); "
        f"convert it, e.g. iconv -f latin1 -t utf-8 latin1.txt."
    ]
    missing = command("train.py", "data=text_file", f"hydra.run.dir={tmp_path / 'run2'}")
    assert (
        missing.returncode == 2
        and missing.stderr.strip() == "error: data.path must be given; add data.path=... to the command line."
    )
