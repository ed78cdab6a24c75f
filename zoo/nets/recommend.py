"""Recommenders: networks that map (user, item) index pairs (..., 2) to a predicted rating (...).

Both start from the mean training rating (``spec.rating_mean``) plus a bias per user and per item,
so an untrained network predicts the mean and a user or item unseen in training (index
``spec.num_users`` / ``spec.num_items``: a zero row that never trains, ``padding_idx``) falls back to
what is known of the other side of the pair.

``penalty(x)``: the L2 weight decay of the rows a batch uses, averaged over its ratings (each user's
and item's vectors and biases decay once per rating they appear in, as in Funk's and Surprise's SGD
for SVD; the biases by their own ``bias_decay``, as Surprise's reg_bu and reg_bi). The task adds it
to the training loss. The optimizer's ``weight_decay`` decays every row at every step instead, the
rarely seen as hard as the common, which with Adam's per-row steps overfits the many users and items
with few ratings (RMSE 0.92 and rising on MovieLens-100k, where this decay holds 0.91).

``embeddings()``: the user and item vectors, for TensorBoard's Projector.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn


def _table(rows: int, dim: int, std: float) -> nn.Embedding:
    """``rows`` trainable rows of N(0, std) and a last zero row for the unknown (never trained)."""
    table = nn.Embedding(rows + 1, dim, padding_idx=rows)
    with torch.no_grad():
        nn.init.normal_(table.weight, 0.0, std) if std > 0 else table.weight.zero_()
        table.weight[rows].zero_()
    return table


class Recommender(nn.Module):
    """What both networks share: the sizes from the spec, the global mean and the two bias tables."""

    accepts = ("ratings",)

    def __init__(self, spec, weight_decay: float, bias_decay: float | None = None):
        super().__init__()
        if spec.num_users < 1 or spec.num_items < 1:
            raise ValueError("the ratings have no users or no items to train on")
        bias_decay = weight_decay if bias_decay is None else bias_decay
        if weight_decay < 0 or bias_decay < 0:
            raise ValueError(
                f"model.weight_decay and model.bias_decay must be 0 or more, got {weight_decay}, {bias_decay}"
            )
        self.num_users, self.num_items = spec.num_users, spec.num_items
        self.weight_decay, self.bias_decay = float(weight_decay), float(bias_decay)
        self.global_bias = nn.Parameter(torch.tensor(float(spec.rating_mean)))
        self.user_bias = _table(spec.num_users, 1, 0.0)
        self.item_bias = _table(spec.num_items, 1, 0.0)

    def biases(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return self.global_bias + self.user_bias(u).squeeze(-1) + self.item_bias(i).squeeze(-1)

    def tables(self) -> tuple[list[nn.Embedding], list[nn.Embedding]]:
        """The user tables and the item tables (vectors), for the penalty and the Projector."""
        raise NotImplementedError

    def penalty(self, x: torch.Tensor) -> torch.Tensor:
        u, i = x[..., 0], x[..., 1]
        users, items = self.tables()
        biases = self.user_bias(u).squeeze(-1) ** 2 + self.item_bias(i).squeeze(-1) ** 2
        squares = sum(t(u).pow(2).sum(-1) for t in users) + sum(t(i).pow(2).sum(-1) for t in items)
        return self.weight_decay * squares.mean() + self.bias_decay * biases.mean()

    def embeddings(self) -> dict[str, torch.Tensor]:
        """{"user": (num_users, d), "item": (num_items, d)}: each one's vectors side by side."""
        users, items = self.tables()
        return {
            "user": torch.cat([t.weight[: self.num_users] for t in users], dim=1),
            "item": torch.cat([t.weight[: self.num_items] for t in items], dim=1),
        }


class MatrixFactorisation(Recommender):
    """Biased matrix factorisation (Koren, Bell & Volinsky 2009; Funk's SVD as in Surprise):
        rating = mean + b_u + b_i + p_u . q_i, with ``dim`` factors per user and item, drawn from
        N(0, ``init_std``), and ``weight_decay`` on the factors and ``bias_decay`` on the biases each rating
    uses (``penalty``; null: ``weight_decay``). ``dropout``
        drops factors of the product p_u * q_i while training."""

    def __init__(
        self,
        spec,
        dim: int = 64,
        weight_decay: float = 0.1,
        bias_decay: float | None = None,
        init_std: float = 0.01,
        dropout: float = 0.0,
    ):
        super().__init__(spec, weight_decay, bias_decay)
        if dim < 1:
            raise ValueError(f"model.dim must be 1 or more, got {dim}")
        self.user = _table(spec.num_users, dim, init_std)
        self.item = _table(spec.num_items, dim, init_std)
        self.drop = nn.Dropout(dropout)

    def tables(self):
        return [self.user], [self.item]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, i = x[..., 0], x[..., 1]
        return self.biases(u, i) + self.drop(self.user(u) * self.item(i)).sum(-1)


class NeuralCF(Recommender):
    """Neural collaborative filtering (He et al. 2017, NeuMF): a GMF tower (the element-wise product
    of ``dim`` factors of user and item) and an MLP tower (user and item vectors of ``widths[0] / 2``
    each, concatenated, through ``widths`` with ReLU), their last layers concatenated into one linear
    output, here added to the mean and the biases so that it predicts a rating. ``weight_decay`` as
    for MF on all four tables; ``dropout`` after each MLP layer."""

    def __init__(
        self,
        spec,
        dim: int = 32,
        widths: list[int] = (64, 32, 16),
        weight_decay: float = 0.1,
        bias_decay: float | None = None,
        init_std: float = 0.01,
        dropout: float = 0.0,
    ):
        super().__init__(spec, weight_decay, bias_decay)
        layers = [int(n) for n in widths]
        if dim < 1 or not layers or min(layers) < 1 or layers[0] % 2:
            raise ValueError(f"model.dim must be 1 or more and model.widths[0] even, got {dim} and {layers}")
        self.gmf_user, self.gmf_item = _table(spec.num_users, dim, init_std), _table(spec.num_items, dim, init_std)
        half = layers[0] // 2
        self.mlp_user, self.mlp_item = _table(spec.num_users, half, init_std), _table(spec.num_items, half, init_std)
        mlp: list[nn.Module] = []
        for n_in, n_out in itertools.pairwise(layers):
            mlp += [nn.Linear(n_in, n_out), nn.ReLU(), nn.Dropout(dropout)]
        self.mlp = nn.Sequential(*mlp)
        self.out = nn.Linear(dim + layers[-1], 1)
        with torch.no_grad():
            self.out.weight.mul_(0.1)  # the towers start near zero: the first predictions are the biases'
            self.out.bias.zero_()

    def tables(self):
        return [self.gmf_user, self.mlp_user], [self.gmf_item, self.mlp_item]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, i = x[..., 0], x[..., 1]
        gmf = self.gmf_user(u) * self.gmf_item(i)
        mlp = self.mlp(torch.cat([self.mlp_user(u), self.mlp_item(i)], dim=-1))
        return self.biases(u, i) + self.out(torch.cat([gmf, mlp], dim=-1)).squeeze(-1)
