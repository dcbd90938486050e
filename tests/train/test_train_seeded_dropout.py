"""The step-seeded Dropout of --deterministic: masks are a function of (seed, rank, epoch, step) and nothing else."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from hpcai_tf.train.models.seeded_dropout import StepSeed, dropout_layer


def model_with(step_seed):
    inputs = tf.keras.Input((256,))
    outputs = dropout_layer(0.7, step_seed, name="head_dropout")(inputs)
    return tf.keras.Model(inputs, outputs)


@tf.function
def train_call(model, x):
    return model(x, training=True)


def test_masks_follow_the_key_not_the_process_state():
    x = tf.ones((4, 256))
    first = StepSeed(1234, rank=0)
    model = model_with(first)
    first.set(2, 5)
    a = train_call(model, x).numpy()
    first.set(2, 6)  # the traced function reads the key at run time
    b = train_call(model, x).numpy()
    assert not np.array_equal(a, b)
    # a fresh key object and layer (a resumed process) at the same step draws the same mask
    again = StepSeed(1234, rank=0)
    again.set(2, 5)
    assert np.array_equal(model_with(again)(x, training=True).numpy(), a)
    other_rank = StepSeed(1234, rank=1)
    other_rank.set(2, 5)
    assert not np.array_equal(model_with(other_rank)(x, training=True).numpy(), a)
    other_epoch = StepSeed(1234, rank=0)
    other_epoch.set(3, 5)
    assert not np.array_equal(model_with(other_epoch)(x, training=True).numpy(), a)


def test_it_drops_and_scales_like_keras_dropout_and_is_the_identity_when_not_training():
    x = tf.ones((64, 256))
    step_seed = StepSeed(7, rank=0)
    model = model_with(step_seed)
    out = model(x, training=True).numpy()
    kept = out != 0
    assert 0.25 < kept.mean() < 0.35  # rate 0.7
    np.testing.assert_allclose(out[kept], 1 / 0.3, rtol=1e-6)
    assert np.array_equal(model(x, training=False).numpy(), x.numpy())
    assert np.array_equal(model.predict(x, verbose=0), x.numpy())


def test_the_key_is_not_a_model_variable():
    assert not model_with(StepSeed(7, rank=0)).variables
    assert [type(layer).__name__ for layer in model_with(None).layers][-1] == "Dropout"  # the default path
