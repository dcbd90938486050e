"""Xception (Chollet 2017) with a width multiplier and a number of middle-flow blocks, for smoke runs.

At width 1 with 8 middle blocks it is Keras's ``applications.Xception`` layer for layer (same layer types,
order and parameter count, which a test checks), so layer indices such as AI-DES's "unfreeze from layer 40"
mean the same in the reduced network. Every layer is named (Keras leaves the residual branches unnamed).
"""

from __future__ import annotations

WIDTHS = {
    "stem1": 32,
    "stem2": 64,
    "block2": 128,
    "block3": 256,
    "middle": 728,
    "exit1": 1024,
    "exit2": 1536,
    "exit3": 2048,
}


def _channels(name: str, width: float) -> int:
    return max(8, round(WIDTHS[name] * width / 8) * 8)


def build_xception(input_shape: tuple[int, int, int], *, width: float = 1.0, middle_blocks: int = 8):
    """The Xception base (no top) for ``input_shape`` images."""
    import tensorflow as tf

    layers = tf.keras.layers

    def sepconv(x, channels, name):
        x = layers.SeparableConv2D(channels, (3, 3), padding="same", use_bias=False, name=name)(x)
        return layers.BatchNormalization(name=f"{name}_bn")(x)

    def residual(x, channels, name):
        r = layers.Conv2D(channels, (1, 1), strides=(2, 2), padding="same", use_bias=False, name=f"{name}_conv")(x)
        return layers.BatchNormalization(name=f"{name}_bn")(r)

    inputs = tf.keras.Input(input_shape, name="image")
    x = layers.Conv2D(_channels("stem1", width), (3, 3), strides=(2, 2), use_bias=False, name="block1_conv1")(inputs)
    x = layers.BatchNormalization(name="block1_conv1_bn")(x)
    x = layers.Activation("relu", name="block1_conv1_act")(x)
    x = layers.Conv2D(_channels("stem2", width), (3, 3), use_bias=False, name="block1_conv2")(x)
    x = layers.BatchNormalization(name="block1_conv2_bn")(x)
    x = layers.Activation("relu", name="block1_conv2_act")(x)

    for block, key, first_act in (
        ("block2", "block2", False),
        ("block3", "block3", True),
        ("block4", "middle", True),
    ):
        channels = _channels(key, width)
        shortcut = residual(x, channels, f"{block}_residual")
        if first_act:
            x = layers.Activation("relu", name=f"{block}_sepconv1_act")(x)
        x = sepconv(x, channels, f"{block}_sepconv1")
        x = layers.Activation("relu", name=f"{block}_sepconv2_act")(x)
        x = sepconv(x, channels, f"{block}_sepconv2")
        x = layers.MaxPooling2D((3, 3), strides=(2, 2), padding="same", name=f"{block}_pool")(x)
        x = layers.Add(name=f"{block}_add")([x, shortcut])

    middle = _channels("middle", width)
    for index in range(middle_blocks):
        prefix = f"block{index + 5}"
        shortcut = x
        for conv in (1, 2, 3):
            x = layers.Activation("relu", name=f"{prefix}_sepconv{conv}_act")(x)
            x = sepconv(x, middle, f"{prefix}_sepconv{conv}")
        x = layers.Add(name=f"{prefix}_add")([x, shortcut])

    exit_block = f"block{middle_blocks + 5}"
    shortcut = residual(x, _channels("exit1", width), f"{exit_block}_residual")
    x = layers.Activation("relu", name=f"{exit_block}_sepconv1_act")(x)
    x = sepconv(x, middle, f"{exit_block}_sepconv1")
    x = layers.Activation("relu", name=f"{exit_block}_sepconv2_act")(x)
    x = sepconv(x, _channels("exit1", width), f"{exit_block}_sepconv2")
    x = layers.MaxPooling2D((3, 3), strides=(2, 2), padding="same", name=f"{exit_block}_pool")(x)
    x = layers.Add(name=f"{exit_block}_add")([x, shortcut])

    last = f"block{middle_blocks + 6}"
    x = sepconv(x, _channels("exit2", width), f"{last}_sepconv1")
    x = layers.Activation("relu", name=f"{last}_sepconv1_act")(x)
    x = sepconv(x, _channels("exit3", width), f"{last}_sepconv2")
    x = layers.Activation("relu", name=f"{last}_sepconv2_act")(x)
    return tf.keras.Model(inputs, x, name="xception")
