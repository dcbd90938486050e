"""AI-DES: spiral versus elliptical galaxies with an Xception classifier, fine-tuned in three stages;
quality is the validation accuracy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hpcai_tf.train.config import Config
from hpcai_tf.train.data.des_data import DesGeneration, generate_des_dir, open_des_source
from hpcai_tf.train.data.galaxies import CLASS_NAMES, GalaxySpec
from hpcai_tf.train.workloads.base import RunContext, Stage, TrainingData, data_path_for
from hpcai_tf.train.workloads.classification import image_training_data, topk_accuracy


def generation_from_config(config: Config, n: int | None = None) -> DesGeneration:
    """The generation settings in a config's [data] table (``hpcai data des`` defaults, smoke data)."""
    data = config["data"]
    fwhm = data["psf_fwhm_arcsec"]
    spec = GalaxySpec(
        image_size=data["image_size"],
        pixel_scale_arcsec=data["pixel_scale_arcsec"],
        psf_fwhm_min=float(min(fwhm)),
        psf_fwhm_max=float(max(fwhm)),
        sky_noise=data["sky_noise"],
        seed=config["seed"],
    )
    return DesGeneration(
        n=data["samples"] if n is None else n,
        spec=spec,
        validation_fraction=data["validation_fraction"],
        shards=data["shards"],
    )


def augment_and_scale(image_size: int, augment: dict[str, Any], training: bool):
    """Decode, resize, (flip, rotate, zoom, shift with stateless seeds), scale to [-1, 1]; one-hot labels."""
    import math

    import tensorflow as tf

    def preprocess(encoded, label, seed):
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        image = tf.image.resize(tf.cast(image, tf.float32), [image_size, image_size]) / 255.0
        if training:
            if augment["flip"]:
                image = tf.image.stateless_random_flip_left_right(image, seed)
                image = tf.image.stateless_random_flip_up_down(image, seed + 1)
            u = tf.random.stateless_uniform([4], seed + 2, -1.0, 1.0)
            angle = u[0] * augment["rotation_deg"] * math.pi / 180.0
            zoom = 1.0 + u[1] * augment["zoom"]
            shift = u[2:] * augment["shift"] * image_size
            c = (image_size - 1) / 2.0
            cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
            # output pixel (x, y) samples input (a0 x + a1 y + a2, b0 x + b1 y + b2): rotation and zoom
            # about the centre, then the shift
            transform = tf.stack(
                [
                    cos,
                    -sin,
                    c - cos * c + sin * c + shift[0],
                    sin,
                    cos,
                    c - sin * c - cos * c + shift[1],
                    0.0,
                    0.0,
                ]
            )
            image = tf.raw_ops.ImageProjectiveTransformV3(
                images=image[None],
                transforms=transform[None],
                output_shape=tf.constant([image_size, image_size]),
                fill_value=0.0,
                interpolation="BILINEAR",
                fill_mode="REFLECT",
            )[0]
        return image * 2.0 - 1.0, tf.one_hot(label, len(CLASS_NAMES))

    return preprocess


@dataclass
class DesWorkload:
    name: str = "des"
    quality_name: str = "accuracy"

    def prepare_data(self, context: RunContext) -> TrainingData:
        config, ranks = context.config, context.ranks
        path, generate = data_path_for(context, "des-smoke", "a directory from `hpcai data des` or of images")
        if generate and not (path / "dataset.json").exists():
            if ranks.is_root:
                print(f"hpcai: rendering {config['data']['samples']} smoke galaxies into {path}", flush=True)
            generate_des_dir(
                path,
                generation_from_config(config),
                rank=ranks.rank,
                size=ranks.size,
                barrier=lambda: ranks.barrier("des.gen"),
            )
        train, val = ranks.agree(
            lambda: open_des_source(path, validation_fraction=config["validation_fraction"], seed=config["seed"]),
            "des.open",
        )
        size = config["model"]["image_size"]
        return image_training_data(
            context,
            train,
            val,
            augment_and_scale(size, config["augment"], training=True),
            augment_and_scale(size, config["augment"], training=False),
            {
                "path": str(path.absolute()),
                "format": "tfrecord" if train.shards else "image folder",
                "classes": list(CLASS_NAMES),
            },
        )

    def build_model(self, context: RunContext, data: TrainingData):
        from hpcai_tf.train.models.xception_classifier import build_xception_classifier

        return build_xception_classifier(context.config["model"], classes=len(CLASS_NAMES), step_seed=context.step_seed)

    def loss_and_metrics(self, context: RunContext, data: TrainingData):
        import tensorflow as tf

        return tf.keras.losses.CategoricalCrossentropy(), [tf.keras.metrics.CategoricalAccuracy(name="accuracy")]

    def stages(self, config: Config) -> list[Stage]:
        return [
            Stage(
                name=stage["name"],
                epochs=stage["epochs"],
                trainable_from=stage["trainable_from"],
                patience=stage["patience"],
                plateau_patience=stage["plateau_patience"],
                plateau_factor=stage["plateau_factor"],
            )
            for stage in config["stages"]
            if stage["epochs"] > 0
        ]

    def apply_stage(self, model: Any, stage: Stage) -> None:
        from hpcai_tf.train.models.xception_classifier import set_trainable_from

        set_trainable_from(model, -1 if stage.trainable_from is None else stage.trainable_from)

    def quality(self, context: RunContext, model: Any, data: TrainingData) -> dict[str, Any]:
        result = topk_accuracy(context, model, data, (1,), context.config["evaluate"]["batches"])
        return {"name": self.quality_name, "value": result["top1"], "images": result["images"]}


WORKLOAD = DesWorkload()
