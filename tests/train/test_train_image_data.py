"""AI-DES galaxies and ImageNet shards: generation, conversion, reading through tf.data, and their errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from hpcai_tf.errors import KitError
from hpcai_tf.train.data.des_data import DesGeneration, generate_des_dir, open_des_source
from hpcai_tf.train.data.galaxies import GalaxySpec, render_galaxy
from hpcai_tf.train.data.image_pipeline import eval_dataset, train_dataset
from hpcai_tf.train.data.imagenet import (
    SyntheticImagenet,
    convert_imagenet,
    eval_preprocess,
    generate_synthetic_imagenet,
    open_imagenet_source,
    train_preprocess,
)
from hpcai_tf.train.data.tfrecords import check_shards, list_shards

SPEC = GalaxySpec(image_size=48, seed=9)


def test_galaxies_are_reproducible_labelled_rgb_images():
    image, label = render_galaxy(3, SPEC)
    again, _ = render_galaxy(3, SPEC)
    assert image.shape == (48, 48, 3) and image.dtype == np.uint8 and label == 1
    np.testing.assert_array_equal(image, again)
    elliptical, label0 = render_galaxy(4, SPEC)
    assert label0 == 0
    # ellipticals are redder than spirals: R (i band) over B (g band)
    ratio = lambda im: im[..., 0].astype(float).sum() / max(1.0, im[..., 2].astype(float).sum())  # noqa: E731
    assert ratio(elliptical) > ratio(image)


@pytest.fixture(scope="module")
def des_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("des") / "set"
    return generate_des_dir(out, DesGeneration(n=20, spec=SPEC, validation_fraction=0.2, shards=3))


def test_des_generation_writes_shards_and_dataset_json(des_dir):
    info = json.loads((des_dir / "dataset.json").read_text())
    assert info["counts"] == {"train": 16, "validation": 4} and info["classes"] == ["elliptical", "spiral"]
    assert len(list_shards(des_dir, "train")) == 3 and len(list_shards(des_dir, "validation")) == 1
    with pytest.raises(KitError, match="already holds a finished data set"):
        generate_des_dir(des_dir, DesGeneration(n=20, spec=SPEC))


def _identity(size):
    import tensorflow as tf

    def preprocess(encoded, label, seed):
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        return tf.image.resize(tf.cast(image, tf.float32), [size, size]), label

    return preprocess


def test_epochs_are_sharded_by_rank_and_resume_at_a_step(des_dir):
    train, _ = open_des_source(des_dir, validation_fraction=0.1, seed=1)
    args = dict(epoch=0, seed=1, steps=4, batch=2, size=2)
    rank0 = [b[1].numpy().tolist() for b in train_dataset(train, _identity(48), skip_steps=0, rank=0, **args)]
    resumed = [b[1].numpy().tolist() for b in train_dataset(train, _identity(48), skip_steps=2, rank=0, **args)]
    assert len(rank0) == 4 and resumed == rank0[2:]
    images0 = np.concatenate([b[0].numpy() for b in train_dataset(train, _identity(48), skip_steps=0, rank=0, **args)])
    images1 = np.concatenate([b[0].numpy() for b in train_dataset(train, _identity(48), skip_steps=0, rank=1, **args)])
    assert not any(np.array_equal(a, b) for a in images0 for b in images1)  # ranks read different images
    other_epoch = [b[1].numpy().tolist() for b in train_dataset(train, _identity(48), skip_steps=0, rank=0,
                                                                 **{**args, "epoch": 1})]  # fmt: skip
    assert other_epoch != rank0 or len(set(map(tuple, rank0))) == 1


def test_folder_of_images_reads_like_shards(tmp_path):
    for label, name in enumerate(("elliptical", "spiral")):
        (tmp_path / name).mkdir()
        for i in range(3):
            image, _ = render_galaxy(2 * i + label, SPEC)
            Image.fromarray(image).save(tmp_path / name / f"g{i}.{'png' if i % 2 else 'jpg'}")
    train, val = open_des_source(tmp_path, validation_fraction=0.34, seed=2)
    assert (train.count, val.count) == (4, 2)
    batches = list(eval_dataset(val, _identity(48), steps=1, batch=2, rank=0, size=1))
    assert batches[0][0].shape == (2, 48, 48, 3)
    assert sorted(batches[0][1].numpy().tolist()) == sorted(val.labels)


def test_unreadable_image_in_a_folder_is_named(tmp_path):
    for name in ("elliptical", "spiral"):
        (tmp_path / name).mkdir()
        for i in range(2):
            Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / name / f"ok{i}.png")
    (tmp_path / "spiral" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(KitError, match=r"broken\.jpg: not a readable JPEG/PNG image"):
        open_des_source(tmp_path, validation_fraction=0.2, seed=1)


def test_corrupt_or_truncated_shard_is_a_one_line_error_naming_it(des_dir, tmp_path):
    shard = list_shards(des_dir, "train")[1]
    data = shard.read_bytes()
    truncated = tmp_path / "train-00000-of-00001.tfrecord"
    truncated.write_bytes(data[: len(data) - 100])
    with pytest.raises(KitError, match=r"train-00000-of-00001\.tfrecord: corrupt or truncated TFRecord") as err:
        check_shards([truncated])
    assert "\n" not in str(err.value)
    corrupt = tmp_path / "train-00001-of-00002.tfrecord"
    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(flipped))
    with pytest.raises(KitError, match=r"train-00001-of-00002\.tfrecord: corrupt or truncated TFRecord"):
        check_shards([corrupt])


def test_shard_without_image_features_is_named(tmp_path):
    import tensorflow as tf

    path = tmp_path / "train-00000-of-00001"
    with tf.io.TFRecordWriter(str(path)) as writer:
        feature = {"x": tf.train.Feature(int64_list=tf.train.Int64List(value=[1]))}
        writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    with pytest.raises(KitError, match=r"train-00000-of-00001: corrupt or truncated TFRecord shard"):
        check_shards([path])


def test_synthetic_imagenet_uses_the_standard_layout(tmp_path):
    spec = SyntheticImagenet(n=12, classes=3, image_size=40, validation_samples=6, shards=2)
    out = generate_synthetic_imagenet(tmp_path / "in", spec)
    train, val, classes = open_imagenet_source(out)
    assert (train.count, val.count, classes, train.label_offset) == (12, 6, 3, 1)
    batch = next(iter(train_dataset(train, train_preprocess(32, 3), epoch=0, seed=1, steps=1, skip_steps=0,
                                    batch=4, rank=0, size=1)))  # fmt: skip
    assert batch[0].shape == (4, 32, 32, 3) and batch[1].shape == (4, 3)
    assert batch[1].numpy().sum(axis=1).tolist() == [1.0] * 4  # one-hot, labels shifted to 0-based
    evaluated = next(iter(eval_dataset(val, eval_preprocess(32, 3), steps=1, batch=6, rank=0, size=1)))
    assert sorted(evaluated[1].numpy().argmax(axis=1).tolist()) == [0, 0, 1, 1, 2, 2]


def test_imagenet_conversion_from_raw_folders(tmp_path):
    raw = tmp_path / "raw"
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for synset in ("n01", "n02"):
            folder = raw / split / synset
            folder.mkdir(parents=True)
            for i in range(3):
                pixels = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{synset}_{i}.{'JPEG' if i else 'png'}")
    out = convert_imagenet(raw, tmp_path / "shards", train_shards=2, validation_shards=1)
    assert [p.name for p in list_shards(out, "train")] == ["train-00000-of-00002", "train-00001-of-00002"]
    train, val, classes = open_imagenet_source(out)
    assert (train.count, val.count, classes) == (6, 6, 2)
    info = json.loads((out / "dataset.json").read_text())
    assert info["classes"] == ["n01", "n02"] and info["label_offset"] == 1
    labels = sorted(
        int(b[1].numpy().argmax()) for b in eval_dataset(val, eval_preprocess(24, 2), steps=6, batch=1, rank=0, size=1)
    )
    assert labels == [0, 0, 0, 1, 1, 1]  # PNG files were re-encoded to JPEG and decode like the rest
