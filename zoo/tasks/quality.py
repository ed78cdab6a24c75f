"""How good generated images are, without downloaded weights: a small classifier (the *judge*) is
trained on the run's own training images, and samples are compared with real images in its
feature space.

- ``fid``: the Fréchet distance between Gaussians fitted to the judge's 64 features of the samples
  and of the training images (FID, Heusel et al. 2017, with this judge in place of Inception-v3).
  Lower is better; ``fid_real`` is the same distance for as many real held-out images, the floor
  that sampling noise alone gives.
- ``confidence``: the judge's mean top-class probability on the samples (do they look like some class?).
- ``coverage``: the effective number of classes among the judge's predictions on the samples,
  exp(entropy), over the number of classes (1 = every class as often; 0.1 of 10 = one class only,
  mode collapse).
- ``cond_acc`` (class-conditional models): how often the judge sees the class asked for.
- ``class_share/<k>``: the share of the samples the judge puts in class k (a tenth each is fair for
  ten classes); ``rarest_share``: the smallest of them over the fair share (1: every class as often,
  0: a class never drawn); ``entropy``: the entropy of the shares over its most, log K (1: even).
- ``confidence_real``: the judge's mean top-class probability on real held-out images, what
  ``confidence`` is to be compared with.
- ``precision`` and ``recall`` (Kynkäänniemi et al. 2019): in the judge's feature space, the share of
  samples that fall within the k-nearest-neighbour radius (k=3) of some real image (are the samples
  realistic?), and the share of real images within that radius of some sample (is all of the data
  drawn?). A collapsed generator keeps its precision and loses its recall.
- ``fid_coverage``: ``fid`` divided by ``coverage``, the measure the best checkpoint is chosen by: an
  epoch that draws fewer classes pays for it even when its few classes look good.

The judge is trained deterministically (fixed seed and order) and cached under
``<paths.data_dir>/judges/``, keyed by the data's content, so every run on the same data and split
is judged by the same network. Plain PyTorch.
"""

from __future__ import annotations

import hashlib
import math
import os
import time

import torch
import torch.nn.functional as F
from torch import nn

JUDGE_VERSION = 3
FEATURES = 64
MAX_STEPS = 1000  # at most this many Adam steps ...
MAX_EPOCHS = 40  # ... and at most this many passes over the training images
BATCH = 128
# Smoothed targets keep the judge from growing its features to memorise the training images: its
# held-out accuracy is higher, and real held-out images stay close to the training ones (fid_real).
LABEL_SMOOTHING = 0.1
SEED = 1234


class Judge(nn.Module):
    """Three strided 3x3 convolutions (16, 32, 64 channels), pooled to 2x2, then 64 features and the
    class logits: cheap enough to train in seconds on a CPU, good enough to tell digits apart."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 16, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 4, FEATURES),
        )
        self.head = nn.Linear(FEATURES, max(num_classes, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, class logits); the features are taken before the ReLU, as smoother statistics."""
        f = self.body(x)
        return f, self.head(F.relu(f))


def gaussian(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    f = features.double()
    mu = f.mean(0)
    centred = f - mu
    return mu, centred.T @ centred / max(len(f) - 1, 1)


def frechet_distance(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor) -> float:
    """||mu1 - mu2||^2 + Tr(C1 + C2 - 2 (C1 C2)^1/2), the trace of the root taken as the sum of the
    square roots of the eigenvalues of C1^1/2 C2 C1^1/2 (symmetric, so no complex arithmetic)."""
    mu1, cov1, mu2, cov2 = (t.double().cpu() for t in (mu1, cov1, mu2, cov2))
    vals, vecs = torch.linalg.eigh(cov1)
    root1 = vecs @ torch.diag(vals.clamp_min(0).sqrt()) @ vecs.T
    cross = torch.linalg.eigvalsh(root1 @ cov2 @ root1).clamp_min(0).sqrt().sum()
    return float((mu1 - mu2).pow(2).sum() + cov1.trace() + cov2.trace() - 2 * cross)


def _fingerprint(x: torch.Tensor, y: torch.Tensor) -> str:
    """A key for the training images: their count, shape, labels and every 97th image."""
    h = hashlib.sha1(f"{JUDGE_VERSION}|{tuple(x.shape)}|".encode())
    h.update(y.cpu().to(torch.int64).numpy().tobytes())
    h.update(x[::97].detach().cpu().float().mul(256).round().to(torch.int32).numpy().tobytes())
    return h.hexdigest()[:16]


def train_judge(x: torch.Tensor, y: torch.Tensor, num_classes: int, device) -> tuple[Judge, dict]:
    """Train on (x, y) with a fixed seed and order; returns the judge (eval mode) and its train-set
    feature statistics and accuracy. On a CPU it trains on one thread: its convolutions are too
    small to gain from more, and several threads on cores other processes also use made it ten
    times slower (measured on a shared 2-core machine)."""
    threads = torch.get_num_threads()
    if torch.device(device).type == "cpu":
        torch.set_num_threads(1)
    try:
        return _train_judge(x, y, num_classes, device)
    finally:
        torch.set_num_threads(threads)


def _train_judge(x: torch.Tensor, y: torch.Tensor, num_classes: int, device) -> tuple[Judge, dict]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        judge = Judge(x.shape[1], num_classes).to(device)
    g = torch.Generator().manual_seed(SEED)
    steps_per_epoch = math.ceil(len(x) / BATCH)
    steps = min(MAX_STEPS, MAX_EPOCHS * steps_per_epoch) if num_classes >= 2 else 0
    opt = torch.optim.Adam(judge.parameters(), lr=2e-3)
    order = torch.randperm(len(x), generator=g)
    for step in range(steps):
        i = step % steps_per_epoch
        if i == 0 and step:
            order = torch.randperm(len(x), generator=g)
        idx = order[i * BATCH : (i + 1) * BATCH]
        xb, yb = x[idx.to(x.device)].to(device), y[idx.to(y.device)].to(device)
        loss = F.cross_entropy(judge(xb)[1], yb, label_smoothing=LABEL_SMOOTHING)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    judge.eval()
    feats, correct = [], 0
    with torch.no_grad():
        for xb, yb in zip(x.split(1024), y.split(1024)):
            f, logits = judge(xb.to(device))
            feats.append(f)
            correct += int((logits.argmax(1) == yb.to(device)).sum())
    mu, cov = gaussian(torch.cat(feats))
    return judge, {"mu": mu.cpu(), "cov": cov.cpu(), "train_acc": correct / len(x), "steps": steps}


def load_or_train_judge(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, cache_dir: str | None, name: str, device
) -> tuple[Judge, dict]:
    """The cached judge for these images, or a new one (saved when ``cache_dir`` is writable)."""
    path = os.path.join(cache_dir, "judges", f"{name}-{_fingerprint(x, y)}.pt") if cache_dir else None
    if path and os.path.isfile(path):
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            judge = Judge(x.shape[1], num_classes)
            judge.load_state_dict(saved["state_dict"])
            return judge.to(device).eval(), saved["stats"]
        except (RuntimeError, KeyError, EOFError, OSError):
            pass  # unreadable or of another shape: train afresh and overwrite it
    started = time.perf_counter()
    judge, stats = train_judge(x, y, num_classes, device)
    stats["seconds"] = round(time.perf_counter() - started, 2)
    print(
        f"Quality judge for {name}: a small CNN trained on {len(x)} training images in {stats['seconds']} s "
        f"({stats['steps']} steps, train accuracy {stats['train_acc']:.3f})" + (f"; cached in {path}" if path else "")
    )
    if path:
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            torch.save({"state_dict": {k: v.cpu() for k, v in judge.state_dict().items()}, "stats": stats}, tmp)
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only data folder: the judge is retrained next time, with the same result
    return judge, stats


class QualityMeter:
    """Collects the judge's view of real and generated images over one evaluation pass."""

    def __init__(self, judge: Judge, reference: dict, num_classes: int):
        self.judge, self.reference, self.num_classes = judge, reference, num_classes
        self.real: list[torch.Tensor] = []
        self.fake: list[torch.Tensor] = []
        self.probs: list[torch.Tensor] = []
        self.real_probs: list[torch.Tensor] = []
        self.asked: list[torch.Tensor] = []

    @torch.no_grad()
    def update(self, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        f_real, logits_real = self.judge(real)
        self.real.append(f_real)
        self.real_probs.append(logits_real.float().softmax(1))
        f, logits = self.judge(fake)
        self.fake.append(f)
        self.probs.append(logits.float().softmax(1))
        if labels is not None:
            self.asked.append(labels)

    def compute(self) -> dict[str, float]:
        if not self.fake:
            return {}
        mu, cov = self.reference["mu"], self.reference["cov"]
        real, fake = torch.cat(self.real), torch.cat(self.fake)
        out = {
            "fid": frechet_distance(*gaussian(fake), mu, cov),
            "fid_real": frechet_distance(*gaussian(real), mu, cov),
        }
        out["precision"], out["recall"] = precision_recall(real, fake)
        out["fid_coverage"] = out["fid"]  # without classes there is no coverage to divide by
        if self.num_classes >= 2:
            probs = torch.cat(self.probs)
            preds = probs.argmax(1)
            share = torch.bincount(preds, minlength=self.num_classes).double() / len(preds)
            entropy = -(share[share > 0] * share[share > 0].log()).sum()
            out["confidence"] = float(probs.max(1).values.mean())
            out["confidence_real"] = float(torch.cat(self.real_probs).max(1).values.mean())
            out["coverage"] = float(entropy.exp() / self.num_classes)
            out["entropy"] = float(entropy / math.log(self.num_classes))
            out["rarest_share"] = float(share.min() * self.num_classes)
            out["fid_coverage"] = out["fid"] / max(out["coverage"], 1e-6)
            for k, v in enumerate(share.tolist()):
                out[f"class_share/{k}"] = v
            if self.asked:
                out["cond_acc"] = float((preds == torch.cat(self.asked)).double().mean())
        return out


NEIGHBOURS = 3  # k of the k-nearest-neighbour radii (Kynkäänniemi et al. use 3)
MAX_POINTS = 5000  # precision and recall on at most this many real and generated images


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = NEIGHBOURS) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of ``fake`` against ``real`` features:
    each set's manifold is the union of balls around its points reaching their k-th nearest neighbour
    in the same set; precision is the share of ``fake`` inside the real manifold, recall the share of
    ``real`` inside the fake one."""
    real, fake = real[:MAX_POINTS].double(), fake[:MAX_POINTS].double()
    if len(real) <= k or len(fake) <= k:
        return float("nan"), float("nan")

    def radii(points: torch.Tensor) -> torch.Tensor:
        d = torch.cdist(points, points)
        return d.kthvalue(k + 1, dim=1).values  # the 0th nearest is the point itself

    def inside(points: torch.Tensor, centres: torch.Tensor, r: torch.Tensor) -> float:
        return float((torch.cdist(points, centres) <= r[None, :]).any(1).double().mean())

    return inside(fake, real, radii(real)), inside(real, fake, radii(fake))
