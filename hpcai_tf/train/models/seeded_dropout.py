"""Dropout whose masks are a function of the run's seed, the rank, the epoch and the step (``--deterministic``).

Keras's Dropout draws from a stateful generator: its state lives in the process, so a resumed run draws other
masks than the uninterrupted one from the resume on. Here the mask of a step comes from a stateless generator
keyed by a small TensorFlow variable, :class:`StepSeed`, that the training loop sets before every step. The key is
not a model variable (a plain object holds it, so Keras does not track it): checkpoints, broadcasts and weight
digests are the same as with Keras's Dropout. Uses only APIs present in TensorFlow 2.15 and in tf-keras 2.21.
"""

from __future__ import annotations

import functools
import zlib

import numpy as np


def epoch_key(seed: int, rank: int, epoch: int) -> int:
    """The first half of an epoch's step keys: the run's seed, the rank (ranks draw different masks), the epoch."""
    return int(np.random.default_rng([seed, rank, epoch, 0x5EED]).integers(2**62))


class StepSeed:
    """The key of the current training step: an int64[2] variable, (epoch key, step in the epoch)."""

    def __init__(self, seed: int, rank: int):
        import tensorflow as tf

        self.seed, self.rank = seed, rank
        self.variable = tf.Variable([0, 0], dtype=tf.int64, trainable=False, name="hpcai_step_seed")
        self._epoch: int | None = None
        self._key = 0
        self.set(0, 0)

    def set(self, epoch: int, step: int) -> None:
        """Key the draws of step ``step`` (0-based, within the epoch) of epoch ``epoch`` (0-based)."""
        if epoch != self._epoch:
            self._epoch, self._key = epoch, epoch_key(self.seed, self.rank, epoch)
        self.variable.assign([self._key, step])


@functools.cache
def step_seeded_dropout_class():
    """The Keras layer class (built on first use: TensorFlow is imported lazily)."""
    import tensorflow as tf

    class StepSeededDropout(tf.keras.layers.Dropout):
        """Keras's Dropout (same rate, noise shape, scaling, name) with masks from ``step_seed``'s current key,
        folded with a constant of the layer's name so that two such layers draw different masks."""

        def __init__(self, rate: float, step_seed: StepSeed, **kwargs):
            super().__init__(rate, **kwargs)
            self._step_seed = step_seed
            self._salt = zlib.crc32(self.name.encode()) & 0x7FFFFFFF

        def call(self, inputs, training=None):
            if self.rate == 0:
                return tf.identity(inputs)
            if training is None:
                training = tf.keras.backend.learning_phase()

            def dropped():
                key = tf.random.experimental.stateless_fold_in(self._step_seed.variable.read_value(), self._salt)
                shape = self._get_noise_shape(inputs)
                keep = tf.random.stateless_uniform(tf.shape(inputs) if shape is None else shape, key) >= self.rate
                scale = tf.cast(1.0 / (1.0 - self.rate), inputs.dtype)
                return inputs * tf.cast(keep, inputs.dtype) * scale

            if isinstance(training, (bool, int)):
                return dropped() if training else tf.identity(inputs)
            return tf.cond(tf.cast(training, tf.bool), dropped, lambda: tf.identity(inputs))

    return StepSeededDropout


def dropout_layer(rate: float, step_seed: StepSeed | None, name: str):
    """Keras's Dropout without ``step_seed`` (the default, fast path), the step-seeded one with it."""
    import tensorflow as tf

    if step_seed is None:
        return tf.keras.layers.Dropout(rate, name=name)
    return step_seeded_dropout_class()(rate, step_seed, name=name)
