"""RecommendTask: trains any network that maps (user, item) index pairs (B, 2) to ratings (B,).

The training loss is the mean squared error of the ratings plus the network's ``penalty(x)`` when it
has one (the weight decay of the rows the batch uses: zoo/nets/recommend.py). Validation and test
report, on predictions clipped to the data's rating scale (as Surprise does):

- ``rmse`` and ``mae`` of the ratings (``loss``: the MSE, so ``val/loss`` is ``val/rmse`` squared);
- ``hr@10`` and ``ndcg@10`` by the NCF protocol (He et al. 2017): each held-out item ranked by the
  network's score among the 99 items its user never rated that came with it in the batch (the
  datamodule's candidates), a hit when fewer than 10 of them score at least as high (ties count
  against the held-out item), NDCG 1 / log2(rank + 2) for a hit;
- ``unseen_users`` and ``unseen_items``: how many of the split's ratings have a user (an item) that
  the training split does not, predicted from what is known (the mean and the other side's bias).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanMetric, MeanSquaredError, SumMetric
from typing_extensions import override

from zoo.errors import UserError
from zoo.tasks.base import Task

TOP_K = 10


def rank_of_first(scores: torch.Tensor) -> torch.Tensor:
    """(B, 1 + n) scores, the held-out item's first -> (B,) how many of the others score at least as high."""
    return (scores[:, 1:] >= scores[:, :1]).sum(dim=1)


class RecommendTask(Task):
    # Every metric this task logs: what checkpoints, early stopping and schedulers can watch.
    logged_metrics = (
        "val/loss",
        "val/rmse",
        "val/mae",
        f"val/hr@{TOP_K}",
        f"val/ndcg@{TOP_K}",
        "train/loss_step",
        "train/loss",
        "train/rmse",
    )
    train_sum_names = ("loss * n", "squared error", "n")

    def __init__(self, *args, num_users: int, num_items: int, rating_min: float, rating_max: float, **kwargs):
        """``num_users``/``num_items``: the index of an unseen user/item; ``rating_min``/``rating_max``:
        the scale predictions are clipped to. ``args`` and ``kwargs``: those of ``Task``."""
        super().__init__(*args, **kwargs)
        self.num_users, self.num_items = num_users, num_items
        self.rating_min, self.rating_max = float(rating_min), float(rating_max)
        self.metrics = nn.ModuleDict(
            {
                stage: nn.ModuleDict(
                    {
                        "rmse": MeanSquaredError(squared=False),
                        "mae": MeanAbsoluteError(),
                        f"hr@{TOP_K}": MeanMetric(),
                        f"ndcg@{TOP_K}": MeanMetric(),
                        "unseen_users": SumMetric(),
                        "unseen_items": SumMetric(),
                    }
                )
                for stage in ("val", "test")
            }
        )

    @classmethod
    @override
    def options_from(cls, spec, net, hparams) -> dict:
        return {
            "num_users": spec.num_users,
            "num_items": spec.num_items,
            "rating_min": spec.rating_min,
            "rating_max": spec.rating_max,
        }

    @override
    def setup(self, stage: str) -> None:
        """A network that reads which items each user rated (SVD++: ``set_rated``) gets them from the
        datamodule's training split when a fit starts; evaluated or resumed, it has its checkpoint's."""
        set_rated = getattr(self.net, "set_rated", None)
        if stage != "fit" or set_rated is None:
            return
        dm = self.trainer.datamodule
        offsets, items = getattr(dm, "rated_offsets", None), getattr(dm, "rated_items", None)
        if offsets is None or items is None:
            raise UserError(
                f"{type(self.net).__name__} reads the items each user rated, and data={dm.spec.name if dm else None} "
                f"does not list them; use a ratings dataset (data=ratings, movielens_100k, movielens_latest_small)."
            )
        try:
            set_rated(offsets, items)
        except ValueError as e:
            raise UserError(f"the rated lists of the data do not fit the network built from its spec ({e}).") from None

    def clip(self, ratings: torch.Tensor) -> torch.Tensor:
        return ratings.clamp(self.rating_min, self.rating_max) if self.rating_max > self.rating_min else ratings

    @override
    def _train_loss(self, batch) -> torch.Tensor:
        x, y = batch[0], batch[1]
        error = F.mse_loss(self.net(x), y)
        penalty = getattr(self.net, "penalty", None)
        loss = error + penalty(x) if penalty is not None else error
        with torch.no_grad():
            self.train_sums[0].add_(loss.detach(), alpha=len(y))
            self.train_sums[1].add_(error.detach(), alpha=len(y))
            self.train_sums[2].add_(len(y))
        return loss

    @override
    def log_train_sums(self, loss_sum, squared_error, n) -> None:
        self.log("train/loss", loss_sum / n.clamp_min(1), sync_dist=True)
        self.log("train/rmse", (squared_error / n.clamp_min(1)).sqrt(), sync_dist=True, prog_bar=True)

    def scores(self, x: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """(B, C) the network's scores of each row's user with each of its candidate items."""
        users = x[:, :1].expand_as(candidates)
        return self.net(torch.stack([users, candidates], dim=-1))

    @override
    def evaluate(self, batch, stage: str) -> dict:
        x, y = batch[0], batch[1]
        pred = self.clip(self.net(x))
        loss = F.mse_loss(pred, y)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, batch_size=len(y), sync_dist=True)
        metrics = self.metrics[stage]
        metrics["rmse"].update(pred, y)
        metrics["mae"].update(pred, y)
        if len(batch) > 2:
            rank = rank_of_first(self.scores(x, batch[2]))
            hit = (rank < TOP_K).float()
            metrics[f"hr@{TOP_K}"].update(hit)
            metrics[f"ndcg@{TOP_K}"].update(hit / torch.log2(rank.float() + 2.0))
        metrics["unseen_users"].update((x[:, 0] == self.num_users).sum())
        metrics["unseen_items"].update((x[:, 1] == self.num_items).sum())
        ranked = (f"hr@{TOP_K}", f"ndcg@{TOP_K}") if len(batch) > 2 else ()
        for name in ("rmse", "mae", *ranked, "unseen_users", "unseen_items"):
            self.log(f"{stage}/{name}", metrics[name], on_step=False, on_epoch=True, prog_bar=name == "rmse")
        return {"loss": loss, "ratings": pred.detach()}

    @override
    def predict_step(self, batch, batch_idx):
        """The network's scores of the pairs, unclipped: predict.py ranks by them (clipped, many items
        would tie at the top of the scale) and clips the ratings it shows (zoo/run/outputs.py)."""
        return self.net(batch[0])
