"""AI-GW's modified WaveNet: dilated causal 1-D convolutions with gated tanh x sigmoid units, residual and
skip paths, then a small dense head that regresses (q, s1z, s2z) in physical units."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hpcai_tf.train.models import fresh_layer_names


def build_wavenet(length: int, model: Mapping[str, Any], label_center: Sequence[float], label_scale: Sequence[float]):
    """The network for waveforms of ``length`` samples x 2 channels (Re, Im of h22).

    The last dense layer predicts parameters scaled to about [-1, 1]; a fixed rescaling layer maps them to
    physical units (``label_center + label_scale * y``), so the model's output is (q, s1z, s2z) itself.
    """
    import tensorflow as tf

    fresh_layer_names()
    layers = tf.keras.layers
    channels, skip_channels = model["channels"], model["skip_channels"]
    inputs = tf.keras.Input((length, 2), name="waveform")
    x = layers.Conv1D(channels, 1, padding="causal", name="input_conv")(inputs)
    skips = []
    for stack in range(model["stacks"]):
        for depth in range(model["dilation_depth"]):
            dilation = 2**depth
            name = f"stack{stack}_dilation{dilation}"
            conv = dict(kernel_size=model["kernel_size"], dilation_rate=dilation, padding="causal")
            filtered = layers.Conv1D(channels, activation="tanh", name=f"{name}_filter", **conv)(x)
            gate = layers.Conv1D(channels, activation="sigmoid", name=f"{name}_gate", **conv)(x)
            gated = layers.Multiply(name=f"{name}_gated")([filtered, gate])
            skips.append(layers.Conv1D(skip_channels, 1, name=f"{name}_skip")(gated))
            residual = layers.Conv1D(channels, 1, name=f"{name}_residual")(gated)
            x = layers.Add(name=f"{name}_residual_add")([x, residual])
    y = layers.Add(name="skip_sum")(skips) if len(skips) > 1 else skips[0]
    y = layers.Activation("relu", name="skip_relu")(y)
    y = layers.Conv1D(skip_channels, 1, activation="relu", name="post_conv1")(y)
    y = layers.Conv1D(skip_channels, 1, activation="relu", name="post_conv2")(y)
    pool = max(1, length // model["pooled_length"])
    y = layers.AveragePooling1D(pool, name="time_pool")(y)
    y = layers.Flatten(name="flatten")(y)
    y = layers.Dense(model["dense_units"], activation="relu", name="head_dense")(y)
    y = layers.Dense(3, name="params_scaled", dtype="float32")(y)
    outputs = layers.Rescaling(
        scale=list(map(float, label_scale)),
        offset=list(map(float, label_center)),
        name="params",
        dtype="float32",
    )(y)
    return tf.keras.Model(inputs, outputs, name="ai_gw_wavenet")
