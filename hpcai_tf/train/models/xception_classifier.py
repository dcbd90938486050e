"""AI-DES: Keras Xception with the paper's head, and the layer ranges each fine-tuning stage trains."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hpcai_tf.errors import KitError
from hpcai_tf.train.models import fresh_layer_names
from hpcai_tf.train.models.seeded_dropout import StepSeed, dropout_layer
from hpcai_tf.train.models.xception import build_xception

HEAD_PREFIX = "head_"


def build_xception_classifier(model: Mapping[str, Any], classes: int = 2, step_seed: StepSeed | None = None):
    """Xception base (random weights, or ``base_weights`` from a local file) + GAP, Dense relu, Dropout,
    Dense relu, Dense softmax. Width 1 with 8 middle blocks is Keras's Xception; smaller values give the
    same architecture reduced (:mod:`hpcai_tf.train.models.xception`). Inputs must be at least 71x71.
    With ``step_seed`` the Dropout's masks are a function of the seed, rank, epoch and step
    (:mod:`hpcai_tf.train.models.seeded_dropout`), reproduced by a resumed run."""
    import tensorflow as tf

    fresh_layer_names()
    size = model["image_size"]
    if size < 71:
        raise KitError(f"model.image_size is {size}; Xception needs at least 71")
    if model["width"] == 1.0 and model["middle_blocks"] == 8:  # the paper's network: Keras's own Xception
        base = tf.keras.applications.Xception(include_top=False, weights=None, input_shape=(size, size, 3))
    else:
        base = build_xception((size, size, 3), width=model["width"], middle_blocks=model["middle_blocks"])
    for layer in base.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            layer.momentum = model["bn_momentum"]
    if model["base_weights"]:
        try:
            base.load_weights(model["base_weights"])
        except (OSError, ValueError) as err:
            raise KitError(f"{model['base_weights']}: cannot load Xception base weights ({err})") from None
    layers = tf.keras.layers
    x = layers.GlobalAveragePooling2D(name=f"{HEAD_PREFIX}pool")(base.output)
    x = layers.Dense(model["dense_units"], activation="relu", name=f"{HEAD_PREFIX}dense1")(x)
    x = dropout_layer(model["dropout"], step_seed, name=f"{HEAD_PREFIX}dropout")(x)
    x = layers.Dense(model["dense_units"], activation="relu", name=f"{HEAD_PREFIX}dense2")(x)
    outputs = layers.Dense(classes, activation="softmax", name=f"{HEAD_PREFIX}softmax", dtype="float32")(x)
    return tf.keras.Model(base.input, outputs, name="ai_des_xception")


def set_trainable_from(model, trainable_from: int) -> None:
    """Train the head and the base layers from index ``trainable_from`` on (-1: the head only)."""
    for index, layer in enumerate(model.layers):
        if layer.name.startswith(HEAD_PREFIX):
            layer.trainable = True
        else:
            layer.trainable = trainable_from >= 0 and index >= trainable_from
