"""LanguageModelTask: trains any network that maps token ids (B, T) to next-token logits (B, T, vocab).

Loss is the mean cross-entropy per token in nats; it is also reported in bits per character
(``bpc`` = loss / ln 2) and as perplexity (e^loss), with the next-token accuracy. Sampling lives
here too (``sample_from``): the generated-text callback and ``generate.py`` both use it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric
from typing_extensions import override

from zoo.errors import UserError
from zoo.tasks.base import Task

LN2 = math.log(2)


class LanguageModelTask(Task):
    # Every metric this task logs: what checkpoints, early stopping and schedulers can watch.
    logged_metrics = ("val/loss", "val/bpc", "val/ppl", "val/acc", "train/loss_step", "train/loss", "train/bpc")
    train_sum_names = ("loss * tokens", "tokens")

    def __init__(self, *args, vocabulary: list[str], context: int = 128, **kwargs):
        """``vocabulary``: the token of each id; ``context``: how many tokens the network sees at
        once when sampling. ``args`` and ``kwargs``: those of ``Task``."""
        super().__init__(*args, **kwargs)
        self.vocabulary, self.context = list(vocabulary), context
        # Means weighted by the number of tokens, reduced across processes by torchmetrics.
        self.eval_loss = nn.ModuleDict({s: MeanMetric() for s in ("val", "test")})
        self.eval_acc = nn.ModuleDict({s: MeanMetric() for s in ("val", "test")})

    @classmethod
    @override
    def options_from(cls, spec, net, hparams) -> dict:
        if not spec.vocabulary:
            raise UserError(
                f"data={spec.name} has no vocabulary for a language model; use a text dataset such as data=pydoc."
            )
        return {"vocabulary": spec.vocabulary, "context": spec.shape[0]}

    def _loss(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch[0], batch[1]
        logits = self.net(x)
        return F.cross_entropy(logits.flatten(0, 1), y.flatten()), logits

    @override
    def _train_loss(self, batch) -> torch.Tensor:
        loss, _ = self._loss(batch)
        with torch.no_grad():
            self.train_sums[0] += loss.detach() * batch[1].numel()
            self.train_sums[1] += batch[1].numel()
        return loss

    @override
    def log_train_sums(self, loss_sum, tokens) -> None:
        loss = loss_sum / tokens.clamp_min(1)
        self.log("train/loss", loss, sync_dist=True)
        self.log("train/bpc", loss / LN2, sync_dist=True, prog_bar=True)

    @override
    def evaluate(self, batch, stage: str) -> dict:
        loss, logits = self._loss(batch)
        n = batch[1].numel()
        self.eval_loss[stage].update(loss.detach(), n)
        self.eval_acc[stage].update((logits.argmax(dim=-1) == batch[1]).float().mean(), n)
        return {"loss": loss}

    def _log_eval(self, stage: str) -> None:
        loss = self.eval_loss[stage].compute()
        self.log(f"{stage}/loss", loss, prog_bar=True)
        self.log(f"{stage}/bpc", loss / LN2, prog_bar=True)
        self.log(f"{stage}/ppl", loss.exp())
        self.log(f"{stage}/acc", self.eval_acc[stage].compute())
        self.eval_loss[stage].reset()
        self.eval_acc[stage].reset()

    @override
    def on_validation_epoch_end(self) -> None:
        self._log_eval("val")

    @override
    def on_test_epoch_end(self) -> None:
        self._log_eval("test")

    def sample_text(
        self, prompt: str = "", length: int = 200, temperature: float = 1.0, top_k: int | None = None, seed: int = 0
    ) -> str:
        """Text continuing ``prompt``, from this model as it is now."""
        return sample_from(
            self.net,
            self.vocabulary,
            prompt,
            length,
            temperature,
            top_k,
            self.context,
            torch.Generator().manual_seed(seed),
            self.device,
        )


def encode_prompt(prompt: str, vocabulary: list[str]) -> list[int]:
    stoi = {c: i for i, c in enumerate(vocabulary)}
    unknown = sorted(set(prompt) - set(stoi))
    if unknown:
        shown = "".join(c for c in vocabulary if c.isprintable() and c != " ")
        raise UserError(
            f"the prompt has characters this model never saw ({', '.join(repr(c) for c in unknown)}); "
            f"use only characters of its vocabulary: {shown[:120]}{'...' if len(shown) > 120 else ''} "
            f"(and space/newline where present)."
        )
    return [stoi[c] for c in prompt]


@torch.no_grad()
def sample_from(
    net: nn.Module,
    vocabulary: list[str],
    prompt: str,
    length: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    context: int = 128,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> str:
    """``prompt`` followed by ``length`` sampled characters. Temperature 0 takes the most likely
    character each time; ``top_k`` samples among the k most likely only. A network with
    ``forward_with_state`` (a recurrent one) is stepped one token at a time; any other is run on
    the last ``context`` tokens for every new one."""
    ids = encode_prompt(prompt, vocabulary)
    if not ids:  # no prompt: start after a line break, as a text does, and show only what follows
        ids = [vocabulary.index("\n") if "\n" in vocabulary else 0]
    stateful = hasattr(net, "forward_with_state")
    was_training = net.training
    net.eval()
    try:
        seq = torch.tensor([ids], device=device)
        state = None
        out: list[int] = []
        for _ in range(length):
            if stateful:
                logits, state = net.forward_with_state(seq if state is None else seq[:, -1:], state)
            else:
                logits = net(seq[:, -context:])
            last = logits[0, -1].float().cpu()
            if temperature <= 0:
                nxt = int(last.argmax())
            else:
                last = last / temperature
                if top_k:
                    kth = last.topk(min(int(top_k), len(last))).values[-1]
                    last = last.masked_fill(last < kth, float("-inf"))
                nxt = int(torch.multinomial(last.softmax(dim=0), 1, generator=generator))
            out.append(nxt)
            seq = torch.cat([seq, torch.tensor([[nxt]], device=seq.device)], dim=1)[:, -max(context, 1) :]
    finally:
        net.train(was_training)
    return prompt + "".join(vocabulary[i] for i in out)
