"""Audio as a data kind: reading clips (any rate, channels, bit depth), the torch front end checked
against librosa, the networks on it, data=audio_folder / spoken_digits / speech_commands (downloaded
from a 127.0.0.1 server), the TensorBoard audio views, and the refusals of bad input."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from datamodules.spec import DataSpec
from tests.helpers import REAL_DATA, command, run_train

FSDD = REAL_DATA / "fsdd" / "recordings"  # the shared copy beside the repository (or ZOO_REAL_DATA=<folder>)


def tone(freq: float, rate: int, seconds: float, seed: int = 0, noise: float = 0.05) -> np.ndarray:
    """A sine at ``freq`` Hz with a little noise and a fade in and out, float32 in [-1, 1]."""
    t = np.arange(int(rate * seconds)) / rate
    rng = np.random.default_rng(seed)
    wave = 0.5 * np.sin(2 * np.pi * freq * t) * np.hanning(len(t)) + noise * rng.standard_normal(len(t))
    return wave.astype(np.float32)


def write_audio_folder(root: Path, per_class: int = 12, rate: int = 16000, silent: bool = False) -> list[str]:
    """Class folders of tones a network can tell apart, in several formats, rates and channel counts."""
    classes = {"low": 300.0, "mid": 900.0, "high": 2500.0}
    formats = [("wav", "PCM_16", rate), ("wav", "PCM_24", 22050), ("flac", "PCM_16", 8000), ("wav", "FLOAT", 44100)]
    for c, (name, freq) in enumerate(classes.items()):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            ext, subtype, r = formats[i % len(formats)]
            wave = tone(freq * (1 + 0.05 * (i % 3)), r, 0.4 + 0.1 * (i % 4), seed=c * 100 + i)
            if i % 2:
                wave = np.stack([wave, 0.5 * wave], axis=1)  # stereo
            sf.write(root / name / f"{i}.{ext}", wave, r, subtype=subtype)
    if silent:
        (root / "quiet").mkdir()
        for i in range(per_class):
            sf.write(root / "quiet" / f"{i}.wav", np.zeros(rate // 2, dtype=np.float32), rate, subtype="PCM_16")
        return sorted([*classes, "quiet"])
    return sorted(classes)


AUDIO_FAST = ["data.num_workers=0", "data.duration=0.5", "data.n_mels=32", "callbacks.histograms=null"]


# ---- the front end against librosa --------------------------------------------------------------


@pytest.mark.parametrize(("rate", "n_fft", "n_mels"), [(8000, 200, 40), (16000, 400, 64), (22050, 512, 128)])
def test_mel_filterbank_is_librosas(rate, n_fft, n_mels):
    librosa = pytest.importorskip("librosa", reason="librosa (the test extra) is the reference implementation")
    from zoo.nets.audio import mel_filterbank

    ours = mel_filterbank(rate, n_fft, n_mels).numpy()
    ref = librosa.filters.mel(sr=rate, n_fft=n_fft, n_mels=n_mels)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-8)


def _spec(features: str, rate: int, samples: int, n_fft: int, hop: int, n_mels: int, n_mfcc: int = 0) -> DataSpec:
    return DataSpec(
        name="t",
        kind="audio",
        shape=(samples,),
        num_classes=2,
        sample_rate=rate,
        features=features,
        n_fft=n_fft,
        hop_length=hop,
        n_mels=n_mels,
        n_mfcc=n_mfcc,
    )


@pytest.mark.parametrize(("rate", "n_fft", "hop", "n_mels"), [(16000, 400, 160, 40), (8000, 256, 80, 32)])
def test_log_mel_and_mfcc_are_librosas(rate, n_fft, hop, n_mels):
    """Two different clips in one batch: each is librosa's power_to_db(melspectrogram) (floored 80 dB
    below its own maximum) and librosa's mfcc, computed by torch on the whole batch."""
    librosa = pytest.importorskip("librosa", reason="librosa (the test extra) is the reference implementation")
    from zoo.nets.audio import AudioFeatures

    t = np.arange(rate) / rate
    chirp = (0.3 * np.sin(2 * np.pi * (200 + 1500 * t) * t)).astype(np.float32)
    noisy = tone(700, rate, 1.0, seed=3, noise=0.2)
    batch = torch.from_numpy(np.stack([chirp, noisy]))
    logmel = AudioFeatures(_spec("logmel", rate, rate, n_fft, hop, n_mels)).eval().decibels(batch).numpy()
    mfcc = AudioFeatures(_spec("mfcc", rate, rate, n_fft, hop, n_mels, 13)).eval().decibels(batch).numpy()
    for i, y in enumerate((chirp, noisy)):
        mel = librosa.feature.melspectrogram(y=y, sr=rate, n_fft=n_fft, hop_length=hop, n_mels=n_mels)
        ref = librosa.power_to_db(mel, top_db=80.0)
        assert logmel[i].shape == ref.shape
        np.testing.assert_allclose(logmel[i], ref, atol=2e-3)  # dB, float32 against librosa's float32
        ref_mfcc = librosa.feature.mfcc(y=y, sr=rate, n_mfcc=13, n_fft=n_fft, hop_length=hop, n_mels=n_mels)
        np.testing.assert_allclose(mfcc[i], ref_mfcc, atol=5e-3 * np.abs(ref_mfcc).max())


def test_spec_augment_masks_bands_in_training_only():
    from zoo.nets.audio import SpecAugment

    aug = SpecAugment(2, 5, 2, 7)
    x = torch.ones(64, 40, 101)
    assert torch.equal(aug.eval()(x), x)
    y = aug.train()(x)
    zero_rows = (y == 0).all(dim=2).sum(dim=1)  # masked mel bands per clip
    zero_cols = (y == 0).all(dim=1).sum(dim=1)  # masked frames per clip
    assert zero_rows.max() <= 10 and zero_cols.max() <= 14 and zero_rows.sum() > 0 and zero_cols.sum() > 0
    assert ((y == 0) | (y == 1)).all()


def test_random_shift_moves_each_clip_and_fills_zeros():
    from datamodules.augment import random_shift

    x = torch.arange(1, 101, dtype=torch.float32).repeat(32, 1)
    y = random_shift(x, 10)
    for row in y:
        nz = row.nonzero().flatten()
        shift = int(nz[0]) - int(row[nz[0]] - 1)  # where value 1+k sits tells the shift
        assert torch.equal(row[nz], x[0, nz - shift]) and abs(shift) <= 10
    assert len({int(r.nonzero()[0]) - int(r[r.nonzero()[0]]) for r in y}) > 1  # not all the same


# ---- reading ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "subtype", "rate", "channels"),
    [
        ("WAV", "PCM_U8", 8000, 1),
        ("WAV", "PCM_16", 16000, 2),
        ("WAV", "PCM_24", 44100, 1),
        ("WAV", "FLOAT", 22050, 2),
        ("FLAC", "PCM_16", 48000, 1),
        ("OGG", "VORBIS", 16000, 1),
    ],
)
def test_read_clip_any_format_rate_and_channels(tmp_path, fmt, subtype, rate, channels):
    from datamodules.audio import read_clip

    if fmt not in sf.available_formats():
        pytest.skip(f"this libsndfile does not write {fmt}")
    wave = 0.5 * np.sin(2 * np.pi * 440 * np.arange(int(rate * 0.3)) / rate)
    data = np.stack([wave, wave], axis=1) if channels == 2 else wave
    path = tmp_path / f"clip.{fmt.lower()}"
    sf.write(path, data, rate, subtype=subtype, format=fmt)
    out = read_clip(str(path), 16000, 8000)  # 0.5 s at 16 kHz: 0.3 s of tone, then silence
    assert out.dtype == np.float32 and out.shape == (8000,)
    ref = 0.5 * np.sin(2 * np.pi * 440 * np.arange(4800) / 16000)
    middle = slice(400, 4400)  # away from the resampler's edges
    tolerance = 0.05 if subtype in ("PCM_U8", "VORBIS") else 0.01
    assert np.abs(out[middle] - ref[middle]).max() < tolerance
    assert np.abs(out[5000:]).max() < 1e-3  # padded with silence


def test_long_clips_are_cut_and_offsets_read(tmp_path):
    from datamodules.audio import read_clip

    ramp = np.linspace(-1, 1, 16000).astype(np.float32)
    sf.write(tmp_path / "r.wav", ramp, 16000, subtype="FLOAT")
    assert np.array_equal(read_clip(str(tmp_path / "r.wav"), 16000, 4000), ramp[:4000])
    assert np.array_equal(read_clip(str(tmp_path / "r.wav"), 16000, 4000, offset=0.5, gain=0.5), 0.5 * ramp[8000:12000])


# ---- data=audio_folder end to end ---------------------------------------------------------------


@pytest.mark.slow  # trains or starts processes: seconds each (the fast subset stays under 2 minutes)
def test_audio_folder_trains_a_cnn_and_checkpoints_the_spec(tmp_path):
    classes = write_audio_folder(tmp_path / "clips", per_class=16)
    metrics = run_train(
        [
            "data=audio_folder",
            f"data.root={tmp_path / 'clips'}",
            "model=cnn",
            *AUDIO_FAST,
            "model.channels=[16,32]",
            "model.hidden=32",
            "data.batch_size=8",
            "data.val_size=6",
            "data.test_size=9",
            "trainer.max_epochs=5",
            "optimizer.lr=3e-3",
        ],
        tmp_path / "run",
    )
    assert metrics["test/acc"] >= 0.75 and metrics["epochs"] == 5  # 9 test clips of 3 classes: at most 2 wrong
    spec = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]["spec"]
    assert spec["kind"] == "audio" and spec["shape"] == [8000] and spec["class_names"] == classes
    assert spec["sample_rate"] == 16000 and spec["n_mels"] == 32 and spec["features"] == "logmel"
    # eval.py rebuilds the network with its front end from the stored spec alone; the clips' folder is
    # the user's to give (a checkpoint's stored locations are never used: issue 26)
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    out = command("eval.py", f"ckpt_path={ckpt}", f"data_path={tmp_path / 'clips'}", f"out={tmp_path / 'e.json'}")
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads((tmp_path / "e.json").read_text())["test/acc"] >= 0.75

    # predict.py on a folder of new recordings (other rates, stereo, one broken file) and on one file
    new = tmp_path / "new"
    write_audio_folder(new, per_class=3)
    (new / "low" / "broken.wav").write_text("not audio")
    r = command("predict.py", f"ckpt_path={ckpt}", f"input={new}", f"out={tmp_path / 'pred'}")
    assert r.returncode == 0, r.stderr[-2000:]
    import pandas as pd

    rows = pd.read_csv(tmp_path / "pred" / "predictions.csv", keep_default_na=False)
    assert list(rows.columns[:3]) == ["path", "label", "probability"] and len(rows) == 10
    broken = rows[rows.path.str.endswith("broken.wav")]
    assert len(broken) == 1 and "cannot read it as audio" in broken.error.iloc[0]
    good = rows[rows.error == ""]
    truth = good.path.map(lambda p: Path(p).parent.name)
    assert (good.label == truth).mean() >= 0.75
    r = command("predict.py", f"ckpt_path={ckpt}", f"input={new / 'low' / 'broken.wav'}", f"out={tmp_path / 'p2'}")
    assert r.returncode == 2 and "cannot be read as a clip" in r.stderr and not (tmp_path / "p2").exists()
    # the Python API on waveforms: the same probabilities as on the files they were read from
    import zoo
    from datamodules.audio import read_clip

    model = zoo.load(str(ckpt))
    files = sorted(str(p) for p in (new / "high").glob("*.*"))
    waves = np.stack([read_clip(f, 16000, 8000) for f in files])
    by_array, by_path = model.predict(waves), model.predict(files)
    assert list(by_array.label) == list(by_path.label)
    np.testing.assert_allclose(by_array.probability, by_path.probability, rtol=1e-5)


@pytest.mark.parametrize("model", ["lstm", "gru", "transformer", "m5", "cnn-mfcc"])
def test_every_audio_network_takes_a_step(tmp_path, model):
    write_audio_folder(tmp_path / "clips", per_class=4)
    extra = ["model=cnn", "data.features=mfcc", "data.n_mfcc=13"] if model == "cnn-mfcc" else [f"model={model}"]
    metrics = run_train(
        [
            "data=audio_folder",
            f"data.root={tmp_path / 'clips'}",
            *extra,
            *AUDIO_FAST,
            "data.val_size=2",
            "data.test_size=2",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=2",
            "logger=csv",
        ],
        tmp_path / "run",
    )
    assert metrics["status"] == "finished" and np.isfinite(metrics["val/loss"])


def test_audio_networks_are_sized_from_the_spec():
    from zoo.nets.audio import M5, AudioFeatures
    from zoo.nets.cnn import CNN
    from zoo.nets.rnn import GRU
    from zoo.nets.transformer import Transformer

    for rate, seconds in ((8000, 1.0), (16000, 0.5), (22050, 1.5)):
        samples = int(rate * seconds)
        spec = DataSpec(
            name="t",
            kind="audio",
            shape=(samples,),
            num_classes=7,
            sample_rate=rate,
            features="logmel",
            n_fft=rate // 40,
            hop_length=rate // 100,
            n_mels=32,
            spec_augment=(2, 4, 2, 5),
        )
        x = torch.randn(3, samples) * 0.1
        for net in (CNN(spec), GRU(spec), Transformer(spec, dim=32, heads=2), M5(spec)):
            assert net.train()(x).shape == (3, 7) and net.eval()(x).shape == (3, 7)
        feats = AudioFeatures(spec).eval()(x)
        assert feats.shape == (3, 1, 32, samples // (rate // 100) + 1)
        # the filterbank and window are rebuilt from the spec, not stored in a checkpoint
        assert not any(k.endswith(("window", "filterbank", "dct")) for k in CNN(spec).state_dict())


def test_silent_clips_are_trained_on(tmp_path):
    """A class of silent recordings is data, not a crash: finite features, loss and metrics."""
    classes = write_audio_folder(tmp_path / "clips", per_class=8, silent=True)
    assert "quiet" in classes
    for model in ("cnn", "m5"):
        metrics = run_train(
            [
                "data=audio_folder",
                f"data.root={tmp_path / 'clips'}",
                f"model={model}",
                *AUDIO_FAST,
                "data.val_size=4",
                "data.test_size=4",
                "trainer.max_epochs=1",
                "logger=csv",
            ],
            tmp_path / f"run-{model}",
        )
        assert metrics["status"] == "finished" and np.isfinite(metrics["test/loss"])


def test_streamed_from_disk_as_in_memory(tmp_path):
    """data.stream=true reads each batch from disk: the same clips, labels and splits as in memory."""
    from datamodules.audio import AudioFolderData

    write_audio_folder(tmp_path / "clips", per_class=6)
    kwargs = dict(root=str(tmp_path / "clips"), duration=0.5, num_workers=0, val_size=3, test_size=3)
    memory, streamed = AudioFolderData(**kwargs), AudioFolderData(stream=True, **kwargs)
    memory.setup()
    streamed.setup()
    assert not memory.streaming and streamed.streaming
    assert streamed.split_sizes() == memory.split_sizes() == {"train": 12, "val": 3, "test": 3}
    x, y = next(iter(streamed.test_dataloader()))
    assert torch.equal(x, memory.splits["test"][0]) and torch.equal(y, memory.splits["test"][1])


@pytest.mark.slow
def test_streamed_training_with_workers(tmp_path):
    write_audio_folder(tmp_path / "clips", per_class=12)
    metrics = run_train(
        [
            "data=audio_folder",
            f"data.root={tmp_path / 'clips'}",
            "model=cnn",
            *[o for o in AUDIO_FAST if "num_workers" not in o],
            "data.stream=true",
            "data.num_workers=2",
            "data.batch_size=8",
            "trainer.max_epochs=3",
            "optimizer.lr=3e-3",
            "logger=csv",
        ],
        tmp_path / "run",
    )
    assert metrics["test/acc"] >= 0.75


# ---- TensorBoard -------------------------------------------------------------------------------


@pytest.mark.slow  # trains or starts processes: seconds each (the fast subset stays under 2 minutes)
def test_tensorboard_plays_input_and_misclassified_clips(tmp_path):
    """Input clips in the Audio dashboard beside their spectrograms, the misclassified test clips
    with true and predicted class in their names, and the confusion matrix."""
    from tests.helpers.tensorboard import read_events

    write_audio_folder(tmp_path / "clips", per_class=8)
    run_train(
        [
            "data=audio_folder",
            f"data.root={tmp_path / 'clips'}",
            "model=cnn",
            *AUDIO_FAST,
            "data.val_size=3",
            "data.test_size=9",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=1",  # one step: most test clips are still wrong
            "callbacks.input_samples.num_samples=4",
            "callbacks.model_graph=null",
            "callbacks.embeddings=null",
        ],
        tmp_path / "run",
        views=True,
    )
    ea = read_events(tmp_path / "run")
    audio = ea.Tags()["audio"]
    samples = [t for t in audio if t.startswith("1_train/samples/")]
    wrong = [t for t in audio if t.startswith("3_test/misclassified/")]
    assert len(samples) == 4 and all(t.rsplit("_", 1)[-1] in ("high", "low", "mid") for t in samples)
    assert wrong and all("_true_" in t and "_pred_" in t for t in wrong)
    first = ea.Audio(samples[0])[0]
    assert first.sample_rate == 16000 and first.length_frames == 8000 and first.encoded_audio_string[:4] == b"RIFF"
    images = ea.Tags()["images"]
    for tag in ("1_train/samples", "3_test/misclassified", "3_test/confusion_matrix"):
        assert tag in images, (tag, images)


# ---- spoken digits -----------------------------------------------------------------------------


def write_fsdd(data_dir: Path, speakers=("ann", "bob", "cy"), indices: int = 7) -> Path:
    folder = data_dir / "fsdd" / "recordings"
    folder.mkdir(parents=True)
    for d in range(10):
        for s, speaker in enumerate(speakers):
            for i in range(indices):
                wave = tone(200 + 150 * d, 8000, 0.3, seed=d * 1000 + s * 100 + i)
                sf.write(folder / f"{d}_{speaker}_{i}.wav", wave, 8000, subtype="PCM_16")
    return folder


def test_spoken_digits_splits_by_index_and_by_speaker(tmp_path):
    from datamodules.audio import SpokenDigitsData

    write_fsdd(tmp_path)

    def names(dm, split):
        return {Path(c.path).name for c in dm.find_clips()[0][split]}

    by_index = SpokenDigitsData(data_dir=str(tmp_path), num_workers=0)
    test = names(by_index, "test")
    assert len(test) == 10 * 3 * 5 and all(int(n.split("_")[2][:-4]) < 5 for n in test)
    assert not test & (names(by_index, "train") | names(by_index, "val"))
    by_speaker = SpokenDigitsData(data_dir=str(tmp_path), split_by="speaker", num_workers=0)
    assert {n.split("_")[1] for n in names(by_speaker, "test")} == {"cy"} and len(names(by_speaker, "test")) == 70
    assert {n.split("_")[1] for n in names(by_speaker, "train") | names(by_speaker, "val")} == {"ann", "bob"}
    held = SpokenDigitsData(
        data_dir=str(tmp_path), split_by="speaker", test_speakers=["ann"], val_speakers=["bob"], num_workers=0
    )
    assert {n.split("_")[1] for n in names(held, "val")} == {"bob"}
    assert {n.split("_")[1] for n in names(held, "train")} == {"cy"}
    held.setup()
    assert held.spec.sample_rate == 8000 and held.spec.shape == (8000,) and held.spec.num_classes == 10


@pytest.mark.slow  # trains or starts processes: seconds each (the fast subset stays under 2 minutes)
def test_spoken_digits_refusals(tmp_path):
    base = [f"paths.data_dir={tmp_path}", "data=spoken_digits", "model=cnn", f"hydra.run.dir={tmp_path / 'run'}"]
    out = command("train.py", *base)
    assert out.returncode == 2 and "Free Spoken Digit Dataset is not in" in out.stderr
    write_fsdd(tmp_path, speakers=("ann", "bob"), indices=6)
    out = command("train.py", *base, "data.split_by=speaker", "data.test_speakers=[zed]")
    assert out.returncode == 2 and "no recordings of speaker(s) zed" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.skipif(
    not FSDD.is_dir(),
    reason=f"no FSDD recordings in {FSDD}: this check needs the shared data folder beside the repository "
    f"(or ZOO_REAL_DATA=<folder>)",
)
def test_real_fsdd_reads_with_its_conventions():
    from datamodules.audio import SpokenDigitsData

    dm = SpokenDigitsData(data_dir=str(FSDD.parent.parent), num_workers=0)
    clips, classes = dm.find_clips()
    assert classes == [str(d) for d in range(10)]
    assert len(clips["test"]) == 10 * 5 * len({p.name.split("_")[1] for p in FSDD.glob("*.wav")})
    from datamodules.audio import read_clip

    wave = read_clip(str(FSDD / "3_jackson_7.wav"), 8000, 8000)
    assert 0.01 < np.abs(wave).max() <= 1.0


# ---- speech commands ---------------------------------------------------------------------------


def write_speech_commands_archive(path: Path, words=("yes", "no", "up", "cat", "dog"), per_word: int = 6) -> str:
    """A small speech_commands_v0.02.tar.gz in the real layout (files at the top level); its sha256."""
    buf = io.BytesIO()
    val, test = [], []
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        for w, word in enumerate(words):
            for i in range(per_word):
                name = f"{word}/{i:08x}_nohash_0.wav"
                wav = io.BytesIO()
                sf.write(wav, tone(250 + 300 * w, 16000, 0.25, seed=w * 10 + i), 16000, format="WAV", subtype="PCM_16")
                add(name, wav.getvalue())
                (val if i == 0 else test if i == 1 else []).append(name)
        noise = io.BytesIO()
        sf.write(noise, 0.1 * np.random.default_rng(0).standard_normal(16000 * 3), 16000, format="WAV")
        add("_background_noise_/white_noise.wav", noise.getvalue())
        add("validation_list.txt", ("\n".join(val) + "\n").encode())
        add("testing_list.txt", ("\n".join(test) + "\n").encode())
        add("LICENSE", b"CC BY 4.0\n")
    path.write_bytes(buf.getvalue())
    return hashlib.sha256(buf.getvalue()).hexdigest()


def test_speech_commands_downloads_from_a_mirror_and_follows_its_lists(tmp_path, http_server):
    from datamodules.audio import SpeechCommandsData

    www, url, asked = http_server
    sha = write_speech_commands_archive(www / "speech_commands_v0.02.tar.gz")
    common = dict(data_dir=str(tmp_path / "data"), mirror=url, checksum=f"sha256:{sha}", num_workers=0, duration=0.25)
    dm = SpeechCommandsData(**common)
    dm.prepare_data()
    assert asked == ["/speech_commands_v0.02.tar.gz"]
    folder = tmp_path / "data" / "speech_commands_v0.02"
    assert (folder / "testing_list.txt").is_file() and not (tmp_path / "data" / "speech_commands_v0.02.tar.gz").exists()
    dm.setup()
    assert dm.classes == ["cat", "dog", "no", "up", "yes"] and dm.split_sizes() == {"train": 20, "val": 5, "test": 5}
    SpeechCommandsData(**common).prepare_data()  # present now: nothing downloaded
    assert len(asked) == 1
    twelve = SpeechCommandsData(classes=12, unknown_share=0.5, silence_share=0.5, **common)
    clips, classes = twelve.find_clips()
    assert classes[:2] == ["_silence_", "_unknown_"] and classes[2:5] == ["yes", "no", "up"] and len(classes) == 12
    train = clips["train"]
    known = [c for c in train if c.label >= 2]
    assert len(known) == 12  # yes, no, up: 4 training clips each
    assert sum(c.label == 1 for c in train) == 6 and sum(c.label == 0 for c in train) == 6
    assert all(c.path.endswith("white_noise.wav") and 0 <= c.gain <= 1 for c in train if c.label == 0)
    assert all(Path(c.path).parent.name in ("cat", "dog") for c in train if c.label == 1)
    twelve.setup()
    assert twelve.spec.num_classes == 12 and twelve.splits["train"][0].shape == (24, 4000)


def test_speech_commands_trains_on_the_downloaded_copy(tmp_path, http_server):
    www, url, _ = http_server
    sha = write_speech_commands_archive(www / "speech_commands_v0.02.tar.gz", per_word=8)
    metrics = run_train(
        [
            "data=speech_commands",
            f"data.mirror={url}",
            f"data.checksum=sha256:{sha}",
            "data.classes=12",
            "model=cnn",
            *AUDIO_FAST,
            "data.duration=0.25",
            "trainer.max_epochs=1",
            "logger=csv",
        ],
        tmp_path / "run",
        data_dir=tmp_path / "data",
    )
    assert metrics["status"] == "finished" and np.isfinite(metrics["test/loss"])


@pytest.mark.slow  # trains or starts processes: seconds each (the fast subset stays under 2 minutes)
def test_speech_commands_refusals(tmp_path, http_server):
    www, url, _ = http_server
    write_speech_commands_archive(www / "speech_commands_v0.02.tar.gz")
    base = [f"paths.data_dir={tmp_path / 'data'}", "data=speech_commands", "model=cnn", "data.num_workers=0"]
    out = command(
        "train.py", *base, f"data.mirror={url}", f"data.checksum=sha256:{'0' * 64}", f"hydra.run.dir={tmp_path / 'r1'}"
    )
    assert out.returncode == 2 and "not the expected" in out.stderr and "Traceback" not in out.stderr
    assert not any(p.name.startswith("speech_commands") for p in (tmp_path / "data").iterdir())  # nothing half-written
    out = command("train.py", *base, "data.download=false", f"hydra.run.dir={tmp_path / 'r2'}")
    assert out.returncode == 2 and "data.download=false" in out.stderr
    (www / "speech_commands_v0.02.tar.gz").write_bytes(b"not a tar archive")
    out = command("train.py", *base, f"data.mirror={url}", "data.checksum=null", f"hydra.run.dir={tmp_path / 'r3'}")
    assert out.returncode == 2 and "cannot be unpacked" in out.stderr


# ---- bad input: one sentence, exit status 2 ------------------------------------------------------


def _refused(tmp_path, root: Path, *extra: str) -> str:
    out = command(
        "train.py",
        "data=audio_folder",
        f"data.root={root}",
        "model=cnn",
        "data.num_workers=0",
        f"hydra.run.dir={tmp_path / 'run'}",
        *extra,
    )
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, out.stderr
    return lines[0]


@pytest.mark.parametrize("bad", ["text", "empty", "no_samples", "truncated"])
def test_a_file_that_is_not_a_clip_is_named(tmp_path, bad):
    write_audio_folder(tmp_path / "clips", per_class=4)
    path = tmp_path / "clips" / "mid" / "bad.wav"
    if bad == "text":
        path.write_text("this is not audio\n")
    elif bad == "empty":
        path.write_bytes(b"")
    elif bad == "no_samples":
        sf.write(path, np.zeros(0, dtype=np.float32), 16000)
    else:
        path.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")
    line = _refused(tmp_path, tmp_path / "clips")
    assert str(path) in line and "cannot be used as a clip" in line
    reason = {"text": "cannot read it as audio", "empty": "empty (0 bytes)", "no_samples": "no samples"}
    if bad in reason:
        assert reason[bad] in line


def test_a_bad_file_is_named_when_streaming(tmp_path):
    write_audio_folder(tmp_path / "clips", per_class=4)
    (tmp_path / "clips" / "low" / "oops.wav").write_text("not audio")
    line = _refused(tmp_path, tmp_path / "clips", "data.stream=true", "data.val_size=4", "data.test_size=4")
    assert "oops.wav" in line and "cannot be used as a clip" in line


@pytest.mark.slow  # trains or starts processes: seconds each (the fast subset stays under 2 minutes)
def test_folder_refusals(tmp_path):
    write_audio_folder(tmp_path / "clips", per_class=4)
    (tmp_path / "clips" / "nothing").mkdir()
    (tmp_path / "clips" / "nothing" / "notes.txt").write_text("no clips here")
    assert "holds no audio clips" in _refused(tmp_path, tmp_path / "clips")
    one = tmp_path / "one"
    (one / "yes").mkdir(parents=True)
    sf.write(one / "yes" / "a.wav", tone(440, 16000, 0.2), 16000)
    assert "has 1 class folder(s)" in _refused(tmp_path, one)
    assert "is not a folder" in _refused(tmp_path, tmp_path / "missing")
    assert "data.features must be one of" in _refused(tmp_path, tmp_path / "clips", "data.features=spectrum")


def test_model_that_cannot_take_audio_says_so(tmp_path):
    write_audio_folder(tmp_path / "clips", per_class=4)
    line = _refused(tmp_path, tmp_path / "clips", "model=mlp")
    assert "cannot take data=audio_folder" in line and "audio clips" in line


# ---- export -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_audio_network_exports_to_onnx_from_waveform_to_logits(tmp_path):
    """The front end is torch ops: the whole network, waveform in, logits out, runs in onnxruntime."""
    pytest.importorskip("onnxruntime")
    from zoo.nets.cnn import CNN

    spec = _spec("mfcc", 8000, 4000, 200, 80, 32, 13)
    spec = DataSpec(**{**json.loads(json.dumps(spec.to_dict())), "num_classes": 3, "shape": (4000,)})
    net = CNN(spec).eval()
    x = torch.randn(2, 4000) * 0.1
    path = tmp_path / "net.onnx"
    torch.onnx.export(net, (x,), str(path), dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch")},))
    import onnxruntime as ort

    session = ort.InferenceSession(str(path))
    y = session.run(None, {session.get_inputs()[0].name: torch.randn(5, 4000).numpy() * 0.1})[0]
    assert y.shape == (5, 3)
    np.testing.assert_allclose(
        session.run(None, {session.get_inputs()[0].name: x.numpy()})[0], net(x).detach().numpy(), atol=1e-4
    )
    assert os.path.getsize(path) > 0
