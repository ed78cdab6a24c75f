"""Audio clips for classification (``spec.kind == "audio"``): your own recordings in class folders
(data=audio_folder), the Free Spoken Digit Dataset (data=spoken_digits) and Google's Speech Commands
v0.02 (data=speech_commands).

Every clip is read with soundfile (WAV at 8, 16, 24 or 32 bits or float, FLAC, OGG, MP3 where the
installed libsndfile reads them; any sample rate, mono or stereo), averaged to mono, resampled to
``sample_rate`` with a polyphase filter (``scipy.signal.resample_poly``) and cut or zero-padded at
its end to ``duration`` seconds. Batches are waveforms, (B, samples) float32. What the network
sees is computed by its own front end on the whole batch on the training device
(``zoo/nets/audio.py``: log-mel spectrogram or MFCCs, normalisation, SpecAugment), from the
settings this module publishes in its spec; the random time shift is applied here, to the
training batch on its device (``datamodules/augment.py``).

Clips that fit in memory (``stream: auto``: their waveforms take at most 2 GiB) are read once, in
DataLoader worker processes, into tensors and batched by indexing (``TensorDataModule``); larger
sets (Speech Commands: 105,829 clips) are read from disk batch by batch, like data=image_folder.
A file that is not audio, is empty or holds no samples is one sentence naming it.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tarfile
import tempfile
from typing import NamedTuple

import numpy as np
import torch

from datamodules.augment import random_shift
from datamodules.base import TensorDataModule, count, folder_split, seeded_split, stream_loader
from datamodules.files import fetch, source_url
from datamodules.spec import DataSpec
from zoo.errors import UserError

# Files taken as clips (others in a class folder, a README or a .DS_Store, are left alone).
AUDIO_EXTENSIONS = (".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au")
STREAM_ABOVE_BYTES = 2 << 30  # stream=auto: clips whose float32 waveforms take more are read from disk
FEATURES = ("logmel", "mfcc")


class Clip(NamedTuple):
    """One example: a file (None: silence), its class, where in the file it starts (seconds) and a
    gain (Speech Commands' _silence_ clips are quiet stretches of its background noise)."""

    path: str | None
    label: int
    offset: float = 0.0
    gain: float = 1.0


class ClipError(Exception):
    """Why a file cannot be a clip (the reason only; the caller names the file)."""


class UnreadableClip(NamedTuple):
    """A clip that could not be read, passed on as data from a DataLoader worker (an exception raised
    there reaches the main process as a traceback in text, this as the file's path)."""

    path: str
    reason: str


def read_clip(path: str, sample_rate: int, samples: int, offset: float = 0.0, gain: float = 1.0) -> np.ndarray:
    """The clip at ``path`` as ``samples`` float32 values at ``sample_rate``: mono (the channels'
    mean), resampled, cut or zero-padded at the end; ``offset`` seconds into the file. Raises
    ``ClipError`` for a file that is empty, not audio, or holds no samples."""
    import soundfile as sf

    try:
        if os.path.getsize(path) == 0:
            raise ClipError("it is empty (0 bytes)")
        with sf.SoundFile(path) as f:
            rate = f.samplerate
            start = round(offset * rate)
            if start:
                f.seek(min(start, max(f.frames - 1, 0)))
            needed = math.ceil(samples * rate / sample_rate) + 1  # only the part that is kept is read
            data = f.read(frames=needed, dtype="float32", always_2d=True)
    except ClipError:
        raise
    except (RuntimeError, OSError, ValueError, EOFError) as e:  # soundfile's errors are RuntimeErrors
        reason = " ".join(str(e).split()) or type(e).__name__
        raise ClipError(f"soundfile cannot read it as audio: {reason.split(': ', 1)[-1]}") from None
    if len(data) == 0:
        raise ClipError("it holds no samples (a zero-length clip)")
    wave = data.mean(axis=1)
    if not np.isfinite(wave).all():
        raise ClipError("it holds samples that are not finite numbers (NaN or infinity)")
    if rate != sample_rate:
        from scipy.signal import resample_poly

        g = math.gcd(int(rate), int(sample_rate))
        wave = resample_poly(wave, sample_rate // g, rate // g).astype(np.float32)
    out = np.zeros(samples, dtype=np.float32)
    out[: min(samples, len(wave))] = wave[:samples]
    return out * np.float32(gain) if gain != 1.0 else out


class ClipDataset(torch.utils.data.Dataset):
    """Clips read on demand (in DataLoader workers): (waveform, label), or (UnreadableClip, label)."""

    def __init__(self, clips: list[Clip], sample_rate: int, samples: int):
        self.clips, self.sample_rate, self.samples = clips, sample_rate, samples

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int):
        clip = self.clips[i]
        if clip.path is None:
            return torch.zeros(self.samples), clip.label
        try:
            wave = read_clip(clip.path, self.sample_rate, self.samples, clip.offset, clip.gain)
        except ClipError as e:
            return UnreadableClip(clip.path, str(e)), clip.label
        return torch.from_numpy(wave), clip.label


def collate_clips(items: list) -> tuple:
    """One (N, samples) tensor and the labels; the first unreadable clip instead, to be named."""
    for wave, _ in items:
        if isinstance(wave, UnreadableClip):
            return wave, None
    return torch.stack([w for w, _ in items]), torch.tensor([label for _, label in items])


def unreadable(clip: UnreadableClip, where: str) -> UserError:
    return UserError(
        f"{clip.path} {where} cannot be used as a clip ({clip.reason}); delete it or replace it with a "
        f"whole audio file (WAV, FLAC, OGG), then run again."
    )


class AudioData(TensorDataModule):
    """What every audio datamodule shares: reading, the splits (in memory or streamed), the time
    shift, and the spec. A subclass says what its clips are: ``find_clips`` returns
    ({"train": [Clip], "val": [...], "test": [...]}, class names)."""

    name = "audio"
    where = "in the data"  # how a bad file's sentence says where it was found

    def __init__(
        self,
        sample_rate: int = 16000,
        duration: float = 1.0,
        features: str = "logmel",
        n_mels: int = 40,
        n_mfcc: int = 20,
        window_ms: float = 25.0,
        hop_ms: float = 10.0,
        time_shift: float = 0.1,
        freq_masks: int = 1,
        freq_mask_width: int = 4,
        time_masks: int = 1,
        time_mask_width: int = 5,
        stream: str | bool = "auto",
        num_workers: int = 2,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        seed: int = 0,
        data_on_device: bool = True,
    ):
        super().__init__(batch_size, eval_batch_size, seed, data_on_device)
        if not (isinstance(sample_rate, int) and sample_rate >= 1000):
            raise UserError(f"data.sample_rate must be a whole number of Hz, 1000 or more, got {sample_rate!r}.")
        if not duration > 0:
            raise UserError(f"data.duration must be a positive number of seconds, got {duration!r}.")
        if features not in FEATURES:
            raise UserError(f"data.features must be one of {', '.join(FEATURES)}, got {features!r}.")
        if not 0 < hop_ms <= window_ms:
            raise UserError(
                f"data.hop_ms={hop_ms} and data.window_ms={window_ms}: the hop must be positive and at most the window."
            )
        if features == "mfcc" and not 1 <= n_mfcc <= n_mels:
            raise UserError(f"data.n_mfcc={n_mfcc} must be from 1 to data.n_mels={n_mels}.")
        if stream not in ("auto", True, False):
            raise UserError(f"data.stream must be auto, true or false, got {stream!r}.")
        if not 0 <= time_shift < duration:
            raise UserError(f"data.time_shift={time_shift} must be from 0 to below data.duration={duration} seconds.")
        self.sample_rate, self.duration, self.features = int(sample_rate), float(duration), features
        self.samples = round(self.sample_rate * self.duration)
        self.n_mels, self.n_mfcc = int(n_mels), int(n_mfcc)
        self.n_fft = round(self.sample_rate * window_ms / 1000)
        self.hop_length = round(self.sample_rate * hop_ms / 1000)
        if self.n_mels < 1 or self.n_mels > self.n_fft // 2 + 1:
            raise UserError(
                f"data.n_mels={n_mels} must be from 1 to {self.n_fft // 2 + 1} (the frequencies of a "
                f"{window_ms} ms window at {sample_rate} Hz); lower it or widen data.window_ms."
            )
        self.time_shift = round(time_shift * self.sample_rate)
        self.spec_augment = (int(freq_masks), int(freq_mask_width), int(time_masks), int(time_mask_width))
        if min(self.spec_augment) < 0:
            raise UserError("data.freq_masks, freq_mask_width, time_masks and time_mask_width must be 0 or more.")
        self.stream, self.num_workers = stream, int(num_workers)
        self.classes: list[str] = []
        self.streaming = False
        self.datasets: dict[str, ClipDataset] = {}

    # ---- what a subclass says ------------------------------------------------------------------

    def find_clips(self) -> tuple[dict[str, list[Clip]], list[str]]:
        raise NotImplementedError

    # ---- reading -------------------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        if self.splits or self.datasets:  # already read: setup is called by train.py and by the Trainer
            return
        try:
            import scipy.signal  # noqa: F401 - resampling
            import soundfile  # noqa: F401
        except ImportError as e:
            raise UserError(
                f"data={self.name} reads audio with soundfile and scipy, and {e.name} is not installed; "
                f"pip install 'zoo-experiments[audio]'."
            ) from None
        clips, classes = self.find_clips()
        if len(classes) < 2:
            raise UserError(
                f"data={self.name} has {len(classes)} class(es) ({', '.join(classes) or 'none'}); a classifier "
                f"needs at least 2: add a folder of clips for another class."
            )
        self.classes = list(classes)
        total = sum(len(c) for c in clips.values())
        self.streaming = self.stream is True or (
            self.stream == "auto" and total * self.samples * 4 > STREAM_ABOVE_BYTES
        )
        datasets = {split: ClipDataset(c, self.sample_rate, self.samples) for split, c in clips.items()}
        if self.streaming:
            self.datasets = datasets
        else:
            self.splits = {split: self._read_all(ds) for split, ds in datasets.items()}

    def _read_all(self, ds: ClipDataset) -> tuple[torch.Tensor, torch.Tensor]:
        """Every clip of a split as one (N, samples) tensor, read in DataLoader workers."""
        if len(ds) == 0:
            return torch.zeros(0, self.samples), torch.zeros(0, dtype=torch.long)
        loader = torch.utils.data.DataLoader(
            ds, batch_size=64, num_workers=min(self.num_workers, math.ceil(len(ds) / 64)), collate_fn=collate_clips
        )
        waves, labels = [], []
        for x, y in loader:
            if isinstance(x, UnreadableClip):
                raise unreadable(x, self.where)
            waves.append(x)
            labels.append(y)
        return torch.cat(waves), torch.cat(labels)

    def split_sizes(self) -> dict[str, int]:
        if self.streaming:
            return {k: len(v) for k, v in self.datasets.items()}
        return super().split_sizes()

    @property
    def spec(self) -> DataSpec:
        return DataSpec(
            name=self.name,
            kind="audio",
            shape=(self.samples,),
            num_classes=len(self.classes),
            class_names=tuple(self.classes),
            sample_rate=self.sample_rate,
            features=self.features,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            n_mels=self.n_mels,
            n_mfcc=self.n_mfcc if self.features == "mfcc" else 0,
            spec_augment=self.spec_augment,
        )

    # ---- loaders -------------------------------------------------------------------------------

    def _stream(self, split: str, batch_size: int, shuffle: bool, execution=None):
        return stream_loader(
            self.datasets[split], batch_size, shuffle, self.seed, self.num_workers, collate_clips, execution
        )

    def train_dataloader(self):
        if self.streaming:
            return self._stream("train", self.batch_size, True, self.execution)
        return super().train_dataloader()

    def val_dataloader(self):
        if self.streaming:
            return self._stream("val", self.eval_batch_size, False)
        return super().val_dataloader()

    def test_dataloader(self):
        if self.streaming:
            return self._stream("test", self.eval_batch_size, False)
        return super().test_dataloader()

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """A streamed batch's unreadable file as a sentence; the random time shift of each training
        clip, on the whole batch on its device."""
        x, *rest = batch
        if isinstance(x, UnreadableClip):
            raise unreadable(x, self.where)
        if self.trainer is not None and self.trainer.training and self.time_shift:
            x = random_shift(x, self.time_shift)
        return (x, *rest)


def audio_files(folder: str) -> list[str]:
    """The audio files under ``folder`` (by extension; hidden files left out), sorted."""
    found = []
    for where, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [
            os.path.join(where, n) for n in names if n.lower().endswith(AUDIO_EXTENSIONS) and not n.startswith(".")
        ]
    return sorted(found)


class AudioFolderData(AudioData):
    """Your own recordings, one sub-folder per class (``root/yes/1.wav``, ``root/no/2.flac``); the
    classes are the sub-folders in sorted order, train/val/test a seeded split of the clips."""

    name = "audio_folder"

    def __init__(self, root: str | None = None, val_size: float = 0.1, test_size: float = 0.1, **audio):
        super().__init__(**audio)
        self.root = os.path.expanduser(str(root)) if root else None
        self.val_size, self.test_size = val_size, test_size
        self.where = f"under data.root={self.root}"

    def find_clips(self):
        if not self.root:
            raise UserError("data=audio_folder needs data.root=<folder with one sub-folder of clips per class>.")
        if not os.path.isdir(self.root):
            raise UserError(
                f"data.root={self.root} is not a folder; point it at a folder with one sub-folder of "
                f"clips per class (root/yes/1.wav, root/no/2.wav, ...)."
            )
        classes = sorted(d.name for d in os.scandir(self.root) if d.is_dir() and not d.name.startswith("."))
        items: list[Clip] = []
        for label, name in enumerate(classes):
            files = audio_files(os.path.join(self.root, name))
            if not files:
                raise UserError(
                    f"the class folder {os.path.join(self.root, name)} holds no audio clips "
                    f"({', '.join(AUDIO_EXTENSIONS[:4])}, ...); add clips to it or remove it."
                )
            items += [Clip(f, label) for f in files]
        if len(classes) < 2:
            raise UserError(
                f"data.root={self.root} has {len(classes)} class folder(s); a classifier needs at least 2 "
                f"(one sub-folder of clips per class: root/yes/1.wav, root/no/2.wav, ...)."
            )
        n = len(items)
        train, val, test = folder_split(self.root, n, self.val_size, self.test_size, self.seed, "clips")
        return {
            s: [items[i] for i in idx.tolist()] for s, idx in (("train", train), ("val", val), ("test", test))
        }, classes


FSDD_NAME = re.compile(r"^(\d)_([^_]+)_(\d+)\.wav$")


class SpokenDigitsData(AudioData):
    """The Free Spoken Digit Dataset (Jackson et al., github.com/Jakobovski/free-spoken-digit-dataset):
    ``<data_dir>/fsdd/recordings/<digit>_<speaker>_<index>.wav``, 50 recordings of each digit by each
    speaker, 8 kHz. ``split_by=index``: FSDD's own convention, indices 0-4 of every speaker and digit
    are the test set; ``split_by=speaker``: ``test_speakers`` (default: the last by name) are the
    test set, none of their clips trained on. Validation: ``val_speakers`` when given, else a seeded
    ``val_size`` of the training clips."""

    name = "spoken_digits"

    def __init__(
        self,
        data_dir: str = "data",
        split_by: str = "index",
        test_speakers: list[str] | None = None,
        val_speakers: list[str] | None = None,
        val_size: float = 0.1,
        **audio,
    ):
        audio.setdefault("sample_rate", 8000)
        super().__init__(**audio)
        if split_by not in ("index", "speaker"):
            raise UserError(f"data.split_by must be index (FSDD's own test set) or speaker, got {split_by!r}.")
        self.folder = os.path.join(os.path.expanduser(str(data_dir)), "fsdd", "recordings")
        self.split_by, self.val_size = split_by, val_size
        self.test_speakers = list(test_speakers) if test_speakers else None
        self.val_speakers = list(val_speakers) if val_speakers else None
        self.where = f"in {self.folder}"

    def find_clips(self):
        if not os.path.isdir(self.folder):
            raise UserError(
                f"the Free Spoken Digit Dataset is not in {self.folder}; copy its recordings/ folder there "
                f"(git clone https://github.com/Jakobovski/free-spoken-digit-dataset) or point "
                f"paths.data_dir at a folder holding fsdd/recordings/."
            )
        found = []
        for name in sorted(os.listdir(self.folder)):
            if name.startswith(".") or not name.lower().endswith(".wav"):
                continue
            m = FSDD_NAME.match(name)
            if not m:
                raise UserError(
                    f"{os.path.join(self.folder, name)} is not named <digit>_<speaker>_<index>.wav as FSDD's "
                    f"recordings are; rename or remove it."
                )
            found.append((os.path.join(self.folder, name), int(m[1]), m[2], int(m[3])))
        if not found:
            raise UserError(f"{self.folder} holds no <digit>_<speaker>_<index>.wav recordings; copy FSDD's there.")
        speakers = sorted({s for _, _, s, _ in found})
        if self.split_by == "speaker":
            test = self.test_speakers or speakers[-1:]
            for given in (test, self.val_speakers or []):
                unknown = sorted(set(given) - set(speakers))
                if unknown:
                    raise UserError(
                        f"no recordings of speaker(s) {', '.join(unknown)} in {self.folder}; its speakers are "
                        f"{', '.join(speakers)}."
                    )
            if len(set(test) | set(self.val_speakers or [])) >= len(speakers):
                raise UserError(
                    f"data.test_speakers and data.val_speakers hold out every speaker ({', '.join(speakers)}); "
                    f"leave at least one to train on."
                )
            is_test = lambda s, i: s in test  # noqa: E731
        else:
            is_test = lambda s, i: i < 5  # noqa: E731
        rest = [(p, d, s) for p, d, s, i in found if not is_test(s, i)]
        tests = [Clip(p, d) for p, d, s, i in found if is_test(s, i)]
        if self.split_by == "speaker" and self.val_speakers:
            val = [Clip(p, d) for p, d, s in rest if s in self.val_speakers]
            train = [Clip(p, d) for p, d, s in rest if s not in self.val_speakers]
        else:
            n_val = count(self.val_size, len(rest))
            if not 1 <= n_val < len(rest):
                raise UserError(
                    f"data.val_size={self.val_size} leaves no training or no validation clips of {len(rest)}."
                )
            train_idx, val_idx = seeded_split(len(rest), [len(rest) - n_val, n_val], self.seed)
            train = [Clip(rest[i][0], rest[i][1]) for i in train_idx.tolist()]
            val = [Clip(rest[i][0], rest[i][1]) for i in val_idx.tolist()]
        if not tests:
            raise UserError(
                f"{self.folder} has no recordings with indices 0-4, FSDD's test set; use data.split_by=speaker."
            )
        return {"train": train, "val": val, "test": tests}, [str(d) for d in range(10)]


class SpeechCommandsData(AudioData):
    """Google Speech Commands v0.02 (Warden 2018, arXiv:1804.03209): 105,829 one-second clips of 35
    words at 16 kHz, ``<data_dir>/speech_commands_v0.02/<word>/<speaker>_nohash_<n>.wav``, downloaded
    (2.3 GB) when absent, from ``mirror`` when given. Its own ``validation_list.txt`` and
    ``testing_list.txt`` are the validation and test sets. ``classes=35``: every word;
    ``classes=12``: the 12-class protocol of the paper and TensorFlow's tutorial: ten words
    (yes no up down left right on off stop go), ``_unknown_`` (the other words, a seeded tenth of
    the size of each split's known words) and ``_silence_`` (as many one-second stretches of
    ``_background_noise_`` at a random volume from 0 to 1)."""

    name = "speech_commands"
    URL = "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz"
    ARCHIVE = "speech_commands_v0.02.tar.gz"
    FOLDER = "speech_commands_v0.02"
    COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
    SILENCE, UNKNOWN = "_silence_", "_unknown_"
    NOISE = "_background_noise_"
    PROTOCOL_SEED = 59185  # TensorFlow's tutorial's: which clips are _unknown_ and _silence_ is fixed

    def __init__(
        self,
        data_dir: str = "data",
        classes: int = 35,
        mirror: str | None = None,
        checksum: str | None = "sha256:af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58",
        download: bool = True,
        silence_share: float = 0.1,
        unknown_share: float = 0.1,
        **audio,
    ):
        super().__init__(**audio)
        if classes not in (35, 12):
            raise UserError(
                f"data.classes must be 35 (every word) or 12 (ten words, silence, unknown), got {classes!r}."
            )
        self.data_dir = os.path.expanduser(str(data_dir))
        self.folder = os.path.join(self.data_dir, self.FOLDER)
        self.n_classes, self.mirror, self.checksum, self.download = classes, mirror, checksum, download
        self.silence_share, self.unknown_share = float(silence_share), float(unknown_share)
        self.where = f"in {self.folder}"

    def _complete(self) -> bool:
        return all(os.path.isfile(os.path.join(self.folder, f)) for f in ("validation_list.txt", "testing_list.txt"))

    def prepare_data(self) -> None:
        if self._complete():
            return
        if os.path.isdir(self.folder) and os.listdir(self.folder):
            raise UserError(
                f"{self.folder} has no validation_list.txt and testing_list.txt, so it is not a whole copy of "
                f"Speech Commands v0.02; delete it and run again to download the dataset afresh."
            )
        archive = fetch(
            source_url(self.mirror, self.URL, self.ARCHIVE),
            os.path.join(self.data_dir, self.ARCHIVE),
            self.checksum,
            name="the Speech Commands v0.02 archive",
            key="data.checksum",
            offline="use data=spoken_digits, or data=audio_folder with recordings of your own",
            download=self.download,
        )
        scratch = tempfile.mkdtemp(dir=self.data_dir, prefix=".extract-")
        try:
            with tarfile.open(archive) as tar:
                for member in tar.getmembers():  # never outside the folder, whatever the archive says
                    if member.name.startswith(("/", "\\")) or ".." in member.name.replace("\\", "/").split("/"):
                        raise tarfile.TarError(f"it names a file outside its folder ({member.name})")
                tar.extractall(scratch, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
            if not all(os.path.isfile(os.path.join(scratch, f)) for f in ("validation_list.txt", "testing_list.txt")):
                raise tarfile.TarError("it holds no validation_list.txt and testing_list.txt at its top")
            if os.path.isdir(self.folder):
                os.rmdir(self.folder)  # empty (checked above)
            os.replace(scratch, self.folder)
        except (tarfile.TarError, OSError, EOFError) as e:
            raise UserError(
                f"{archive} cannot be unpacked ({str(e).strip() or type(e).__name__}); delete it and run again "
                f"to download it afresh."
            ) from None
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        os.remove(archive)  # 2.3 GB, unpacked now

    def _list(self, name: str) -> set[str]:
        with open(os.path.join(self.folder, name), encoding="utf-8") as f:
            return {line.strip().replace("\\", "/") for line in f if line.strip()}

    def find_clips(self):
        if not self._complete():
            raise UserError(
                f"Speech Commands v0.02 is not in {self.folder}; run with data.download=true to download it, "
                f"or point paths.data_dir at a folder holding {self.FOLDER}/."
            )
        val_list, test_list = self._list("validation_list.txt"), self._list("testing_list.txt")
        words = sorted(d.name for d in os.scandir(self.folder) if d.is_dir() and not d.name.startswith(("_", ".")))
        by_split: dict[str, list[tuple[str, str]]] = {"train": [], "val": [], "test": []}
        for word in words:
            for path in audio_files(os.path.join(self.folder, word)):
                rel = os.path.relpath(path, self.folder).replace(os.sep, "/")
                split = "test" if rel in test_list else "val" if rel in val_list else "train"
                by_split[split].append((path, word))
        if self.n_classes == 35:
            index = {w: i for i, w in enumerate(words)}
            return {s: [Clip(p, index[w]) for p, w in items] for s, items in by_split.items()}, words
        classes = [self.SILENCE, self.UNKNOWN, *self.COMMANDS]
        index = {w: i for i, w in enumerate(classes)}
        rng = np.random.default_rng(self.PROTOCOL_SEED)
        noise = self._noise_files()
        out = {}
        for split, items in by_split.items():
            known = [Clip(p, index[w]) for p, w in items if w in index]
            others = [p for p, w in items if w not in index]
            n_unknown = min(len(others), math.ceil(len(known) * self.unknown_share))
            unknown = [Clip(others[i], 1) for i in sorted(rng.choice(len(others), n_unknown, replace=False))]
            n_silence = math.ceil(len(known) * self.silence_share)
            out[split] = known + unknown + [self._silence(rng, noise) for _ in range(n_silence)]
        return out, classes

    def _noise_files(self) -> list[tuple[str, float]]:
        """The background noise files and their lengths in seconds."""
        import soundfile as sf

        files = []
        for path in audio_files(os.path.join(self.folder, self.NOISE)):
            try:
                info = sf.info(path)
            except RuntimeError as e:
                raise unreadable(UnreadableClip(path, str(e).split(": ", 1)[-1]), self.where) from None
            files.append((path, info.frames / info.samplerate))
        return files

    def _silence(self, rng, noise: list[tuple[str, float]]) -> Clip:
        if not noise:
            return Clip(None, 0)  # no background noise in the copy: silence is silence
        path, seconds = noise[int(rng.integers(len(noise)))]
        return Clip(path, 0, float(rng.uniform(0, max(seconds - self.duration, 0))), float(rng.uniform(0, 1)))
