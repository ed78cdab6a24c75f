"""Transformers: one attention network for text, images and numeric series (model=transformer).

All four share one pre-norm block (``Block``: x + attention(norm(x)), then x + MLP(norm(x))) whose
attention is ``torch.nn.functional.scaled_dot_product_attention`` (fused kernels on a GPU). What
surrounds the blocks is what the data poses:

- ``TransformerLanguageModel`` (token data, next-token prediction): the GPT shape. Token and
  position embeddings, causal blocks, a final norm, and a head that shares the embedding's weights
  (weight tying). ``forward_with_state`` carries a key/value cache, so sampling N tokens costs N
  one-token steps, not N passes over the whole context.
- ``TokenTransformerClassifier`` (token sequences with classes, e.g. ag_news): an encoder over the
  tokens with a class token in front (``pool=cls``) or the mean over real tokens (``pool=mean``);
  padding is masked, so it changes nothing.
- ``ImageTransformerClassifier`` (images): a small ViT. The image is cut into square patches
  (``patch``; by default the smallest side of 2 px or more that gives at most 64 patches: 4 px for
  28 and 32 px images, 2 px for 8 px digits), each projected to ``dim``, with a class token and learned positions.
- ``PatchForecaster`` (numeric series): PatchTST (Nie et al., ICLR 2023). Each channel's window,
  instance-normalised (RevIN), is cut into overlapping patches (``patch`` steps every ``stride``),
  encoded on its own (channel independence: the same weights for every channel), flattened and
  mapped linearly to the horizon.

- ``TableTransformer`` (tables): FT-Transformer (Gorishniy et al., NeurIPS 2021). Each feature of a
  row is a token: a numeric value (or missing indicator) x_j becomes x_j * w_j + b_j, a categorical
  one its embedding plus a bias of its own; a class token is added, the tokens are encoded without
  positions (each feature's own weights say which it is), and the class token's vector is read out
  to class logits or one value.
On audio, ``zoo.nets.audio.SpectrogramTransformer`` (AST, Gong et al. 2021): the same encoder over
square patches of each clip's spectrogram.

``Transformer`` (model=transformer) builds the one the data needs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from zoo.nets.blocks import Forecaster, make_activation, pad_index, table_outputs, token_embedding

POSITIONS = ("learned", "sinusoidal", "none")
POOLS = ("cls", "mean")


class SelfAttention(nn.Module):
    """Multi-head self-attention. ``keep_weights=True`` makes the next forward compute the attention
    explicitly and keep it in ``weights`` (B, heads, T, S), and in ``visible`` how many keys each
    query was allowed to see (B or 1, 1, T): what the attention callback reads, on the few steps it
    looks (the fused kernel never forms the matrix)."""

    def __init__(self, dim: int, heads: int, dropout: float, causal: bool):
        super().__init__()
        self.heads, self.causal, self.dropout = heads, causal, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.keep_weights = False
        self.weights: torch.Tensor | None = None
        self.visible: torch.Tensor | None = None

    def forward(
        self, x: torch.Tensor, keep: torch.Tensor | None = None, cache: tuple | None = None
    ) -> tuple[torch.Tensor, tuple]:
        """(B, T, dim) -> (B, T, dim) and this layer's keys and values (with those of ``cache``, the
        earlier positions', in front). ``keep``: (B, S) True where a key may be attended to."""
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if cache is not None:
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        mask = None if keep is None else keep[:, None, None, :]
        # causal: query i sees keys up to its own position, past + i (past = the cached positions)
        past = k.shape[2] - t
        if self.causal and t > 1:
            allowed = torch.ones(t, k.shape[2], dtype=torch.bool, device=x.device).tril(past)
            mask = allowed if mask is None else mask & allowed
        p = self.dropout if self.training else 0.0
        if self.keep_weights:
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            self.weights = scores.softmax(dim=-1).detach()
            full = torch.full((1, 1, t), k.shape[2], device=x.device)
            self.visible = full if mask is None else torch.broadcast_to(mask, (b, 1, t, k.shape[2])).sum(dim=-1)
            out = F.dropout(self.weights, p, self.training) @ v
        elif self.causal and t > 1 and past == 0 and keep is None:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.proj(out.transpose(1, 2).reshape(b, t, d)), (k, v)


class Block(nn.Module):
    """Pre-norm transformer block: x + attention(norm(x)), then x + MLP(norm(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float, causal: bool, activation: str):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, dropout, causal)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), make_activation(activation), nn.Linear(hidden, dim), nn.Dropout(dropout)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None, cache: tuple | None = None):
        a, kv = self.attn(self.norm1(x), keep, cache)
        x = x + self.drop(a)
        return x + self.mlp(self.norm2(x)), kv


def sinusoidal(length: int, dim: int) -> torch.Tensor:
    """(length, dim) fixed positions of Vaswani et al.: sines and cosines of geometric wavelengths."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    rate = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * rate)
    table[:, 1::2] = torch.cos(position * rate[: dim // 2])
    return table


class Encoder(nn.Module):
    """Positions, a stack of blocks and a final norm over (B, T, dim) vectors: what every network
    here shares. ``position``: learned (a trained vector per position, the GPT/ViT choice),
    sinusoidal (fixed) or none (causal attention alone tells a language model the order)."""

    def __init__(
        self,
        length: int,
        dim: int,
        layers: int,
        heads: int,
        mlp_ratio: float,
        dropout: float,
        causal: bool,
        position: str,
        activation: str,
    ):
        super().__init__()
        if position not in POSITIONS:
            raise ValueError(f"unknown position '{position}'; choose one of: {', '.join(POSITIONS)}")
        if dim < 1 or layers < 1 or heads < 1 or dim % heads:
            raise ValueError(
                f"model.dim must be a positive multiple of model.heads and model.layers positive, got "
                f"dim={dim}, heads={heads}, layers={layers}"
            )
        self.length = length
        if position == "learned":
            self.position = nn.Parameter(torch.zeros(length, dim))
            nn.init.normal_(self.position, std=0.02)
        else:
            self.register_buffer("position", sinusoidal(length, dim) if position == "sinusoidal" else None)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, dropout, causal, activation) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None, cache: list | None = None, start: int = 0):
        """(B, T, dim) -> (B, T, dim) and each layer's keys and values; ``start``: the position of the
        first of the T vectors (the cached ones come before it)."""
        if self.position is not None:
            x = x + self.position[start : start + x.shape[1]]
        x = self.drop(x)
        kvs = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, keep, None if cache is None else cache[i])
            kvs.append(kv)
        return self.norm(x), kvs

    def attention_layers(self) -> list[SelfAttention]:
        return [b.attn for b in self.blocks]


def _init_weights(net: nn.Module, layers: int) -> None:
    """GPT-2's initialisation: normal(0, 0.02) weights, zero biases, and the projections that add to
    the residual stream scaled down by sqrt(2 x layers), so its variance does not grow with depth."""
    for name, p in net.named_parameters():
        if name.endswith("bias") or "norm" in name or name.endswith("position") or p.dim() < 2:
            if name.endswith("bias"):
                nn.init.zeros_(p)
            continue
        std = 0.02 / math.sqrt(2 * layers) if name.endswith(("attn.proj.weight", "mlp.2.weight")) else 0.02
        nn.init.normal_(p, std=std)
    for m in net.modules():
        if isinstance(m, nn.Embedding) and m.padding_idx is not None:
            with torch.no_grad():
                m.weight[m.padding_idx].zero_()  # the padding id's vector stays zero


class TransformerLanguageModel(nn.Module):
    accepts = ("tokens",)

    def __init__(self, spec, dim, layers, heads, mlp_ratio, dropout, position, activation):
        super().__init__()
        self.context = spec.shape[0]
        self.embed = token_embedding(spec, dim)
        self.encoder = Encoder(self.context, dim, layers, heads, mlp_ratio, dropout, True, position, activation)
        self.head = nn.Linear(dim, spec.vocab_size, bias=False)
        _init_weights(self, layers)
        self.head.weight = self.embed.weight  # weight tying (Press & Wolf 2017): one matrix, in and out

    def forward_with_state(self, x: torch.Tensor, state=None):
        """Next-token logits (B, T, vocab) for ids (B, T) that follow the positions in ``state`` (the
        key/value cache of the earlier ones, None at the start), and the state after them. When the
        context is full, the cache restarts from the last half of it (recomputed once), so each new
        token costs one short step on average and the positions stay within the trained ones."""
        cache, ids = state if state is not None else (None, x[:, :0])
        ids = torch.cat([ids, x], dim=1)
        if ids.shape[1] > self.context:  # too long for the positions: start again from recent tokens
            ids = ids[:, -max(self.context // 2, x.shape[1]) :]
            cache, x = None, ids
        start = 0 if cache is None else cache[0][0].shape[2]
        h, cache = self.encoder(self.embed(x), cache=cache, start=start)
        return self.head(h), (cache, ids)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] > self.context:
            # Evaluation windows longer than the trained positions (data.eval_seq_len): read as consecutive
            # windows of the context, each from its start, which is all the context this network has.
            return torch.cat([self(x[:, i : i + self.context]) for i in range(0, x.shape[1], self.context)], dim=1)
        return self.head(self.encoder(self.embed(x))[0])

    def attention_layers(self) -> list[SelfAttention]:
        return self.encoder.attention_layers()


class TokenTransformerClassifier(nn.Module):
    accepts = ("tokens",)

    def __init__(self, spec, dim, layers, heads, mlp_ratio, dropout, position, activation, pool):
        super().__init__()
        self.pad_index, self.pool = pad_index(spec), pool
        self.embed = token_embedding(spec, dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim)) if pool == "cls" else None
        length = spec.shape[0] + (pool == "cls")
        self.encoder = Encoder(length, dim, layers, heads, mlp_ratio, dropout, False, position, activation)
        self.head = nn.Linear(dim, spec.num_classes)
        _init_weights(self, layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        keep = (x != self.pad_index) if self.pad_index is not None else torch.ones_like(x, dtype=torch.bool)
        if self.cls is not None:
            h = torch.cat([self.cls.expand(x.shape[0], -1, -1), h], dim=1)
            keep = torch.cat([keep.new_ones(x.shape[0], 1), keep], dim=1)
        elif self.pad_index is not None:
            keep = keep.clone()
            keep[:, 0] |= ~keep.any(dim=1)  # an all-padding sequence still attends somewhere
        h, _ = self.encoder(h, keep if self.pad_index is not None else None)
        if self.cls is not None:
            return self.head(h[:, 0])
        w = keep[..., None].to(h.dtype)
        return self.head((h * w).sum(dim=1) / w.sum(dim=1))

    def attention_layers(self) -> list[SelfAttention]:
        return self.encoder.attention_layers()


def patch_side(height: int, width: int, most: int = 64) -> int:
    """The smallest side of at least 2 px that divides both image sides and gives at most ``most``
    patches (a one-pixel patch carries too little to attend to)."""
    for side in range(2, min(height, width) + 1):
        if height % side == 0 and width % side == 0 and (height // side) * (width // side) <= most:
            return side
    return math.gcd(height, width)


class ImageTransformerClassifier(nn.Module):
    accepts = ("image",)

    def __init__(self, spec, dim, layers, heads, mlp_ratio, dropout, position, activation, pool, patch):
        super().__init__()
        c, h, w = spec.shape
        patch = patch or patch_side(h, w)
        if h % patch or w % patch:
            raise ValueError(f"model.patch={patch} does not divide the {h}x{w} images; try model.patch=null")
        self.pool = pool
        self.patches = nn.Conv2d(c, dim, patch, stride=patch)  # one linear projection per patch
        self.cls = nn.Parameter(torch.zeros(1, 1, dim)) if pool == "cls" else None
        length = (h // patch) * (w // patch) + (pool == "cls")
        self.encoder = Encoder(length, dim, layers, heads, mlp_ratio, dropout, False, position, activation)
        self.head = nn.Linear(dim, spec.num_classes)
        _init_weights(self, layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.patches(x).flatten(2).transpose(1, 2)  # (B, patches, dim), row by row
        if self.cls is not None:
            h = torch.cat([self.cls.expand(x.shape[0], -1, -1), h], dim=1)
        h, _ = self.encoder(h)
        return self.head(h[:, 0] if self.cls is not None else h.mean(dim=1))

    def attention_layers(self) -> list[SelfAttention]:
        return self.encoder.attention_layers()


class TableTransformer(nn.Module):
    accepts = ("table",)

    def __init__(self, spec, dim, layers, heads, mlp_ratio, dropout, activation, pool):
        super().__init__()
        kinds = list(spec.column_kinds)
        dense = [i for i, k in enumerate(kinds) if k != "categorical"]
        categorical = [i for i, k in enumerate(kinds) if k == "categorical"]
        self.register_buffer("dense", torch.tensor(dense, dtype=torch.long), persistent=False)
        self.register_buffer("categorical", torch.tensor(categorical, dtype=torch.long), persistent=False)
        # numeric token j: x_j * weight[j] + bias[j]; categorical token j: its embedding + category_bias[j]
        # (no empty parameters: a table without categorical columns has no category_bias)
        self.weight = nn.Parameter(torch.empty(len(dense), dim)) if dense else None
        self.bias = nn.Parameter(torch.empty(len(dense), dim)) if dense else None
        self.embeddings = nn.ModuleList(nn.Embedding(spec.cardinalities[i], dim) for i in categorical)
        self.category_bias = nn.Parameter(torch.empty(len(categorical), dim)) if categorical else None
        self.pool = pool
        self.cls = nn.Parameter(torch.zeros(1, 1, dim)) if pool == "cls" else None
        length = len(kinds) + (pool == "cls")
        self.encoder = Encoder(length, dim, layers, heads, mlp_ratio, dropout, False, "none", activation)
        self.head = nn.Sequential(make_activation(activation), nn.Linear(dim, table_outputs(spec)))
        _init_weights(self, layers)
        bound = 1 / math.sqrt(dim)  # FT-Transformer's tokenizer: uniform(-1/sqrt(d), 1/sqrt(d))
        for p in (self.weight, self.bias, self.category_bias, *(e.weight for e in self.embeddings)):
            if p is not None:
                nn.init.uniform_(p, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = []
        if self.weight is not None:
            tokens.append(x.index_select(1, self.dense).unsqueeze(-1) * self.weight + self.bias)
        if self.category_bias is not None:
            codes = x.index_select(1, self.categorical).long()
            embedded = torch.stack([e(codes[:, j]) for j, e in enumerate(self.embeddings)], dim=1)
            tokens.append(embedded + self.category_bias)
        h = torch.cat(tokens, dim=1)  # (B, features, dim)
        if self.cls is not None:
            h = torch.cat([self.cls.expand(len(x), -1, -1), h], dim=1)
        h, _ = self.encoder(h)
        return self.head(h[:, 0] if self.cls is not None else h.mean(dim=1))

    def attention_layers(self) -> list[SelfAttention]:
        return self.encoder.attention_layers()


class PatchForecaster(Forecaster):
    def __init__(self, spec, dim, layers, heads, mlp_ratio, dropout, position, activation, patch, stride, revin):
        super().__init__()
        lookback = spec.shape[0]
        self.patch = min(patch or 16, lookback)
        self.stride = stride or max(self.patch // 2, 1)
        # PatchTST pads the end with copies of the last value so the last steps get a patch of their own
        self.count = (lookback - self.patch) // self.stride + 2
        self.targets = spec.target_channels
        self.embed = nn.Linear(self.patch, dim)
        self.encoder = Encoder(self.count, dim, layers, heads, mlp_ratio, dropout, False, position, activation)
        self.head = nn.Sequential(nn.Flatten(1), nn.Dropout(dropout), nn.Linear(self.count * dim, spec.horizon))
        _init_weights(self, layers)
        self.add_revin(spec, revin)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        b, _, c = x.shape
        x = x[..., c - self.targets :]  # channel independence: only the forecast channels are read
        series = x.transpose(1, 2).reshape(b * self.targets, -1)  # one row per channel
        series = torch.cat([series, series[:, -1:].expand(-1, self.stride)], dim=1)
        patches = series.unfold(1, self.patch, self.stride)  # (B * targets, count, patch)
        h, _ = self.encoder(self.embed(patches))
        y = self.head(h)  # (B * targets, horizon)
        return y.view(b, self.targets, -1).transpose(1, 2)

    def attention_layers(self) -> list[SelfAttention]:
        return self.encoder.attention_layers()


def Transformer(
    spec,
    dim: int = 128,
    layers: int = 2,
    heads: int = 4,
    mlp_ratio: float = 4.0,
    dropout: float = 0.1,
    position: str = "learned",
    activation: str = "gelu",
    pool: str = "cls",
    patch: int | None = None,
    stride: int | None = None,
    revin: bool = True,
) -> nn.Module:
    """model=transformer: the transformer for the data's kind and task. ``pool`` applies to
    classifiers, ``patch`` to images (pixels) and series (steps), ``stride`` and ``revin`` to series."""
    if pool not in POOLS:
        raise ValueError(f"unknown pool '{pool}'; choose one of: {', '.join(POOLS)}")
    if not 0 <= dropout < 1:
        raise ValueError(f"model.dropout must be in [0, 1), got {dropout}")
    if (patch is not None and patch < 1) or (stride is not None and stride < 1):
        raise ValueError(f"model.patch and model.stride must be positive or null, got {patch} and {stride}")
    sizes = dict(
        dim=dim,
        layers=layers,
        heads=heads,
        mlp_ratio=mlp_ratio,
        dropout=dropout,
        position=position,
        activation=activation,
    )
    if spec.task == "language_model":
        return TransformerLanguageModel(spec, **sizes)
    if spec.kind == "tokens":
        return TokenTransformerClassifier(spec, pool=pool, **sizes)
    if spec.kind == "table":
        return TableTransformer(
            spec, dim, layers, heads, mlp_ratio, dropout, activation, pool
        )  # features are tokens: no positions
    if spec.kind == "series":
        return PatchForecaster(spec, patch=patch, stride=stride, revin=revin, **sizes)
    if spec.kind == "audio":  # AST: patches of the clip's spectrogram (zoo/nets/audio.py)
        from zoo.nets.audio import SpectrogramTransformer, on_spectrogram

        return on_spectrogram(spec, SpectrogramTransformer, pool=pool, patch=patch, **sizes)
    return ImageTransformerClassifier(spec, pool=pool, patch=patch, **sizes)


Transformer.accepts = ("tokens", "series", "image", "table", "audio")
