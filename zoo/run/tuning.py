"""Lightning's learning-rate finder before fit (``tuner.lr_find=true``).

The finder trains ``tuner.num_training`` steps with the learning rate growing from ``min_lr`` to
``max_lr``, restores the weights, and suggests the rate where the loss falls fastest. The run then
trains with it: the task's ``lr`` is set (its optimizer config's ``lr`` is the starting point
otherwise), the run's recorded config says the learning rate actually used, and TensorBoard gets
the loss-versus-learning-rate plot (Images: ``tuner/lr_find``) and the suggestion
(Scalars: ``tuner/suggested_lr``).
"""

from __future__ import annotations

import contextlib

import lightning as L
from omegaconf import DictConfig

from zoo.callbacks.common import tensorboards
from zoo.errors import UserError


def find_lr(trainer: L.Trainer, task: L.LightningModule, datamodule, tuner: DictConfig) -> float | None:
    """Run the finder, set ``task.lr`` to its suggestion and log the plot; returns the suggestion."""
    from lightning.pytorch.tuner import Tuner

    if not hasattr(task, "lr"):
        raise UserError(
            f"tuner.lr_find=true needs a task with one learning rate, and {type(task).__name__} has "
            f"none to set; drop tuner.lr_find or set optimizer.lr yourself."
        )
    # The finder counts steps, not epochs: short epochs (trainer.limit_train_batches) or a small
    # max_epochs must not end it before num_training steps.
    max_epochs = trainer.fit_loop.max_epochs
    trainer.fit_loop.max_epochs = -1
    # One batch per step: the finder sets the learning rate and reads the loss at every step.
    one_batch = task.one_batch_a_step() if hasattr(task, "one_batch_a_step") else contextlib.nullcontext()
    try:
        with one_batch:
            finder = Tuner(trainer).lr_find(
                task,
                datamodule=datamodule,
                min_lr=float(tuner.min_lr),
                max_lr=float(tuner.max_lr),
                num_training=int(tuner.num_training),
                mode=str(tuner.mode),
                early_stop_threshold=tuner.get("early_stop_threshold"),
                update_attr=True,
                attr_name="lr",
            )
    finally:
        trainer.fit_loop.max_epochs = max_epochs
    if finder is None:  # fast_dev_run: Lightning skips the finder
        return None
    suggestion = finder.suggestion()
    if suggestion is None:
        print("The learning-rate finder found no suggestion (too few steps?); keeping optimizer.lr.")
        return None
    task.lr = float(suggestion)
    if trainer.is_global_zero:
        writers = tensorboards(trainer)
        if writers:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            fig = finder.plot(suggest=True, show=False)
            fig.suptitle(f"learning-rate finder: suggested lr = {task.lr:.3g}")
            for w in writers:
                w.add_figure("tuner/lr_find", fig, 0, close=False)
                w.add_scalar("tuner/suggested_lr", task.lr, 0)
            plt.close(fig)
        print(f"Learning-rate finder: training with lr={task.lr:.4g} (tuner/lr_find in TensorBoard).")
    return task.lr
