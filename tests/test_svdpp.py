"""SVD++ (model=svdpp): the items each user rated in training, listed by the datamodule, handed to
the network when a fit starts and kept in its checkpoint; the formula; a case where which items a
user rated says more than the ratings (SVD++ beats MF); a checkpoint answering as the trained
network did; and the refusals (hostile options, crafted checkpoints)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.ratings import RatingsData
from tests.helpers import run_train
from tests.helpers.ratings import write_u_data
from zoo.errors import UserError
from zoo.nets.recommend import SVDpp
from zoo.run.config import check_overrides

FAST = ["callbacks.rating_embeddings=null", "callbacks.signals=null", "callbacks.gradient_norms=null"]


def chosen_ratings(users: int = 90, items: int = 60, liked: int = 8, others: int = 4, seed: int = 0):
    """(user, item, rating, timestamp): each user likes one of three genres and rates mostly its
    films (``liked`` of them, 4-5 stars, and ``others`` of the other genres, 1-2 stars). With most of
    a user's ratings high, the ratings say little of the taste that a bias does not; which films the
    user chose to rate says it (Koren 2008's implicit feedback)."""
    g = np.random.default_rng(seed)
    likes, genre = g.integers(0, 3, users), np.arange(items) % 3
    rows = []
    for u in range(users):
        mine = g.choice(np.flatnonzero(genre == likes[u]), liked, replace=False)
        rest = g.choice(np.flatnonzero(genre != likes[u]), others, replace=False)
        for k, i in enumerate(np.concatenate([mine, rest])):
            score = 3 + (1.5 if genre[i] == likes[u] else -1.5) + g.normal(0, 0.5)
            rows.append((u + 1, int(i) + 1, int(np.clip(round(score), 1, 5)), 880_000_000 + 1000 * u + 10 * k))
    return rows


def setup(dm: RatingsData) -> RatingsData:
    dm.prepare_data()
    dm.setup("fit")
    return dm


def train(model: str, path: Path, out: Path, *more: str) -> dict:
    return run_train(
        [
            "data=ratings",
            f"data.path={path}",
            f"model={model}",
            "model.dim=4",
            "model.weight_decay=0.01",
            "data.batch_size=64",
            "optimizer.lr=0.03",
            "trainer.max_epochs=15",
            "seed=1",
            *FAST,
            *more,
        ],
        out,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """SVD++ and MF trained on the same chosen-ratings file; the SVD++ run's folder and the file."""
    folder = tmp_path_factory.mktemp("svdpp")
    path = write_u_data(folder / "ml", chosen_ratings())
    svdpp = train("svdpp", path, folder / "svdpp")
    mf = train("mf", path, folder / "mf")
    return svdpp, mf, folder / "svdpp", path


def naive(state: dict, offsets: torch.Tensor, items: torch.Tensor, u: int, i: int) -> float:
    """The SVD++ formula, one user and item at a time, from plain tensors."""
    mine = items[offsets[u] : offsets[u + 1]]
    implicit = state["implicit.weight"][mine].sum(0) / max(len(mine), 1) ** 0.5
    user = state["user.weight"][u] + implicit
    biases = state["global_bias"] + state["user_bias.weight"][u, 0] + state["item_bias.weight"][i, 0]
    return float(biases + user @ state["item.weight"][i])


def test_the_datamodule_lists_the_items_each_user_rated_in_training(tmp_path):
    rows = chosen_ratings(users=12, items=9, liked=3, others=2)
    rows.append(rows[0][:2] + (1, 999))  # the same pair twice: listed once
    dm = setup(RatingsData(path=str(write_u_data(tmp_path, rows)), seed=0))
    pairs = dm.splits["train"][0]
    offsets, items = dm.rated_offsets, dm.rated_items
    assert dm.spec.num_rated == len(items) == len({tuple(p) for p in pairs.tolist()}) < len(pairs) + 1
    assert offsets.shape == (dm.spec.num_users + 1,) and offsets[0] == 0 and offsets[-1] == len(items)
    for u in range(dm.spec.num_users):
        assert items[offsets[u] : offsets[u + 1]].tolist() == sorted(set(pairs[pairs[:, 0] == u, 1].tolist()))


def test_svdpp_adds_the_scaled_sum_of_the_rated_items_vectors_and_knows_no_unseen_user(tmp_path):
    dm = setup(
        RatingsData(path=str(write_u_data(tmp_path, chosen_ratings(users=12, items=9, liked=3, others=2))), seed=0)
    )
    spec = dm.spec
    net = SVDpp(spec, dim=3, init_std=0.3)
    net.set_rated(dm.rated_offsets, dm.rated_items)
    with torch.no_grad():
        net.user_bias.weight[: spec.num_users].normal_()
        net.item_bias.weight[: spec.num_items].normal_()
    state = {k: v.detach() for k, v in net.state_dict().items()}
    x = torch.tensor([[u, i] for u in range(spec.num_users) for i in range(spec.num_items)])
    want = torch.tensor([naive(state, dm.rated_offsets, dm.rated_items, u, i) for u, i in x.tolist()])
    assert torch.allclose(net(x), want, atol=1e-5)
    assert torch.allclose(net(x.reshape(spec.num_users, spec.num_items, 2)), want.reshape(spec.num_users, -1))
    fresh = SVDpp(spec, dim=3)  # init_from another run's checkpoint: the weights, and the lists of this run's data
    fresh.load_state_dict({k: v for k, v in state.items() if k != "rated_items"}, strict=False)
    unseen = torch.tensor([[spec.num_users, 2]])  # what MF predicts for a user unseen in training
    with torch.no_grad():
        assert float(net(unseen)) == pytest.approx(float(state["global_bias"] + state["item_bias.weight"][2, 0]))
        assert float(net.penalty(x)) > 0 and net.embeddings()["user"].shape == (spec.num_users, 3)


def test_svdpp_learns_from_which_items_were_rated_and_beats_mf(trained):
    svdpp, mf, _, path = trained
    assert svdpp["status"] == mf["status"] == "finished"
    dm = setup(RatingsData(path=str(path), seed=1))
    train_y, test_y = dm.splits["train"][1], dm.splits["test"][1]
    mean_rmse = float(((test_y - train_y.mean()) ** 2).mean().sqrt())
    assert svdpp["test/rmse"] < 0.6 * mean_rmse, (svdpp["test/rmse"], mean_rmse)
    assert svdpp["test/rmse"] < 0.95 * mf["test/rmse"], (svdpp["test/rmse"], mf["test/rmse"])


def test_a_checkpoint_holds_the_rated_lists_and_predicts_as_the_trained_network(trained):
    from zoo import load
    from zoo.run.rebuild import rebuild

    svdpp, _, _, path = trained
    ckpt = Path(svdpp["best_checkpoint"])
    dm = setup(RatingsData(path=str(path), seed=1))
    stored = torch.load(ckpt, weights_only=True)
    state = {k.removeprefix("net."): v for k, v in stored["state_dict"].items() if k.startswith("net.")}
    assert state["rated_items"].tolist() == dm.rated_items.tolist()
    assert state["rated_offsets"][:-1].tolist() == dm.rated_offsets.tolist()
    assert stored["hyper_parameters"]["spec"]["num_rated"] == len(dm.rated_items)
    # the test split scored by the rebuilt network is the run's test RMSE
    net = rebuild(str(ckpt)).net.eval()
    x, y = dm.splits["test"][0], dm.splits["test"][1]
    with torch.no_grad():
        pred = net(x).clamp(dm.spec.rating_min, dm.spec.rating_max)
    assert float(((pred - y) ** 2).mean().sqrt()) == pytest.approx(svdpp["test/rmse"], abs=1e-5)
    # zoo.load's ratings are the formula's, from the checkpoint's tensors alone
    table = load(ckpt).predict(["3", "7"], top_n=5, ratings=str(path))
    users, items = {u: k for k, u in enumerate(dm.spec.user_ids)}, {i: k for k, i in enumerate(dm.spec.item_ids)}
    assert len(table) == 10 and (table["error"] == "").all()
    for user, item, rating in zip(table["user"], table["item"], table["rating"]):
        want = naive(state, state["rated_offsets"], state["rated_items"], users[str(user)], items[str(item)])
        assert rating == pytest.approx(min(max(want, dm.spec.rating_min), dm.spec.rating_max), abs=1e-4)


def test_crafted_rated_lists_in_a_checkpoint_are_refused_with_a_sentence(trained, tmp_path):
    from zoo.run.checkpoints import WEIGHTS_DIGEST, weights_digest
    from zoo.run.rebuild import rebuild

    svdpp, *_ = trained
    stored = torch.load(svdpp["best_checkpoint"], weights_only=True)
    outside = {**stored, "state_dict": dict(stored["state_dict"])}
    outside["state_dict"]["net.rated_items"] = stored["state_dict"]["net.rated_items"].clone().fill_(10**6)
    outside[WEIGHTS_DIGEST] = weights_digest(outside)  # signed anew, as a crafted file would be
    torch.save(outside, tmp_path / "outside.ckpt")
    with pytest.raises(UserError, match="rated lists .* within the 60 items"):
        rebuild(str(tmp_path / "outside.ckpt"))
    longer = {**stored, "hyper_parameters": dict(stored["hyper_parameters"])}
    longer["hyper_parameters"]["spec"] = {**stored["hyper_parameters"]["spec"], "num_rated": 10**12}
    torch.save(longer, tmp_path / "longer.ckpt")
    with pytest.raises(UserError, match="num_rated=1000000000000 pairs at most"):
        rebuild(str(tmp_path / "longer.ckpt"))
    shorter = {**stored, "hyper_parameters": dict(stored["hyper_parameters"])}
    shorter["hyper_parameters"]["spec"] = {**stored["hyper_parameters"]["spec"], "num_rated": 3}
    torch.save(shorter, tmp_path / "shorter.ckpt")
    with pytest.raises(UserError, match="rated_items has shape \\(3,\\)"):
        rebuild(str(tmp_path / "shorter.ckpt"))


@pytest.mark.parametrize(
    "overrides, sentence",
    [
        (["model.implicit_decay=-1"], "model.implicit_decay must be"),
        (["model.implicit_decay=nan"], "model.implicit_decay must be"),
        (["model.dim=0"], "model.dim must be"),
    ],
)
def test_hostile_svdpp_options_are_one_sentence(overrides, sentence):
    with pytest.raises(UserError, match=sentence):
        check_overrides(["data=ratings", "data.path=x", "model=svdpp", *overrides])
