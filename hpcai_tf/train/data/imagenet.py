"""ImageNet for ResNet-50: conversion of the raw folder layout into standard TFRecord shards, a small
generated set for tests, and the usual preprocessing (random-resized crop and flip; centre crop for eval).

Shards follow the TensorFlow layout: ``train-00000-of-01024``, ``validation-00000-of-00128``, features
``image/encoded`` (JPEG) and ``image/class/label`` (1-based: 0 is reserved for "background", as in the
original converter), plus ``image/class/text``, ``image/height``, ``image/width`` and ``image/filename``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hpcai_tf.errors import KitError
from hpcai_tf.train.data.fixed_prefetch import fixed_prefetch
from hpcai_tf.train.data.image_pipeline import ImageSource
from hpcai_tf.train.data.parallel import my_chunks, run_chunks
from hpcai_tf.train.data.tfrecords import (
    ImageRecord,
    list_shards,
    read_dataset_json,
    shard_name,
    shard_records,
    write_dataset_json,
    write_shard,
)

FORMAT = "hpcai-imagenet-1"
LABEL_OFFSET = 1
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)  # Keras ResNet50's preprocess_input ("caffe" mode)
EVAL_CROP_FRACTION = 0.875
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}


# ---------------------------------------------------------------------------------------------- conversion
def _jpeg_record(path: Path, label: int, synset: str) -> ImageRecord:
    """The image as RGB JPEG (PNG, CMYK and greyscale files are re-encoded, as the original converter did)."""
    from PIL import Image, UnidentifiedImageError

    data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if image.format != "JPEG" or image.mode != "RGB":
                buffer = io.BytesIO()
                image.convert("RGB").save(buffer, format="JPEG", quality=95)
                data = buffer.getvalue()
    except (OSError, UnidentifiedImageError) as err:
        raise KitError(f"{path}: not a readable image ({err})") from None
    return ImageRecord(data, label, height, width, synset, "JPEG", path.name)


def _read_shard(job: tuple[list[tuple[str, int, str]], int]) -> tuple[int, list[ImageRecord]]:
    entries, position = job
    return position, [_jpeg_record(Path(name), label, synset) for name, label, synset in entries]


def raw_layout(source: Path) -> tuple[list[str], dict[str, list[tuple[str, int, str]]]]:
    """(synsets, {split: [(file, label, synset)]}) of ``source/{train,val}/<synset>/*``."""
    train_dir = source / "train"
    val_dir = next((source / name for name in ("val", "validation") if (source / name).is_dir()), None)
    if not train_dir.is_dir() or val_dir is None:
        raise KitError(f"{source}: expected train/<synset>/ and val/<synset>/ folders of images")
    synsets = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    if not synsets:
        raise KitError(f"{train_dir}: no class folders")
    splits: dict[str, list[tuple[str, int, str]]] = {}
    for split, directory in (("train", train_dir), ("validation", val_dir)):
        entries = []
        for label, synset in enumerate(synsets, start=LABEL_OFFSET):
            for path in sorted((directory / synset).glob("*")) if (directory / synset).is_dir() else []:
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    entries.append((str(path), label, synset))
        if not entries:
            raise KitError(f"{directory}: no images in its class folders")
        splits[split] = entries
    return synsets, splits


def convert_imagenet(
    source: str | Path,
    out: str | Path,
    *,
    train_shards: int = 1024,
    validation_shards: int = 128,
    workers: int = 1,
    rank: int = 0,
    size: int = 1,
    barrier=lambda: None,
) -> Path:
    """Convert the raw folder layout into shards; each shard is written atomically and skipped on a rerun."""
    source, out = Path(source), Path(out).absolute()
    synsets, splits = raw_layout(source)
    rng = np.random.default_rng(0)  # the original converter shuffles the training files once
    train = [splits["train"][i] for i in rng.permutation(len(splits["train"]))]
    plan = []
    for split, entries, count in (
        ("train", train, train_shards),
        ("validation", splits["validation"], validation_shards),
    ):
        count = max(1, min(count, len(entries)))
        for index, part in enumerate(np.array_split(np.arange(len(entries)), count)):
            plan.append((out / shard_name(split, index, count), [entries[i] for i in part]))
    _write_planned(plan, workers, rank, size, barrier)
    if rank == 0:
        counts = {"train": len(train), "validation": len(splits["validation"])}
        write_dataset_json(
            out,
            {
                "format": FORMAT,
                "classes": synsets,
                "counts": counts,
                "label_offset": LABEL_OFFSET,
                "source": str(source),
            },
        )
    barrier()
    return out


def _write_planned(plan, workers: int, rank: int, size: int, barrier) -> None:
    if (plan[0][0].parent / "dataset.json").exists():
        raise KitError(f"{plan[0][0].parent}: already holds a finished data set; remove it or choose another --out")
    plan[0][0].parent.mkdir(parents=True, exist_ok=True)
    todo = [p for p in my_chunks(range(len(plan)), rank, size) if not plan[p][0].exists()]
    for position, records in run_chunks(_read_shard, [(plan[p][1], p) for p in todo], workers):
        write_shard(plan[position][0], records)
    barrier()


# ------------------------------------------------------------------------------------------ generated set
@dataclass(frozen=True)
class SyntheticImagenet:
    """A small labelled set for tests: class k is a noisy colour gradient with hue k/classes."""

    n: int
    classes: int = 10
    image_size: int = 72
    validation_samples: int = 64
    shards: int = 4
    seed: int = 1234


def _synthetic_image(index: int, label: int, spec: SyntheticImagenet) -> bytes:
    import colorsys

    from PIL import Image

    rng = np.random.default_rng([spec.seed, 4, index])
    hue = (label - LABEL_OFFSET) / spec.classes
    base = np.array(colorsys.hsv_to_rgb(hue, 0.8, 0.9)) * 255.0
    ramp = np.linspace(0.5, 1.0, spec.image_size)
    angle = rng.uniform(0, 2 * np.pi)
    field = np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None]
    image = base[None, None, :] * (0.6 + 0.4 * field[..., None] / np.abs(field).max())
    image += rng.normal(0.0, 20.0, image.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), "RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _synthetic_shard(job: tuple[SyntheticImagenet, list[int], int]) -> tuple[int, list[ImageRecord]]:
    spec, indices, position = job
    records = []
    for index in indices:
        label = index % spec.classes + LABEL_OFFSET
        records.append(
            ImageRecord(_synthetic_image(index, label, spec), label, spec.image_size, spec.image_size, f"class{label}")
        )
    return position, records


def generate_synthetic_imagenet(
    out: str | Path,
    spec: SyntheticImagenet,
    *,
    workers: int = 1,
    rank: int = 0,
    size: int = 1,
    barrier=lambda: None,
) -> Path:
    """Write a small TFRecord set in the ImageNet layout (for tests and smoke runs)."""
    out = Path(out).absolute()
    if spec.n < 1 or spec.validation_samples < 1 or spec.classes < 2:
        raise KitError("synthetic ImageNet needs --n >= 1, validation samples >= 1 and --classes >= 2")
    if (out / "dataset.json").exists():
        raise KitError(f"{out}: already holds a finished data set; remove it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    plan = []
    total = spec.n + spec.validation_samples
    for split, indices in (("train", range(spec.n)), ("validation", range(spec.n, total))):
        count = max(1, min(spec.shards if split == "train" else max(1, spec.shards // 4), len(indices)))
        for index, part in enumerate(np.array_split(np.asarray(indices), count)):
            plan.append((out / shard_name(split, index, count), [int(i) for i in part]))
    todo = [p for p in my_chunks(range(len(plan)), rank, size) if not plan[p][0].exists()]
    for position, records in run_chunks(_synthetic_shard, [(spec, plan[p][1], p) for p in todo], workers):
        write_shard(plan[position][0], records)
    barrier()
    if rank == 0:
        write_dataset_json(
            out,
            {
                "format": FORMAT,
                "classes": [f"class{k}" for k in range(LABEL_OFFSET, spec.classes + LABEL_OFFSET)],
                "counts": {"train": spec.n, "validation": spec.validation_samples},
                "label_offset": LABEL_OFFSET,
                "generator": "synthetic",
            },
        )
    barrier()
    return out


# ---------------------------------------------------------------------------------------------- reading
def open_imagenet_source(path: str | Path) -> tuple[ImageSource, ImageSource, int]:
    """(train, validation, classes found) of a shard directory; shards are checked before training."""
    path = Path(path)
    if not path.is_dir():
        raise KitError(f"{path}: ImageNet TFRecord directory not found (convert with `hpcai data imagenet`)")
    train, validation = list_shards(path, "train"), list_shards(path, "validation")
    if not train or not validation:
        raise KitError(f"{path}: expected train-*-of-* and validation-*-of-* TFRecord shards")
    info = read_dataset_json(path) or {}
    counts = info.get("counts", {})
    offset = int(info.get("label_offset", LABEL_OFFSET))
    classes = len(info.get("classes", [])) or 1000
    return (
        ImageSource(shard_records(train, counts.get("train")), shards=train, label_offset=offset),
        ImageSource(shard_records(validation, counts.get("validation")), shards=validation, label_offset=offset),
        classes,
    )


def _normalise(image):
    """Keras ResNet50 input: BGR, mean-subtracted, 0-255 scale."""
    import tensorflow as tf

    return tf.reverse(image, axis=[-1]) - tf.constant(CAFFE_BGR_MEAN, tf.float32)


def train_preprocess(image_size: int, classes: int):
    """Random-resized crop (8-100 % of the area, aspect 3/4-4/3), resize, random flip; one-hot labels."""
    import tensorflow as tf

    def preprocess(encoded, label, seed):
        shape = tf.io.extract_jpeg_shape(encoded)
        begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
            shape,
            bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
            seed=seed,
            min_object_covered=0.1,
            aspect_ratio_range=(3.0 / 4.0, 4.0 / 3.0),
            area_range=(0.08, 1.0),
            max_attempts=10,
            use_image_if_no_bounding_boxes=True,
        )
        window = tf.stack([begin[0], begin[1], crop_size[0], crop_size[1]])
        image = tf.io.decode_and_crop_jpeg(encoded, window, channels=3)
        image = tf.image.resize(image, [image_size, image_size])
        image = tf.image.stateless_random_flip_left_right(image, seed=seed + 1)
        return _normalise(image), tf.one_hot(label, classes)

    return preprocess


def eval_preprocess(image_size: int, classes: int):
    """Centre crop of 87.5 % of the image, resized; one-hot labels."""
    import tensorflow as tf

    def preprocess(encoded, label, _seed):
        image = tf.io.decode_jpeg(encoded, channels=3)
        image = tf.image.central_crop(image, EVAL_CROP_FRACTION)
        image = tf.image.resize(image, [image_size, image_size])
        return _normalise(image), tf.one_hot(label, classes)

    return preprocess


def synthetic_batches(image_size: int, classes: int, batch: int, steps: int, seed: int):
    """``steps`` copies of one random batch in memory: throughput runs without reading files (no autotuning: it
    has nothing to tune in memory, and its wait at the end of each ``model.fit`` would count as training time)."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    images = rng.normal(0.0, 60.0, (batch, image_size, image_size, 3)).astype(np.float32)
    labels = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, batch)]
    return fixed_prefetch(tf.data.Dataset.from_tensors((images, labels)).repeat(steps))
