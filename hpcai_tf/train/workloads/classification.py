"""Shared by the two image classifiers: image datasets from sources, and top-k accuracy over ranks."""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcai_tf.errors import KitError
from hpcai_tf.train.data.image_pipeline import ImageSource, eval_dataset, per_rank_steps, train_dataset
from hpcai_tf.train.workloads.base import RunContext, TrainingData


def image_training_data(
    context: RunContext,
    train_source: ImageSource,
    val_source: ImageSource,
    train_preprocess,
    eval_preprocess,
    description: dict[str, Any],
) -> TrainingData:
    """Epoch datasets of ``train_source`` and a validation dataset of ``val_source`` for this rank."""
    config, ranks = context.config, context.ranks
    batch = config["batch_per_rank"]
    natural = per_rank_steps(train_source.count, batch, ranks.size)
    if natural < 1:
        raise KitError(
            f"{description['path']}: {train_source.count} training images are too few for "
            f"{ranks.size} ranks x batch {batch}"
        )
    steps = config["steps_per_epoch"] or natural
    val_steps = per_rank_steps(val_source.count, batch, ranks.size)
    seed = config["seed"]

    def train(epoch: int, skip: int):
        return train_dataset(
            train_source, train_preprocess, epoch=epoch, seed=seed, steps=steps, skip_steps=skip,
            batch=batch, rank=ranks.rank, size=ranks.size,
        )  # fmt: skip

    def validation():
        return eval_dataset(val_source, eval_preprocess, steps=val_steps, batch=batch, rank=ranks.rank, size=ranks.size)

    description = {
        **description,
        "train_samples": train_source.count,
        "validation_samples": val_source.count,
        "train": train_source.description,
        "validation": val_source.description,
    }
    return TrainingData(
        description=description,
        batch=batch,
        steps_per_epoch=steps,
        train=train,
        validation_steps=val_steps,
        validation=validation if val_steps > 0 else None,
        details={"train_source": train_source, "val_source": val_source},
    )


def topk_accuracy(context: RunContext, model: Any, data: TrainingData, ks: tuple[int, ...], batches: int) -> dict:
    """{"top1": ..., ...} over this rank's validation batches, summed over ranks; None without validation."""
    if data.validation is None:
        return {f"top{k}": None for k in ks} | {"images": 0}
    steps = data.validation_steps if batches <= 0 else min(batches, data.validation_steps)
    correct = np.zeros(len(ks))
    seen = 0
    for images, targets in data.validation().take(steps):
        probabilities = model(images, training=False).numpy()
        truth = np.argmax(targets.numpy(), axis=-1)
        ranked = np.argsort(-probabilities, axis=-1)
        for i, k in enumerate(ks):
            correct[i] += np.sum(np.any(ranked[:, :k] == truth[:, None], axis=-1))
        seen += len(truth)
    total = context.ranks.allreduce_sum(np.concatenate([correct, [seen]]), "classification.quality")
    return {f"top{k}": total[i] / total[-1] for i, k in enumerate(ks)} | {"images": int(total[-1])}
