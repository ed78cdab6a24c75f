"""Recommenders: networks that map (user, item) index pairs (..., 2) to a predicted rating (...).

All start from the mean training rating (``spec.rating_mean``) plus a bias per user and per item,
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

SVD++ also reads which items each user rated in training (implicit feedback): data, not weights,
handed over by the recommend task from the datamodule when a fit starts (``set_rated``) and kept in
the network as buffers, so that a checkpoint holds them and answers alone; their sizes come from
the spec (``num_users``, ``num_rated``), as every size a checkpoint is checked against.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
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


class SVDpp(Recommender):
    """SVD++ (Koren 2008, "Factorization meets the neighborhood"): biased MF whose user vector also
    holds the items the user rated in training, N(u), whatever the ratings were,
        rating = mean + b_u + b_i + (p_u + |N(u)|^-1/2 sum_{j in N(u)} y_j) . q_i,
    with ``dim`` factors each for p, q and y, drawn from N(0, ``init_std``). ``weight_decay`` and
    ``bias_decay`` as for MF; ``implicit_decay`` (null: ``weight_decay``) on every y_j of N(u), once per
    rating of u (Surprise's reg_yj). A user unseen in training has no p, no y and no bias (MF's
    fallback). N(u) is ``rated_items[rated_offsets[u] : rated_offsets[u + 1]]`` (buffers, filled by
    ``set_rated``); each batch sums the y of its distinct users' lists in one ``EmbeddingBag``."""

    def __init__(
        self,
        spec,
        dim: int = 32,
        weight_decay: float = 0.1,
        bias_decay: float | None = None,
        implicit_decay: float | None = None,
        init_std: float = 0.01,
        dropout: float = 0.0,
    ):
        super().__init__(spec, weight_decay, bias_decay)
        implicit_decay = self.weight_decay if implicit_decay is None else implicit_decay
        if dim < 1:
            raise ValueError(f"model.dim must be 1 or more, got {dim}")
        if implicit_decay < 0:
            raise ValueError(f"model.implicit_decay must be 0 or more, got {implicit_decay}")
        rated = int(getattr(spec, "num_rated", 0))
        if not 0 <= rated <= spec.num_users * spec.num_items:
            raise ValueError(
                f"spec.num_rated must be 0 to num_users x num_items ({spec.num_users * spec.num_items}), got {rated}"
            )
        self.implicit_decay = float(implicit_decay)
        self.user = _table(spec.num_users, dim, init_std)
        self.item = _table(spec.num_items, dim, init_std)
        self.implicit = nn.EmbeddingBag(spec.num_items, dim, mode="sum")
        with torch.no_grad():
            nn.init.normal_(self.implicit.weight, 0.0, init_std) if init_std > 0 else self.implicit.weight.zero_()
        self.drop = nn.Dropout(dropout)
        # user u's items: rated_items[rated_offsets[u] : rated_offsets[u + 1]]; the unseen user
        # (index num_users) has none. Empty for every user until set_rated.
        self.register_buffer("rated_offsets", torch.zeros(spec.num_users + 2, dtype=torch.int64))
        self.register_buffer("rated_items", torch.zeros(rated, dtype=torch.int64))
        self.register_load_state_dict_pre_hook(_rated_before_loading)

    @torch.no_grad()
    def set_rated(self, offsets: torch.Tensor, items: torch.Tensor) -> None:
        """N(u) of every user: ``offsets`` (num_users + 1,) into ``items`` (num_rated,), as the
        datamodule's ``rated_offsets`` and ``rated_items``."""
        if offsets.shape != (self.num_users + 1,) or items.shape != self.rated_items.shape:
            raise ValueError(
                f"the rated lists have {tuple(offsets.shape)} offsets and {tuple(items.shape)} items, the network "
                f"{self.num_users + 1} and {tuple(self.rated_items.shape)} (spec.num_users and spec.num_rated)"
            )
        offsets = torch.cat([offsets, offsets[-1:]]).to(self.rated_offsets)  # and the unseen user's, empty
        _check_rated(offsets, items, self.num_items)
        self.rated_offsets.copy_(offsets)
        self.rated_items.copy_(items)

    def tables(self):
        return [self.user], [self.item]

    def _bags(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The items of N(u) of ``users`` (n,) one list after another, where each list starts, and
        each list's length."""
        start = self.rated_offsets[users]
        count = self.rated_offsets[users + 1] - start
        first = count.cumsum(0) - count
        where = torch.repeat_interleave(start - first, count)
        where += torch.arange(len(where), device=where.device)
        return self.rated_items[where], first, count

    def implicit_vectors(self, users: torch.Tensor) -> torch.Tensor:
        """(n, dim): |N(u)|^-1/2 sum_{j in N(u)} y_j of each of ``users`` (n,); zero for no items."""
        items, first, count = self._bags(users)
        return self.implicit(items, first) * count.clamp_min(1).to(self.implicit.weight.dtype).rsqrt().unsqueeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, i = x[..., 0], x[..., 1]
        users, which = torch.unique(u.reshape(-1), return_inverse=True)  # each distinct user's bag once
        own = self.user(u) + self.implicit_vectors(users)[which].reshape(*u.shape, -1)
        return self.biases(u, i) + self.drop(own * self.item(i)).sum(-1)

    def penalty(self, x: torch.Tensor) -> torch.Tensor:
        u = x[..., 0].reshape(-1)
        users, which = torch.unique(u, return_inverse=True)
        items, first, _ = self._bags(users)
        squares = F.embedding_bag(items, self.implicit.weight.pow(2).sum(-1, keepdim=True), first, mode="sum")
        return super().penalty(x) + self.implicit_decay * squares.squeeze(-1)[which].mean()

    def embeddings(self) -> dict[str, torch.Tensor]:
        """{"user": p_u + the implicit part, "item": q_i}: the vectors a rating multiplies."""
        users = torch.arange(self.num_users, device=self.rated_offsets.device)
        return {
            "user": self.user.weight[: self.num_users] + self.implicit_vectors(users),
            "item": self.item.weight[: self.num_items],
        }


def _check_rated(offsets: torch.Tensor | None, items: torch.Tensor | None, num_items: int) -> None:
    """Rated lists are indices: a checkpoint's (anyone's file) must stay within the tables, or an
    embedding lookup would read outside them. Either may be None (not in a partial state dict)."""
    ok = offsets is None or (
        int(offsets[0]) == 0 and bool((offsets[1:] >= offsets[:-1]).all()) and int(offsets[-1]) == int(offsets[-2])
    )
    ok = ok and (items is None or len(items) == 0 or (int(items.min()) >= 0 and int(items.max()) < num_items))
    ok = ok and (offsets is None or items is None or int(offsets[-1]) == len(items))
    if not ok:
        raise RuntimeError(
            f"the rated lists (rated_offsets, rated_items) are not each user's items in order within the {num_items} items"
        )


def _rated_before_loading(net: SVDpp, state_dict: dict, prefix: str, *_) -> None:
    """The rated lists of a state dict (a checkpoint's) are checked before they are copied into ``net``."""
    offsets, items = state_dict.get(f"{prefix}rated_offsets"), state_dict.get(f"{prefix}rated_items")
    if isinstance(offsets, torch.Tensor) and offsets.shape != net.rated_offsets.shape:
        offsets = None  # torch reports the size mismatch itself
    if isinstance(items, torch.Tensor) and items.shape != net.rated_items.shape:
        items = None
    if not any(isinstance(t, torch.Tensor) and t.is_meta for t in (offsets, items)):
        _check_rated(offsets, items, net.num_items)


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
