"""Audio: a feature front end in torch, and the networks that classify clips (data kind "audio").

An audio datamodule yields waveforms, (B, samples) at ``spec.sample_rate``. Every audio network
starts with ``AudioFeatures``, which turns the whole batch into features on the device it is on:

1. the power spectrogram, ``torch.stft`` (Hann window of ``spec.n_fft`` samples, every
   ``spec.hop_length``, centred with zero padding: librosa's defaults);
2. a mel filterbank of our own (``mel_filterbank``: Slaney's mel scale and area normalisation,
   librosa's defaults; tests/test_audio.py checks it and the next two steps against librosa);
3. decibels, ``10 log10(power)``, floored 80 dB below the clip's loudest bin (librosa's
   ``power_to_db(top_db=80)``), and for ``features="mfcc"`` the first ``spec.n_mfcc`` coefficients
   of its orthonormal DCT-II (librosa's ``mfcc``);
4. each feature bin normalised by batch statistics (a ``BatchNorm`` without scale and shift; in
   evaluation the average over all training batches), so MFCC's large first coefficient and the
   mel bands all arrive near zero mean and unit variance;
5. in training only, SpecAugment (Park et al. 2019): ``spec.spec_augment`` = (frequency masks, the
   widest in bins, time masks, the widest in frames), each a band set to zero (the mean).

All of it is torch ops: the network exports to ONNX (opset 18) from waveform to logits.

The networks (built by model=cnn, lstm, gru, rnn, transformer through their builders, and model=m5):

- ``AudioClassifier``: the front end, then a body built for the (1, bins, frames) spectrogram as for
  an image: ``ImageCNN`` (model=cnn), ``ImageRecurrentClassifier`` reading one frame per step
  (model=lstm/gru/rnn), or ``SpectrogramTransformer`` (model=transformer: AST, Gong et al. 2021,
  square patches of the spectrogram, a class token, learned positions).
- ``M5``: the raw waveform, no spectrogram: Dai et al. 2017, "Very deep convolutional neural
  networks for raw waveforms": a wide first convolution (10 ms) with a large stride, then 3-tap
  convolutions with batchnorm and pooling, global average pooling and a linear classifier.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import nn

TOP_DB = 80.0  # librosa's power_to_db default: the floor below each clip's loudest bin
AMIN = 1e-10  # the smallest power taken to decibels (librosa's amin)


def hz_to_mel(f: torch.Tensor) -> torch.Tensor:
    """Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz, logarithmic above."""
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return torch.where(
        f >= min_log_hz, min_log_mel + torch.log(f.clamp_min(min_log_hz) / min_log_hz) / logstep, f / f_sp
    )


def mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return torch.where(m >= min_log_mel, min_log_hz * torch.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None):
    """(n_mels, 1 + n_fft // 2) triangular filters, equally spaced on the mel scale from ``fmin``
    to ``fmax`` (default: half the sample rate), each scaled to unit area (Slaney's normalisation):
    what ``librosa.filters.mel`` returns with its defaults. Computed in float64, on the CPU whatever
    the default device (a checkpoint's network is first built on the "meta" device: zoo/run/rebuild.py)."""
    fmax = sample_rate / 2 if fmax is None else fmax
    cpu = torch.device("cpu")
    fft_freqs = torch.linspace(0, sample_rate / 2, 1 + n_fft // 2, dtype=torch.float64, device=cpu)
    edges = mel_to_hz(
        torch.linspace(
            float(hz_to_mel(torch.tensor(fmin, dtype=torch.float64, device=cpu))),
            float(hz_to_mel(torch.tensor(fmax, dtype=torch.float64, device=cpu))),
            n_mels + 2,
            dtype=torch.float64,
            device=cpu,
        )
    )
    widths = edges.diff()
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = torch.clamp(torch.minimum(lower, upper), min=0)
    return weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]


def dct_matrix(n_out: int, n_in: int) -> torch.Tensor:
    """(n_out, n_in): the first ``n_out`` rows of the orthonormal DCT-II (scipy's dct(norm='ortho'))."""
    n = torch.arange(n_in, dtype=torch.float64, device="cpu")
    k = torch.arange(n_out, dtype=torch.float64, device="cpu")[:, None]
    basis = torch.cos(math.pi * k * (2 * n + 1) / (2 * n_in)) * math.sqrt(2.0 / n_in)
    basis[0] /= math.sqrt(2.0)
    return basis


def frames_of(spec) -> int:
    """How many STFT frames a clip of spec.shape[0] samples gives (centred: one per hop, plus one)."""
    return spec.shape[0] // spec.hop_length + 1


def feature_bins(spec) -> int:
    return spec.n_mfcc if spec.features == "mfcc" else spec.n_mels


class SpecAugment(nn.Module):
    """Frequency and time masks (Park et al. 2019) on a (B, bins, frames) batch, in training only:
    per clip, ``freq_masks`` bands of 0 to ``freq_width`` bins and ``time_masks`` bands of 0 to
    ``time_width`` frames, at random places, set to zero."""

    def __init__(self, freq_masks: int = 0, freq_width: int = 0, time_masks: int = 0, time_width: int = 0):
        super().__init__()
        self.freq = (int(freq_masks), int(freq_width))
        self.time = (int(time_masks), int(time_width))

    @staticmethod
    def _bands(x: torch.Tensor, masks: int, width: int, size: int) -> torch.Tensor:
        """(B, size) True inside one of ``masks`` random bands of 0..width per clip."""
        b = x.shape[0]
        widths = torch.randint(0, width + 1, (b, masks, 1), device=x.device)
        starts = (torch.rand(b, masks, 1, device=x.device) * (size - widths + 1)).long()
        at = torch.arange(size, device=x.device)
        return ((at >= starts) & (at < starts + widths)).any(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        keep = torch.ones_like(x, dtype=torch.bool)
        if self.freq[0] and self.freq[1]:
            keep &= ~self._bands(x, *self.freq, x.shape[1])[:, :, None]
        if self.time[0] and self.time[1]:
            keep &= ~self._bands(x, *self.time, x.shape[2])[:, None, :]
        return x * keep


class AudioFeatures(nn.Module):
    """(B, samples) waveforms -> (B, 1, bins, frames) normalised log-mel spectrograms or MFCCs (the
    steps in this module's docstring). The filterbank, window and DCT are buffers rebuilt from the
    spec, not stored in checkpoints; the normalisation's running statistics are."""

    def __init__(self, spec):
        super().__init__()
        if not (
            spec.sample_rate >= 1 and 2 <= spec.n_fft <= spec.shape[0] * 2 and spec.hop_length >= 1 and spec.n_mels >= 1
        ):
            raise ValueError(
                f"the spec's audio settings do not fit together (sample_rate={spec.sample_rate}, n_fft={spec.n_fft}, "
                f"hop_length={spec.hop_length}, n_mels={spec.n_mels}, {spec.shape[0]} samples)"
            )
        if spec.features not in ("logmel", "mfcc"):
            raise ValueError(f"unknown data.features '{spec.features}'; choose logmel or mfcc")
        if spec.features == "mfcc" and not 1 <= spec.n_mfcc <= spec.n_mels:
            raise ValueError(f"data.n_mfcc={spec.n_mfcc} must be from 1 to data.n_mels={spec.n_mels}")
        self.n_fft, self.hop, self.mfcc = int(spec.n_fft), int(spec.hop_length), spec.features == "mfcc"
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        fb = mel_filterbank(spec.sample_rate, self.n_fft, spec.n_mels)
        self.register_buffer("filterbank", fb.T.float().contiguous(), persistent=False)  # (freqs, mels)
        dct = dct_matrix(spec.n_mfcc, spec.n_mels) if self.mfcc else torch.zeros(0, spec.n_mels)
        self.register_buffer("dct", dct.T.float().contiguous(), persistent=False)  # (mels, n_mfcc)
        self.bins = feature_bins(spec)
        # momentum=None: the running statistics are the plain average over every training batch. The
        # features have no trained parameters before them, so their distribution does not drift and
        # the average is exact after the first batches (an exponential average would start from 0
        # and 1, tens of dB away, and make the first epochs' validation meaningless).
        self.norm = nn.BatchNorm1d(self.bins, affine=False, momentum=None)
        self.augment = SpecAugment(*(tuple(spec.spec_augment) + (0, 0, 0, 0))[:4])

    def power(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> (B, frames, 1 + n_fft // 2) power spectrogram."""
        z = torch.stft(
            wave.float(),
            self.n_fft,
            self.hop,
            window=self.window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )
        return (z.real.square() + z.imag.square()).transpose(1, 2)

    def decibels(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, mels, frames) log-mel spectrogram in dB, each clip floored TOP_DB below its maximum;
        (B, n_mfcc, frames) MFCCs with features="mfcc": librosa's values, before normalisation."""
        db = 10.0 * torch.log10((self.power(wave) @ self.filterbank).clamp_min(AMIN))  # (B, frames, mels)
        db = torch.maximum(db, db.amax(dim=(1, 2), keepdim=True) - TOP_DB)
        if self.mfcc:
            db = db @ self.dct
        return db.transpose(1, 2)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.augment(self.norm(self.decibels(wave)))[:, None]


def spectrogram_spec(spec, frames_as_rows: bool = False):
    """The spec of the front end's output, as an image: (1, bins, frames), or (1, frames, bins) for
    a network that reads one row per step."""
    bins, frames = feature_bins(spec), frames_of(spec)
    return replace(spec, kind="image", shape=(1, frames, bins) if frames_as_rows else (1, bins, frames))


class AudioClassifier(nn.Module):
    """The front end, then ``body`` on the spectrogram (an image network built for its shape)."""

    accepts = ("audio",)

    def __init__(self, spec, body: nn.Module, frames_as_rows: bool = False):
        super().__init__()
        self.frontend = AudioFeatures(spec)
        self.body = body
        self.frames_as_rows = frames_as_rows

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = self.frontend(wave)
        return self.body(x.transpose(2, 3) if self.frames_as_rows else x)


class SpectrogramTransformer(nn.Module):
    """AST (Gong et al. 2021), small: the (1, bins, frames) spectrogram zero-padded to whole patches
    (zero is each bin's mean after the front end), cut into ``patch`` x ``patch`` squares, each
    projected to ``dim``; a class token, learned positions, the pre-norm blocks of
    zoo/nets/transformer.py, and a linear head on the class token (or the mean, ``pool=mean``)."""

    def __init__(self, spec, dim, layers, heads, mlp_ratio, dropout, position, activation, pool, patch):
        from zoo.nets.transformer import Encoder, _init_weights

        super().__init__()
        _, bins, frames = spec.shape
        self.patch = int(patch or patch_side(bins, frames))
        self.rows, self.cols = -(-bins // self.patch), -(-frames // self.patch)
        self.pad = (0, self.cols * self.patch - frames, 0, self.rows * self.patch - bins)
        self.patches = nn.Conv2d(1, dim, self.patch, stride=self.patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim)) if pool == "cls" else None
        length = self.rows * self.cols + (pool == "cls")
        self.encoder = Encoder(length, dim, layers, heads, mlp_ratio, dropout, False, position, activation)
        self.head = nn.Linear(dim, spec.num_classes)
        _init_weights(self, layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.patches(nn.functional.pad(x, self.pad)).flatten(2).transpose(1, 2)  # (B, patches, dim)
        if self.cls is not None:
            h = torch.cat([self.cls.expand(len(x), -1, -1), h], dim=1)
        h, _ = self.encoder(h)
        return self.head(h[:, 0] if self.cls is not None else h.mean(dim=1))

    def attention_layers(self):
        return self.encoder.attention_layers()


def patch_side(bins: int, frames: int, most: int = 64) -> int:
    """The smallest square side of 4 or more whose patches (the last row and column padded) number
    at most ``most``."""
    side = 4
    while -(-bins // side) * -(-frames // side) > most:
        side += 1
    return side


class AudioTransformerClassifier(AudioClassifier):
    def attention_layers(self):
        return self.body.attention_layers()


def on_spectrogram(spec, body, frames_as_rows: bool = False, **options) -> nn.Module:
    """The audio branch of every builder (model=cnn, transformer, rnn, lstm, gru): ``body``, an image
    network's class (or a function of a spec), built with ``options`` for the clip's spectrogram as an
    image (``spectrogram_spec``; one frame per row for a network that reads a row per step), behind
    the front end. A body with attention layers keeps them visible (``attention_layers``)."""
    net = body(spectrogram_spec(spec, frames_as_rows), **options)
    wrapper = AudioTransformerClassifier if hasattr(net, "attention_layers") else AudioClassifier
    return wrapper(spec, net, frames_as_rows)


class M5(nn.Module):
    """M5 (Dai et al. 2017) on the raw waveform: a first convolution ``kernel_ms`` wide every
    ``stride_ms`` (sized in samples from the data's rate: 80 and 16 at 8 kHz), then one 3-tap
    convolution per further entry of ``channels``; each with batchnorm, ReLU and max pooling by 4
    (while the signal is long enough), then the mean over time and a linear classifier. Each clip is
    first scaled to unit RMS (a silent clip stays zero). The paper's M5 has channels
    (128, 128, 256, 512) and a stride of 4 samples; the defaults here are the smaller ones of
    PyTorch's speech-command tutorial, which train in minutes on a CPU."""

    accepts = ("audio",)

    def __init__(
        self,
        spec,
        channels: list[int] = (32, 32, 64, 64),
        kernel_ms: float = 10.0,
        stride_ms: float = 2.0,
        pool_size: int = 4,
        dropout: float = 0.0,
    ):
        super().__init__()
        pool = pool_size
        if not channels:
            raise ValueError("model.channels needs at least one entry")
        kernel = max(round(spec.sample_rate * kernel_ms / 1000), 1)
        stride = max(round(spec.sample_rate * stride_ms / 1000), 1)
        length = (spec.shape[0] - kernel) // stride + 1
        if length < 1:
            raise ValueError(
                f"a clip of {spec.shape[0]} samples is shorter than the first convolution ({kernel} samples); "
                "lengthen data.duration or lower model.kernel_ms"
            )
        layers: list[nn.Module] = []
        c_in = 1
        for i, c_out in enumerate(channels):
            k, s = (kernel, stride) if i == 0 else (3, 1)
            layers += [nn.Conv1d(c_in, c_out, k, stride=s, padding=0 if i == 0 else 1, bias=False)]
            layers += [nn.BatchNorm1d(c_out), nn.ReLU(inplace=True)]
            if length >= pool > 1:
                layers.append(nn.MaxPool1d(pool))
                length //= pool
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(c_in, spec.num_classes)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = wave.float()
        x = x / x.square().mean(dim=1, keepdim=True).sqrt().clamp_min(1e-4)
        return self.head(self.dropout(self.features(x[:, None]).mean(dim=2)))
