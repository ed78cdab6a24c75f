"""Sampling speed of the transformer language model with and without its key/value cache.

    python benchmarks/bench_generate.py                    # shakespeare_transformer's sizes, 3 rounds
    python benchmarks/bench_generate.py --tokens 100 500 --rounds 5 --device cuda

With the cache (what generate.py does) each new token is one forward step of one position over
the cached keys and values; without it, each new token is a forward pass over the whole context
(the last ``context`` tokens). Both draw from the same untrained network, with the same seed, and
the script checks they write the same text while it fits the context. Prints medians over rounds:
milliseconds per token and the ratio uncached / cached.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from datamodules.spec import DataSpec
from zoo.nets.transformer import Transformer
from zoo.tasks.language_model import sample_from


class Uncached(torch.nn.Module):
    """The network without ``forward_with_state``: the sampler recomputes the context every token."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, nargs="+", default=[100, 250, 1000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    vocab = [chr(c) for c in range(32, 97)]  # 65 characters, Tiny Shakespeare's vocabulary size
    spec = DataSpec(
        name="shakespeare",
        kind="tokens",
        shape=(args.context,),
        task="language_model",
        vocab_size=len(vocab),
        vocabulary=tuple(vocab),
    )
    torch.manual_seed(0)
    net = Transformer(spec, dim=args.dim, layers=args.layers, heads=args.heads).to(args.device).eval()

    def sample(model, n):
        gen = torch.Generator().manual_seed(0)
        return sample_from(model, vocab, "ROMEO", n, 1.0, None, args.context, gen, args.device)

    same = sample(net, args.context - 5) == sample(Uncached(net), args.context - 5)
    print(
        f"transformer LM: dim {args.dim}, {args.layers} layers, {args.heads} heads, context {args.context}, "
        f"{args.device}; cached text == uncached text within the context: {same}"
    )
    print(f"{'tokens':>7} {'cached ms/token':>16} {'uncached ms/token':>18} {'uncached / cached':>18}")
    for n in args.tokens:
        timings = {"cached": [], "uncached": []}
        for _ in range(args.rounds):
            for name, model in (("cached", net), ("uncached", Uncached(net))):
                start = time.perf_counter()
                sample(model, n)
                timings[name].append((time.perf_counter() - start) * 1000 / n)
        cached, uncached = (statistics.median(timings[k]) for k in ("cached", "uncached"))
        print(f"{n:>7} {cached:>16.2f} {uncached:>18.2f} {uncached / cached:>17.1f}x")
    if not same:
        sys.exit("cached and uncached sampling wrote different text")


if __name__ == "__main__":
    main()
