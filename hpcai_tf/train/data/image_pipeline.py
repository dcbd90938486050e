"""``tf.data`` pipelines of labelled images: TFRecord shards or a list of image files, sharded by rank,
shuffled per epoch from the seed, prefetched; every element gets a stateless augmentation seed from the epoch, its
position and the rank, so an epoch is the same batches whether it runs in one go or is resumed after step k.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hpcai_tf.train.data.tfrecords import parse_image_example

SHUFFLE_BUFFER = 4096

# (encoded image, int32 label, int32[2] seed) -> (image tensor, target tensor)
Preprocess = Callable[..., tuple]


@dataclass
class ImageSource:
    """Where the images of one split are: TFRecord ``shards``, or image ``files`` with ``labels``."""

    count: int
    shards: list[Path] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    label_offset: int = 0

    @property
    def description(self) -> str:
        return f"{len(self.shards)} TFRecord shards" if self.shards else f"{len(self.files)} image files"


def _records(source: ImageSource, rank: int, size: int, epoch_seed: int | None):
    """(encoded, label) pairs for this rank, in an epoch order fixed by ``epoch_seed`` (None: file order)."""
    import tensorflow as tf

    if source.shards:
        files = [str(f) for f in source.shards]
        file_level = len(files) >= size
        if file_level:
            files = files[rank::size]
        names = tf.data.Dataset.from_tensor_slices(files)
        if epoch_seed is not None:
            names = names.shuffle(len(files), seed=epoch_seed)
        records = names.interleave(
            tf.data.TFRecordDataset,
            cycle_length=min(4, len(files)),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        if not file_level:
            records = records.shard(size, rank)
        return records.map(parse_image_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    order = np.arange(len(source.files))
    if epoch_seed is not None:
        order = np.random.default_rng(epoch_seed).permutation(order)
    order = order[rank::size]
    files = tf.constant([source.files[i] for i in order])
    labels = tf.constant([source.labels[i] for i in order], tf.int32)
    return tf.data.Dataset.from_tensor_slices((files, labels)).map(
        lambda path, label: (tf.io.read_file(path), label),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )


def train_dataset(
    source: ImageSource,
    preprocess: Preprocess,
    *,
    epoch: int,
    seed: int,
    steps: int,
    skip_steps: int,
    batch: int,
    rank: int,
    size: int,
):
    """Batches ``skip_steps`` .. ``steps`` of epoch ``epoch`` for this rank."""
    import tensorflow as tf

    epoch_seed = int(np.random.default_rng([seed, epoch]).integers(2**31))
    records = _records(source, rank, size, epoch_seed)
    if source.shards:
        records = records.shuffle(min(SHUFFLE_BUFFER, max(1, source.count // size)), seed=epoch_seed)
    records = records.repeat().enumerate().skip(skip_steps * batch).take((steps - skip_steps) * batch)
    offset = source.label_offset

    def prepare(position, record):
        encoded, label = record
        # this rank's position, interleaved with the other ranks': every image of the global batch its own draws
        element_seed = tf.stack([tf.constant(epoch_seed, tf.int64), position * size + rank])
        return preprocess(encoded, label - offset, tf.cast(element_seed, tf.int32))

    images = records.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return images.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def eval_dataset(source: ImageSource, preprocess: Preprocess, *, steps: int, batch: int, rank: int, size: int):
    """``steps`` batches of this rank's share of a validation split, in file order."""
    import tensorflow as tf

    records = _records(source, rank, size, None).repeat().take(steps * batch)
    offset = source.label_offset
    images = records.map(
        lambda encoded, label: preprocess(encoded, label - offset, tf.zeros([2], tf.int32)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return images.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def per_rank_steps(count: int, batch: int, size: int) -> int:
    """Steps every rank can take in one pass over ``count`` samples (the same on all ranks)."""
    return (count // size) // batch


def image_files(directory: Path, class_names: Sequence[str]) -> tuple[list[str], list[int]]:
    """Image files in ``directory/<class>/`` and their labels (the class's index in ``class_names``)."""
    suffixes = {".jpg", ".jpeg", ".png"}
    files: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(class_names):
        for path in sorted((directory / name).rglob("*")):
            if path.suffix.lower() in suffixes and path.is_file():
                files.append(str(path))
                labels.append(label)
    return files, labels
