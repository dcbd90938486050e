"""What the performance model needs from a workload: its gradient size, tensor count and training length.

The gradient size comes from building the workload's Keras model (on the CPU, no data) with the training
package; the epochs and full dataset size from the workload's paper-scale configuration.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSize:
    """A workload's model and training length."""

    parameters: int
    tensors: int
    epochs: int
    dataset_size: int


def training_length(workload: str) -> tuple[int, int]:
    """(epochs, full dataset size) of the workload's paper-scale configuration."""
    from hpcai_tf.train.config import resolve_config

    config = resolve_config(workload)
    return int(config["epochs"]), int(config["dataset_size"])


def build_model(workload: str, config: dict):
    """The workload's Keras model for ``config``, built without its data (shapes come from the config)."""
    from hpcai_tf.train.tf_environment import import_tensorflow

    import_tensorflow()  # first: what TensorFlow's libraries print while loading is filtered
    if workload == "gw":
        from hpcai_tf.train.models.wavenet import build_wavenet
        from hpcai_tf.train.workloads.gw import generation_from_config, label_scaling

        center, scale = label_scaling(generation_from_config(config))
        return build_wavenet(config["data"]["length"], config["model"], center, scale)
    if workload == "des":
        from hpcai_tf.train.models.xception_classifier import build_xception_classifier

        return build_xception_classifier(config["model"], classes=2)
    from hpcai_tf.train.models.resnet import build_resnet50

    return build_resnet50(config["model"], config["model"]["classes"], config["optimizer"]["weight_decay"])


def model_size(workload: str, smoke: bool = False) -> ModelSize:
    """Trainable parameters and variables of the workload's model (the smoke preset's with ``smoke``)."""
    from hpcai_tf.train.config import resolve_config

    config = resolve_config(workload, smoke=smoke)
    model = build_model(workload, config)
    epochs, dataset = training_length(workload)
    return ModelSize(
        parameters=int(sum(int(v.shape.num_elements()) for v in model.trainable_variables)),
        tensors=len(model.trainable_variables),
        epochs=epochs,
        dataset_size=dataset,
    )
