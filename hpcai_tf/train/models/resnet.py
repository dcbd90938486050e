"""ResNet-50 (Keras applications) with a float32 softmax top and L2 weight decay on kernels (Goyal et al.)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hpcai_tf.errors import KitError
from hpcai_tf.train.models import fresh_layer_names


def build_resnet50(model: Mapping[str, Any], classes: int, weight_decay: float):
    """ResNet-50 for ``image_size`` inputs and ``classes`` outputs; weight decay as an added L2 loss."""
    import tensorflow as tf

    fresh_layer_names()
    size = model["image_size"]
    if size < 32:
        raise KitError(f"model.image_size is {size}; ResNet-50 needs at least 32")
    base = tf.keras.applications.ResNet50(include_top=False, weights=None, input_shape=(size, size, 3), pooling="avg")
    for layer in base.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            layer.momentum = model["bn_momentum"]
    if model["base_weights"]:
        try:
            base.load_weights(model["base_weights"])
        except (OSError, ValueError) as err:
            raise KitError(f"{model['base_weights']}: cannot load ResNet50 weights ({err})") from None
    outputs = tf.keras.layers.Dense(classes, activation="softmax", name="predictions", dtype="float32")(base.output)
    network = tf.keras.Model(base.input, outputs, name="resnet50")
    if weight_decay > 0:
        kernels = [layer.kernel for layer in network.layers if hasattr(layer, "kernel")]
        network.add_loss(lambda: weight_decay * tf.add_n([tf.nn.l2_loss(k) for k in kernels]))
    return network
