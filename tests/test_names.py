"""Names that mean what they say (issue 26): a file, folder, flag, key or printed command is what
its name and the README say it is."""

from __future__ import annotations

import torch

from tests.helpers import run_train


def test_last_ckpt_is_the_end_of_the_run_and_best_the_best_epoch(tmp_path):
    # The monitor set so that the first epoch is the best and no later one improves on it (val/acc
    # kept by its lowest value): Lightning then rewrote last.ckpt only at that first epoch.
    out = tmp_path / "run"
    metrics = run_train(
        [
            "trainer.max_epochs=3",
            "trainer.limit_train_batches=4",
            "callbacks.checkpoint.mode=min",
            "callbacks.early_stopping=null",
            "test=false",
        ],
        out,
    )
    ckpts = out / "checkpoints"
    last = torch.load(ckpts / "last.ckpt", weights_only=True)
    best = torch.load(metrics["best_checkpoint"], weights_only=True)
    end = torch.load(ckpts / "resume.ckpt", weights_only=True)  # the state the run ended in
    assert metrics["global_step"] == 12 and metrics["best_epoch"] == 0, metrics
    assert last["global_step"] == 12 and last["epoch"] == end["epoch"], (last["global_step"], last["epoch"])
    assert best["global_step"] == 4
    for name, tensor in end["state_dict"].items():
        torch.testing.assert_close(last["state_dict"][name], tensor, rtol=0, atol=0)
    assert any(not torch.equal(best["state_dict"][n], t) for n, t in end["state_dict"].items())
