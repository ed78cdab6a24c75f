"""Ratings data and recommenders: the file formats a user has, the three splits, users and items
unseen in training, the NCF candidates, the refusals, MovieLens' download (from 127.0.0.1), the
recommend task's metrics, training that learns, the Projector, and checkpoints' id lists."""

from __future__ import annotations

import hashlib
import json
import zipfile

import pytest
import torch

from datamodules.ratings import MovieLens, RatingsData, rating_scale, read_ratings
from tests.helpers import command, run_train
from tests.helpers.ratings import taste_ratings, write_named_csv, write_u_data
from zoo.errors import UserError
from zoo.tasks.recommend import rank_of_first

FAST = ["callbacks.rating_embeddings=null", "callbacks.signals=null", "callbacks.gradient_norms=null"]


def setup(dm: RatingsData) -> RatingsData:
    dm.prepare_data()
    dm.setup("fit")
    return dm


def pairs_of(dm: RatingsData, split: str) -> set[tuple[str, str]]:
    x = dm.splits[split][0]
    users, items = dm.spec.user_ids, dm.spec.item_ids
    return {(users[u] if u < len(users) else "?", items[i] if i < len(items) else "?") for u, i in x.tolist()}


# ---- reading ----


def test_u_data_without_a_header_and_its_titles(tmp_path):
    path = write_u_data(tmp_path / "ml")
    dm = setup(RatingsData(path=str(path), seed=1))
    spec = dm.spec
    assert spec.kind == "ratings" and spec.task == "recommend" and spec.shape == (2,)
    assert (spec.rating_min, spec.rating_max) == (1.0, 5.0)
    assert list(spec.user_ids[:3]) == ["1", "2", "3"]  # numeric ids in numeric order
    assert spec.item_titles[spec.item_ids.index("4")] == "Film 4 (Drama) é"  # u.item, Latin-1
    assert sum(dm.split_sizes().values()) == len(taste_ratings())
    assert dm.split_sizes()["test"] == round(0.2 * len(taste_ratings()))


def test_a_csv_with_a_header_and_text_ids(tmp_path):
    path = write_named_csv(tmp_path / "r.csv")
    dm = setup(RatingsData(path=str(path)))
    assert "u7" in dm.spec.user_ids and "film-12" in dm.spec.item_ids
    assert dm.spec.num_users == len(dm.spec.user_ids) and dm.spec.item_titles == ()
    x, y = dm.splits["train"][:2]
    assert x.dtype == torch.long and x.shape[1] == 2 and y.dtype == torch.float32


def test_columns_of_other_names_are_named_with_data_columns(tmp_path):
    path = write_named_csv(tmp_path / "r.csv", header="who,what,stars,when")
    with pytest.raises(UserError, match=r"names no user or item column.*data\.columns"):
        setup(RatingsData(path=str(path)))
    dm = setup(RatingsData(path=str(path), columns=["who", "what", "stars", "when"], split="leave_last"))
    assert dm.split_sizes()["test"] == 40  # one per user: the timestamp column was found


def test_leave_last_tests_each_users_latest_rating(tmp_path):
    rows = taste_ratings()
    dm = setup(RatingsData(path=str(write_named_csv(tmp_path / "r.csv", rows)), split="leave_last"))
    latest, second = {}, {}
    for u, i, _, t in sorted(rows, key=lambda r: r[3]):
        second[u], latest[u] = latest.get(u), (i, t)
    assert pairs_of(dm, "test") == {(f"u{u}", f"film-{i}") for u, (i, _) in latest.items()}
    assert pairs_of(dm, "val") == {(f"u{u}", f"film-{i}") for u, (i, _) in second.items()}


def test_given_files_with_users_and_items_unseen_in_training(tmp_path):
    rows = taste_ratings()
    train = [r for k, r in enumerate(rows) if k % 6]
    test = rows[::6] + [(999, 1, 4, 1), (1, 777, 2, 2), (998, 776, 3, 3)]
    write_u_data(tmp_path / "a", train)
    (tmp_path / "a" / "u1.test").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in test))
    dm = setup(RatingsData(train_path=str(tmp_path / "a" / "u.data"), test_path=str(tmp_path / "a" / "u1.test")))
    assert dm.split_sizes() == {"train": 570, "val": 30, "test": 123}
    x = dm.splits["test"][0]
    assert int((x[:, 0] == dm.spec.num_users).sum()) == 2 and int((x[:, 1] == dm.spec.num_items).sum()) == 2
    assert dm.unseen["test"] == {"users": 2, "items": 2}


def test_the_candidates_are_the_held_out_item_and_99_items_the_user_never_rated(tmp_path):
    rows = taste_ratings()
    dm = setup(RatingsData(path=str(write_u_data(tmp_path / "ml", rows)), split="leave_last"))
    x, _, candidates = dm.splits["test"]
    assert candidates.shape == (40, 100) and torch.equal(candidates[:, 0], x[:, 1])
    rated = {(str(u), str(i)) for u, i, _, _ in rows}
    users, items = dm.spec.user_ids, dm.spec.item_ids
    for row in range(len(x)):
        user = users[int(x[row, 0])]
        assert not any((user, items[int(c)]) in rated for c in candidates[row, 1:])
    again = setup(RatingsData(path=str(tmp_path / "ml" / "u.data"), split="leave_last", seed=7))
    assert torch.equal(again.splits["test"][2], candidates)  # the same candidates for every seed


# ---- refusals: one sentence each ----


@pytest.mark.parametrize(
    "text, sentence",
    [
        (
            "1\t1\t4\n2\t1\t5\n3\t2\t55\n1\t2\t3\n2\t2\t1\n3\t1\t2\n",
            r"line 3 of .* has the rating 55, outside the scale of the file's other ratings \(1 to 5\)",
        ),
        ("1,1\n2,1\n", r"has 2 columns; a ratings file needs at least three"),
        ("userId,userId,rating\n1,2,3\n", r"names the column 'userId' more than once"),
        ("userId,movieId,rating,timestamp\n", r"has a header but no ratings"),
        ("1\t1\t4\n1\t2\tgood\n", r"line 2 of .* has the rating 'good', which is not a number"),
    ],
)
def test_bad_files_are_one_sentence(tmp_path, text, sentence):
    path = tmp_path / "bad.data"
    path.write_text(text)
    with pytest.raises(UserError, match=sentence) as e:
        setup(RatingsData(path=str(path)))
    assert "\n" not in str(e.value)


def test_a_bad_file_on_the_command_line_exits_2_with_the_sentence(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("user,item\na,b\n")
    r = command("train.py", "data=ratings", "model=mf", f"data.path={path}", f"hydra.run.dir={tmp_path / 'run'}")
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1].startswith("error: ") and "Traceback" not in r.stderr
    assert "needs at least three" in r.stderr


def test_the_scale_is_the_files_own():
    import pandas as pd

    half_stars = pd.DataFrame({"rating": [0.5, 1.0, 1.5, 3.0, 4.5, 5.0]})
    assert rating_scale(half_stars, "f") == (0.5, 5.0)
    gap = pd.DataFrame({"rating": [1.0, 2.0, 4.0, 5.0] * 5})  # no one gave 3: still one scale
    assert rating_scale(gap, "f") == (1.0, 5.0)
    with pytest.raises(UserError, match="data.scale"):
        rating_scale(pd.DataFrame({"rating": [1.0, 6.0]}, index=[0, 1]), "f", [1, 5])


def test_a_ratings_file_reads_without_running_anything_in_it(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating\n__import__('os').system('touch pwned'),=cmd|x,4\nb,c,5\nb,d,3\n")
    table = read_ratings(str(path))
    assert table["user"].iloc[0].startswith("__import__") and not (tmp_path / "pwned").exists()


# ---- the task's metrics ----


def test_hit_ratio_and_ndcg_count_ties_against_the_held_out_item():
    scores = torch.tensor([[5.0, 1.0, 2.0], [1.0, 1.0, 0.0], [0.0, 1.0, 2.0]])
    assert rank_of_first(scores).tolist() == [0, 1, 2]


class Oracle(torch.nn.Module):
    """Scores item 0 highest for every user, item k lower with k; predicts 3 for every rating."""

    def forward(self, x):
        return 3.0 - x[..., 1].float() * 0.01


def test_the_recommend_task_measures_rmse_hr_and_ndcg():
    from torchmetrics import MeanMetric  # noqa: F401 - the task's metrics come from torchmetrics

    from zoo.tasks.recommend import RecommendTask

    task = RecommendTask(Oracle(), torch.optim.Adam, num_users=2, num_items=50, rating_min=1.0, rating_max=5.0)
    x = torch.tensor([[0, 0], [1, 20], [2, 1]])  # user 2 is unseen (index num_users)
    y = torch.tensor([3.0, 5.0, 1.0])
    candidates = torch.stack([x[:, 1], torch.full((3,), 5), torch.full((3,), 9)], dim=1)
    candidates = torch.cat([candidates, torch.arange(10, 19).expand(3, 9)], dim=1)  # 11 others
    task.log = lambda *a, **k: None
    task.evaluate((x, y, candidates), "test")
    m = {k: float(v.compute()) for k, v in task.metrics["test"].items()}
    pred = 3.0 - x[:, 1].float() * 0.01
    assert m["rmse"] == pytest.approx(float(((pred - y) ** 2).mean().sqrt()), abs=1e-5)
    # ranks: item 0 above all 11 others (a hit, NDCG 1), item 20 below all 11 (a miss), item 1 above all (a hit)
    assert m["hr@10"] == pytest.approx(2 / 3) and m["ndcg@10"] == pytest.approx(2 / 3)
    assert m["unseen_users"] == 1 and m["unseen_items"] == 0


# ---- training ----


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """MF trained on a small taste-model file with titles (u.data + u.item), Projector on."""
    folder = tmp_path_factory.mktemp("ratings")
    path = write_u_data(folder / "ml")
    out = folder / "run"
    summary = run_train(
        [
            "data=ratings",
            f"data.path={path}",
            "model=mf",
            "model.dim=8",
            "model.weight_decay=0.01",
            "data.batch_size=64",
            "optimizer.lr=0.03",
            "trainer.max_epochs=12",
            "callbacks.signals=null",
            "callbacks.gradient_norms=null",
        ],
        out,
    )
    return summary, out, path


def test_mf_learns_the_tastes_better_than_the_mean(trained):
    summary, _, path = trained
    assert summary["status"] == "finished"
    dm = setup(RatingsData(path=str(path), seed=42))
    train_y, test_y = dm.splits["train"][1], dm.splits["test"][1]
    mean_rmse = float(((test_y - train_y.mean()) ** 2).mean().sqrt())
    assert summary["test/rmse"] < 0.8 * mean_rmse, (summary["test/rmse"], mean_rmse)
    assert 0 < summary["test/hr@10"] <= 1 and 0 < summary["test/ndcg@10"] <= summary["test/hr@10"]
    assert summary["test/unseen_users"] == 0


def test_user_and_item_vectors_are_in_the_projector_with_titles(trained):
    _, out, _ = trained
    config = next(out.glob("**/projector_config.pbtxt")).read_text()
    assert "user_embeddings" in config and "item_embeddings" in config
    items = next(p for p in out.glob("**/item_embeddings/metadata.tsv")).read_text().splitlines()
    assert items[0] == "id\ttitle" and "1\tFilm 1 (Drama) é" in items
    vectors = next(p for p in out.glob("**/item_embeddings/tensors.tsv")).read_text().splitlines()
    assert len(vectors) == len(items) - 1 and len(vectors[0].split("\t")) == 8


def test_a_checkpoint_stores_the_ids_as_plain_lists_checked_when_read(trained, tmp_path):
    from zoo.run.rebuild import rebuild

    _, out, _ = trained
    ckpt = out / "checkpoints" / "last.ckpt"
    rebuilt = rebuild(str(ckpt))
    assert rebuilt.spec.user_ids[:2] == ("1", "2") and rebuilt.net.num_users == rebuilt.spec.num_users
    stored = torch.load(ckpt, weights_only=True)
    assert isinstance(stored["hyper_parameters"]["spec"]["user_ids"], list)
    stored["hyper_parameters"]["spec"]["user_ids"] = stored["hyper_parameters"]["spec"]["user_ids"][:-1]
    torch.save(stored, tmp_path / "short.ckpt")
    with pytest.raises(UserError, match="id lists do not match its sizes"):
        rebuild(str(tmp_path / "short.ckpt"))


@pytest.mark.slow
def test_ncf_trains_and_evaluates_from_its_checkpoint(tmp_path):
    path = write_named_csv(tmp_path / "r.csv")
    summary = run_train(
        ["data=ratings", f"data.path={path}", "model=ncf", "data.batch_size=128", "trainer.max_epochs=3", *FAST],
        tmp_path / "run",
    )
    # the ratings file is the user's to name (a checkpoint's stored locations are never used: issue 26)
    r = command(
        "eval.py", f"ckpt_path={summary['best_checkpoint']}", f"data_path={path}", f"out={tmp_path / 'eval.json'}"
    )
    assert r.returncode == 0, r.stderr[-2000:]
    again = json.loads((tmp_path / "eval.json").read_text())
    assert again["test/rmse"] == pytest.approx(summary["test/rmse"], abs=1e-5)
    assert again["test/hr@10"] == pytest.approx(summary["test/hr@10"], abs=1e-6)


# ---- MovieLens ----


def movielens_zip(www, rows) -> str:
    """ml-100k.zip as GroupLens packs it (a folder ml-100k/ with u.data, u.item, u1-u5), served by the test."""
    made = write_u_data(www / "made" / "ml-100k", rows).parent
    for fold in range(1, 6):
        (made / f"u{fold}.base").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows[fold * 10 :]))
        (made / f"u{fold}.test").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows[: fold * 10]))
    with zipfile.ZipFile(www / "ml-100k.zip", "w") as z:
        for f in sorted(made.iterdir()):
            z.write(f, f"ml-100k/{f.name}")
    return "md5:" + hashlib.md5((www / "ml-100k.zip").read_bytes()).hexdigest()


def test_movielens_100k_downloads_from_the_mirror_and_takes_a_fold(http_server, tmp_path):
    www, url, asked = http_server
    checksum = movielens_zip(www, taste_ratings())
    dm = setup(MovieLens(data_dir=str(tmp_path / "data"), fold=3, mirror=url, checksum=checksum))
    assert asked == ["/ml-100k.zip"]
    assert dm.split_sizes()["test"] == 30 and dm.spec.name == "ml_100k" and dm.spec.item_titles[0] == "Film 1 (Drama) é"
    assert not list((tmp_path / "data").glob(".extract-*"))  # the scratch folder is gone
    asked.clear()
    setup(MovieLens(data_dir=str(tmp_path / "data"), fold=3, mirror=url, checksum=checksum))
    assert asked == []  # present now: nothing downloaded


def test_a_corrupt_movielens_download_is_not_kept(http_server, tmp_path):
    www, url, _ = http_server
    movielens_zip(www, taste_ratings())
    with pytest.raises(UserError, match="data.checksum"):
        MovieLens(data_dir=str(tmp_path / "data"), mirror=url).prepare_data()  # the real archive's MD5
    assert not (tmp_path / "data" / "ml-100k.zip").exists() and not (tmp_path / "data" / "ml-100k").exists()


# ---- predict.py: the top-N items of a user ----


def test_predict_lists_a_users_top_items_leaving_out_what_they_rated(trained, tmp_path):
    import pandas as pd

    _, out, path = trained
    ckpt = out / "checkpoints" / "last.ckpt"
    r = command("predict.py", f"ckpt_path={ckpt}", "user=3", f"ratings={path}", f"out={tmp_path / 'p.csv'}")
    assert r.returncode == 0, r.stderr[-2000:]
    table = pd.read_csv(tmp_path / "p.csv", dtype={"user": str, "item": str})
    assert list(table.columns) == ["user", "rank", "item", "title", "rating", "error"]
    assert table["rank"].tolist() == list(range(1, 11)) and set(table["user"]) == {"3"}
    rated = {str(i) for u, i, _, _ in taste_ratings() if u == 3}
    assert not rated & set(table["item"]) and len(set(table["item"])) == 10
    assert table["rating"].between(1, 5).all() and table["rating"].is_monotonic_decreasing
    assert (
        table["title"].iloc[0]
        == f"Film {table['item'].iloc[0]} ({['Drama', 'Comedy', 'Horror'][(int(table['item'].iloc[0]) - 1) % 3]}) é"
    )
    # The rated set is the file named on the command line's: rate the first choice there, and it is gone.
    more = tmp_path / "more.data"
    more.write_text(path.read_text() + f"3\t{table['item'].iloc[0]}\t1\t999999999\n")
    r = command("predict.py", f"ckpt_path={ckpt}", "user=3", f"ratings={more}", "top_n=3", f"out={tmp_path / 'q.csv'}")
    assert r.returncode == 0, r.stderr[-2000:]
    again = pd.read_csv(tmp_path / "q.csv", dtype={"item": str})
    assert again["item"].tolist() == table["item"].tolist()[1:4]


def test_predict_needs_the_users_ratings_file_for_a_model_of_ones_own_data(trained, tmp_path):
    _, out, _ = trained
    r = command("predict.py", f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}", "user=3", f"out={tmp_path / 'p.csv'}")
    assert r.returncode == 2 and "give ratings=FILE" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "p.csv").exists()


def test_the_python_api_recommends_to_several_users_and_names_the_unknown(trained):
    from zoo import load

    _, out, path = trained
    table = load(out / "checkpoints" / "last.ckpt").predict(["3", "7", "nobody"], top_n=4, ratings=str(path))
    assert table["user"].tolist() == ["3"] * 4 + ["7"] * 4 + ["nobody"]
    assert table["error"].iloc[-1] == "user 'nobody' is not one of the 40 users the model was trained on"
    assert (table["error"].iloc[:-1] == "").all()
