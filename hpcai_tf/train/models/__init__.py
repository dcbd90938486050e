"""Keras models of the three workloads; every layer is named, so checkpoints match variables by name."""


def fresh_layer_names() -> None:
    """Restart Keras's layer-name counters, so that a model's variable names match its checkpoints.

    Outside a distribution strategy's scope this is ``clear_session()``; inside one (``--backend mwms``) only the
    counters are reset, since ``clear_session()`` replaces the default graph that holds the open scope.
    """
    import tensorflow as tf

    if tf.distribute.has_strategy():
        tf.keras.backend.reset_uids()
    else:
        tf.keras.backend.clear_session()
