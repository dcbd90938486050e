"""TFRecord shards of encoded images in the ImageNet layout (``image/encoded``, ``image/class/label``, ...).

Shards are named ``<split>-NNNNN-of-MMMMM`` (optionally ``.tfrecord``); a generated directory also holds
``dataset.json`` with the record counts, so a reader need not scan the shards to count them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpcai_tf.errors import KitError
from hpcai_tf.train.atomic import atomic_path, write_text_atomic

DATASET_JSON = "dataset.json"
SHARD_PATTERN = re.compile(r"^(?P<split>[a-z]+)-(?P<index>\d{5})-of-(?P<count>\d{5})(\.tfrecord)?$")
# Files up to this total size are read through once before training, so a corrupt record is reported up front.
FULL_CHECK_BYTES = 2 << 30


@dataclass(frozen=True)
class ImageRecord:
    """One encoded image and its label, as stored in a shard."""

    encoded: bytes
    label: int
    height: int
    width: int
    text: str = ""
    image_format: str = "JPEG"
    filename: str = ""


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}"


def image_example(record: ImageRecord) -> bytes:
    """A serialized ``tf.train.Example`` with the standard ImageNet feature names."""
    import tensorflow as tf

    def as_bytes(value: bytes | str) -> tf.train.Feature:
        value = value.encode() if isinstance(value, str) else value
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    def as_int(value: int) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    features = {
        "image/encoded": as_bytes(record.encoded),
        "image/format": as_bytes(record.image_format),
        "image/class/label": as_int(record.label),
        "image/class/text": as_bytes(record.text),
        "image/height": as_int(record.height),
        "image/width": as_int(record.width),
        "image/filename": as_bytes(record.filename),
    }
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def write_shard(path: Path, records: Iterable[ImageRecord]) -> int:
    """Write one shard atomically; return its record count."""
    import tensorflow as tf

    count = 0
    with atomic_path(path) as tmp, tf.io.TFRecordWriter(str(tmp)) as writer:
        for record in records:
            writer.write(image_example(record))
            count += 1
    return count


def write_dataset_json(directory: Path, info: dict[str, Any]) -> None:
    write_text_atomic(directory / DATASET_JSON, json.dumps(info, indent=2, sort_keys=True) + "\n")


def read_dataset_json(directory: Path) -> dict[str, Any] | None:
    path = directory / DATASET_JSON
    if not path.exists():
        return None
    try:
        info = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise KitError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(info, dict):
        raise KitError(f"{path}: expected a JSON object")
    return info


def list_shards(directory: Path, split: str) -> list[Path]:
    """The shards of ``split`` (``train`` or ``validation``) in ``directory``, sorted."""
    shards = []
    for path in sorted(directory.iterdir()) if directory.is_dir() else []:
        match = SHARD_PATTERN.match(path.name)
        if match and match["split"] == split:
            shards.append(path)
    return shards


def check_shards(files: Sequence[Path], *, full: bool | None = None) -> int | None:
    """Read the shards before training; a truncated or corrupt shard, or one without the image features, is a
    one-line error naming it. ``full`` None: read every record if the files are small (then return the record
    count), else only the first record of each (return None; the runtime names a shard that fails later)."""
    import tensorflow as tf

    if full is None:
        full = sum(f.stat().st_size for f in files) <= FULL_CHECK_BYTES
    total = 0
    for path in files:
        try:
            dataset = tf.data.TFRecordDataset(str(path))
            first = True
            for serialized in dataset if full else dataset.take(1):
                if first:
                    parse_image_example(serialized)
                    first = False
                total += 1
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError) as err:
            reason = err.message.split("\n")[0] if hasattr(err, "message") else str(err)
            raise KitError(f"{path}: corrupt or truncated TFRecord shard ({reason})") from None
        if first:
            raise KitError(f"{path}: empty TFRecord shard")
    return total if full else None


def shard_records(files: Sequence[Path], known: int | None = None) -> int:
    """Check ``files`` and return their record count: from the full check, else ``known`` (dataset.json),
    else by counting the records (one pass over the data)."""
    import tensorflow as tf

    counted = check_shards(files)
    if counted is not None:
        return counted
    if known is not None:
        return int(known)
    return int(sum(1 for _ in tf.data.TFRecordDataset([str(f) for f in files])))


def parse_image_example(serialized):
    """(encoded image bytes, int32 label) of one serialized Example."""
    import tensorflow as tf

    features = tf.io.parse_single_example(
        serialized,
        {
            "image/encoded": tf.io.FixedLenFeature([], tf.string),
            "image/class/label": tf.io.FixedLenFeature([], tf.int64),
        },
    )
    return features["image/encoded"], tf.cast(features["image/class/label"], tf.int32)


def find_bad_shard(files: Sequence[Path]) -> str:
    """Name the first unreadable shard among ``files`` (called after a read error during training)."""
    try:
        check_shards(files, full=True)
    except KitError as err:
        return str(err)
    return f"a TFRecord shard among {files[0].parent} failed to read during training"
