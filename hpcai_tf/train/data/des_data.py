"""AI-DES data: GalSim galaxies written as TFRecord shards, or a folder of real images, read the same way.

A generated directory holds ``train-NNNNN-of-MMMMM.tfrecord`` and ``validation-...`` shards of PNG images with
labels 0 = elliptical, 1 = spiral, and ``dataset.json``. A folder of real JPEG/PNG images has ``spiral/`` and
``elliptical/`` subfolders; it is split into training and validation images by the seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hpcai_tf.errors import KitError
from hpcai_tf.train.data.galaxies import CLASS_NAMES, GalaxySpec, png_bytes, render_galaxy
from hpcai_tf.train.data.image_pipeline import ImageSource, image_files
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

FORMAT = "hpcai-des-1"


@dataclass(frozen=True)
class DesGeneration:
    n: int
    spec: GalaxySpec
    validation_fraction: float = 0.1
    shards: int = 16

    @property
    def validation_count(self) -> int:
        return max(1, round(self.n * self.validation_fraction))

    def shard_plan(self) -> list[tuple[str, int, int, range]]:
        """(split, shard index, shard count, galaxy indices) of every shard; validation galaxies come last."""
        n_val = self.validation_count
        plan = []
        for split, indices in (
            ("train", range(0, self.n - n_val)),
            ("validation", range(self.n - n_val, self.n)),
        ):
            count = max(1, min(self.shards if split == "train" else max(1, self.shards // 4), len(indices)))
            for index, part in enumerate(np.array_split(np.asarray(indices), count)):
                plan.append((split, index, count, range(int(part[0]), int(part[-1]) + 1)))
        return plan


def _render_shard(job: tuple[DesGeneration, int]) -> tuple[int, list[tuple[bytes, int]]]:
    gen, position = job
    _, _, _, indices = gen.shard_plan()[position]
    images = []
    for index in indices:
        image, label = render_galaxy(index, gen.spec)
        images.append((png_bytes(image), label))
    return position, images


def generate_des_dir(
    out: str | Path,
    gen: DesGeneration,
    *,
    workers: int = 1,
    rank: int = 0,
    size: int = 1,
    barrier=lambda: None,
) -> Path:
    """Render ``gen.n`` galaxies into shards under ``out``; shards are shared by ranks and ``workers``
    processes, each written atomically, so a rerun skips finished shards. ``dataset.json`` is written last."""
    out = Path(out).absolute()
    if gen.n < 2:
        raise KitError(f"--n must be >= 2 (one training and one validation image), got {gen.n}")
    if not 0.0 < gen.validation_fraction < 1.0:
        raise KitError(f"validation fraction must be in (0, 1), got {gen.validation_fraction}")
    if gen.spec.image_size < 32:
        raise KitError(f"--size must be >= 32 pixels, got {gen.spec.image_size}")
    info = read_dataset_json(out) if out.is_dir() else None
    if info is not None:
        raise KitError(f"{out}: already holds a finished data set; remove it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    plan = gen.shard_plan()

    def path_of(position: int) -> Path:
        split, index, count, _ = plan[position]
        return out / f"{shard_name(split, index, count)}.tfrecord"

    todo = [p for p in my_chunks(range(len(plan)), rank, size) if not path_of(p).exists()]
    for position, images in run_chunks(_render_shard, [(gen, p) for p in todo], workers):
        records = (
            ImageRecord(encoded, label, gen.spec.image_size, gen.spec.image_size, CLASS_NAMES[label], "PNG")
            for encoded, label in images
        )
        write_shard(path_of(position), records)
    barrier()
    if rank == 0:
        n_val = gen.validation_count
        write_dataset_json(
            out,
            {
                "format": FORMAT,
                "classes": list(CLASS_NAMES),
                "counts": {"train": gen.n - n_val, "validation": n_val},
                "label_offset": 0,
                "generator": "galsim",
                "spec": gen.spec.as_dict(),
            },
        )
    barrier()
    return out


def open_des_source(path: str | Path, *, validation_fraction: float, seed: int) -> tuple[ImageSource, ImageSource]:
    """(train, validation) sources of a generated directory or of a folder of real images."""
    path = Path(path)
    if not path.is_dir():
        raise KitError(f"{path}: DES data directory not found (write one with `hpcai data des --n N --out {path}`)")
    train_shards, val_shards = list_shards(path, "train"), list_shards(path, "validation")
    if train_shards:
        if not val_shards:
            raise KitError(f"{path}: has train shards but no validation-*-of-* shards")
        counts = (read_dataset_json(path) or {}).get("counts", {})
        return (
            ImageSource(shard_records(train_shards, counts.get("train")), shards=train_shards),
            ImageSource(shard_records(val_shards, counts.get("validation")), shards=val_shards),
        )
    if not all((path / name).is_dir() for name in CLASS_NAMES):
        raise KitError(
            f"{path}: expected TFRecord shards (train-*, validation-*) or image folders "
            f"{' and '.join(n + '/' for n in CLASS_NAMES)}"
        )
    files, labels = image_files(path, CLASS_NAMES)
    if len(files) < 4:
        raise KitError(f"{path}: found {len(files)} JPEG/PNG images in {'/, '.join(CLASS_NAMES)}/, need at least 4")
    order = np.random.default_rng([seed, 3]).permutation(len(files))
    n_val = max(1, round(len(files) * validation_fraction))
    val, train = order[:n_val], order[n_val:]
    _check_images([files[i] for i in order[: min(len(order), 64)]])
    return (
        ImageSource(len(train), files=[files[i] for i in train], labels=[labels[i] for i in train]),
        ImageSource(len(val), files=[files[i] for i in val], labels=[labels[i] for i in val]),
    )


def _check_images(files: list[str]) -> None:
    """Decode a sample of the images up front, so an unreadable one is named before training starts."""
    from PIL import Image, UnidentifiedImageError

    for name in files:
        try:
            with Image.open(name) as image:
                image.verify()
        except (OSError, UnidentifiedImageError) as err:
            raise KitError(f"{name}: not a readable JPEG/PNG image ({err})") from None
