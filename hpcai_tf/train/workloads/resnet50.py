"""ResNet-50 on ImageNet TFRecords (or synthetic in-memory batches); quality is top-1 and top-5 accuracy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hpcai_tf.errors import KitError
from hpcai_tf.train.config import Config
from hpcai_tf.train.data.imagenet import (
    SyntheticImagenet,
    eval_preprocess,
    generate_synthetic_imagenet,
    open_imagenet_source,
    synthetic_batches,
    train_preprocess,
)
from hpcai_tf.train.workloads.base import RunContext, Stage, TrainingData, data_path_for, single_stage
from hpcai_tf.train.workloads.classification import image_training_data, topk_accuracy


def synthetic_set_from_config(config: Config, n: int | None = None) -> SyntheticImagenet:
    data = config["data"]
    return SyntheticImagenet(
        n=data["samples"] if n is None else n,
        classes=data["classes"],
        image_size=data["image_size"],
        validation_samples=data["validation_samples"],
        shards=data["shards"],
        seed=config["seed"],
    )


@dataclass
class ResNetWorkload:
    name: str = "resnet50"
    quality_name: str = "top1"

    def prepare_data(self, context: RunContext) -> TrainingData:
        config, ranks = context.config, context.ranks
        size, classes, batch = (
            config["model"]["image_size"],
            config["model"]["classes"],
            config["batch_per_rank"],
        )
        if config["data"]["synthetic"]:
            steps = config["steps_per_epoch"] or max(1, config["data"]["synthetic_samples"] // (batch * ranks.size))
            return TrainingData(
                description={"format": "synthetic", "image_size": size, "classes": classes},
                batch=batch,
                steps_per_epoch=steps,
                train=lambda epoch, skip: synthetic_batches(size, classes, batch, steps - skip, config["seed"] + epoch),
            )
        path, generate = data_path_for(context, "imagenet-smoke", "a TFRecord directory from `hpcai data imagenet`")
        if generate and not (path / "dataset.json").exists():
            if ranks.is_root:
                print(f"hpcai: writing {config['data']['samples']} smoke images into {path}", flush=True)
            generate_synthetic_imagenet(
                path, synthetic_set_from_config(config), rank=ranks.rank, size=ranks.size,
                barrier=lambda: ranks.barrier("imagenet.gen"),
            )  # fmt: skip
        train, val, found = ranks.agree(lambda: open_imagenet_source(path), "imagenet.open")
        if found > classes:
            raise KitError(f"{path}: holds {found} classes but model.classes is {classes}")
        return image_training_data(
            context,
            train,
            val,
            train_preprocess(size, classes),
            eval_preprocess(size, classes),
            {"path": str(path.absolute()), "format": "tfrecord", "classes": found},
        )

    def build_model(self, context: RunContext, data: TrainingData):
        from hpcai_tf.train.models.resnet import build_resnet50

        config = context.config
        return build_resnet50(config["model"], config["model"]["classes"], config["optimizer"]["weight_decay"])

    def loss_and_metrics(self, context: RunContext, data: TrainingData):
        import tensorflow as tf

        smoothing = context.config["model"]["label_smoothing"]
        metrics = [
            tf.keras.metrics.CategoricalAccuracy(name="top1"),
            tf.keras.metrics.TopKCategoricalAccuracy(k=5, name="top5"),
        ]
        return tf.keras.losses.CategoricalCrossentropy(label_smoothing=smoothing), metrics

    def stages(self, config: Config) -> list[Stage]:
        return single_stage(config)

    def apply_stage(self, model: Any, stage: Stage) -> None:
        return None

    def quality(self, context: RunContext, model: Any, data: TrainingData) -> dict[str, Any]:
        result = topk_accuracy(context, model, data, (1, 5), context.config["evaluate"]["batches"])
        return {
            "name": self.quality_name,
            "value": result["top1"],
            "top5": result["top5"],
            "images": result["images"],
        }


WORKLOAD = ResNetWorkload()
