"""The Keras models: the WaveNet's shapes, the reduced Xception against Keras's, and the DES stages."""

from __future__ import annotations

import numpy as np
import pytest

from hpcai_tf.train.config import resolve_config

pytestmark = pytest.mark.slow  # builds full-size Keras models (a few seconds each)


def test_wavenet_outputs_physical_parameters():
    import tensorflow as tf

    from hpcai_tf.train.models.wavenet import build_wavenet

    model_config = resolve_config("gw", smoke=True)["model"]
    model = build_wavenet(1024, model_config, label_center=[4.5, 0.0, 0.0], label_scale=[3.5, 0.8, 0.8])
    assert model.output_shape == (None, 3)
    assert len({v.name for v in model.variables}) == len(model.variables)  # names are unique
    dilations = sorted({layer.dilation_rate[0] for layer in model.layers if layer.name.endswith("_filter")})
    assert dilations == [1, 2, 4, 8, 16, 32, 64, 128]
    params = model.get_layer("params_scaled")
    params.set_weights([np.zeros_like(w) for w in params.get_weights()])
    out = model(tf.zeros((2, 1024, 2))).numpy()
    np.testing.assert_allclose(out, [[4.5, 0.0, 0.0]] * 2)  # scaled output 0 is the centre of the ranges


def test_reduced_xception_is_keras_xception_at_full_size():
    import tensorflow as tf

    from hpcai_tf.train.models.xception import build_xception

    keras = tf.keras.applications.Xception(include_top=False, weights=None, input_shape=(71, 71, 3))
    ours = build_xception((71, 71, 3))
    assert [type(layer).__name__ for layer in ours.layers] == [type(layer).__name__ for layer in keras.layers]
    assert ours.count_params() == keras.count_params() == 20_861_480
    assert [layer.name for layer in ours.layers[37:41]] == [layer.name for layer in keras.layers[37:41]]
    small = build_xception((72, 72, 3), width=0.25, middle_blocks=2)
    assert small.count_params() < keras.count_params() / 20


def test_des_stages_train_the_head_then_from_layer_40_then_from_layer_2():
    from hpcai_tf.train.models.xception_classifier import build_xception_classifier, set_trainable_from

    model = build_xception_classifier(resolve_config("des", smoke=True)["model"])
    head = [layer for layer in model.layers if layer.name.startswith("head_")]
    assert [layer.name for layer in head] == ["head_pool", "head_dense1", "head_dropout", "head_dense2",
                                              "head_softmax"]  # fmt: skip
    assert model.get_layer("head_dropout").rate == 0.7
    set_trainable_from(model, -1)
    assert all(layer.trainable == layer.name.startswith("head_") for layer in model.layers)
    set_trainable_from(model, 40)
    assert not any(layer.trainable for layer in model.layers[:40])
    assert all(layer.trainable for layer in model.layers[40:])
    set_trainable_from(model, 2)
    assert [layer.trainable for layer in model.layers[:3]] == [False, False, True]
