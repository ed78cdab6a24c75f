"""A recommender's user and item vectors in TensorBoard's Projector."""

from __future__ import annotations

import lightning as L
import torch
from typing_extensions import override

from zoo.callbacks.common import logging_step, tensorboards


def _cell(text: str) -> str:
    """One metadata cell: the Projector's file is tab-separated, one point a line."""
    return " ".join(str(text).split()) or "-"


class RatingEmbeddings(L.Callback):
    """After the test, the user and item vectors of the tested network (``net.embeddings()``:
    zoo/nets/recommend.py) as ``user_embeddings`` and ``item_embeddings`` in the Projector tab (PCA,
    t-SNE, UMAP; similar tastes land together), each point labelled with its id from the data file
    and, for items, its title when the data has titles (MovieLens' u.item / movies.csv). At most
    ``max_points`` of each (the first by index); 0 turns it off."""

    def __init__(self, max_points: int = 10_000):
        self.max_points = max_points

    @override
    def on_test_epoch_end(self, trainer, pl_module) -> None:
        net = getattr(pl_module, "net", None)
        spec = getattr(trainer.datamodule, "spec", None) if trainer.datamodule is not None else None
        writers = tensorboards(trainer)
        if self.max_points <= 0 or not writers or spec is None or not hasattr(net, "embeddings"):
            return
        with torch.no_grad():
            vectors = {k: v.detach().float().cpu()[: self.max_points] for k, v in net.embeddings().items()}
        users = [[_cell(u)] for u in spec.user_ids[: len(vectors["user"])]]
        titles = spec.item_titles or ("",) * len(spec.item_ids)
        items = [[_cell(i), _cell(t)] for i, t in zip(spec.item_ids[: len(vectors["item"])], titles)]
        step = logging_step(trainer)
        for w in writers:
            w.add_embedding(vectors["user"], metadata=[u[0] for u in users], global_step=step, tag="user_embeddings")
            w.add_embedding(
                vectors["item"],
                metadata=items,
                metadata_header=["id", "title"],
                global_step=step,
                tag="item_embeddings",
            )
