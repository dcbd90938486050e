"""The environment TensorFlow reads when it is imported: which Keras ``tf.keras`` is, and how much it logs.

Both must be set before the first ``import tensorflow`` of a process, so every command of the kit that imports it
calls :func:`prepare_tensorflow` first, and ``hpcai train --ranks N`` passes the result on to its ranks.

- ``TF_USE_LEGACY_KERAS=1`` when tf-keras is installed: the stack is then TensorFlow >= 2.16 with tf-keras
  (catalog ``stack.keras = "tf-keras"``), and tf.keras must be Keras 2 for Horovod's Keras API. The images set it
  in their environment; the host venv (which follows the ``local`` site) gets it here. On a stack without
  tf-keras (TensorFlow 2.15, where tf.keras is Keras 2 already) nothing is set.
- ``TF_CPP_MIN_LOG_LEVEL=2`` hides the C++ INFO and WARNING lines (CPU features, oneDNN notice, grappler); on
  TensorFlow 2.21 it also hides the absl start-up notice, which is printed only when a line is logged before
  absl's initialisation. ERROR lines still show. (``GLOG_minloglevel`` was measured to change nothing here.)

A value the user set wins: ``TF_CPP_MIN_LOG_LEVEL=0 hpcai train ...`` shows everything.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from importlib import metadata

QUIET = {"TF_CPP_MIN_LOG_LEVEL": "2"}
"""Log threshold of TensorFlow's C++ side: 2 hides INFO and WARNING, keeps ERROR."""


def has_tf_keras() -> bool:
    """Whether the tf-keras distribution (tf.keras as Keras 2 on TensorFlow >= 2.16) is installed."""
    try:
        metadata.distribution("tf-keras")
    except metadata.PackageNotFoundError:
        return False
    return True


def tensorflow_environment() -> dict[str, str]:
    """The variables (name: default) the kit sets before TensorFlow is imported, for this Python's stack."""
    env = dict(QUIET)
    if has_tf_keras():
        env["TF_USE_LEGACY_KERAS"] = "1"
    return env


def prepare_tensorflow(env: MutableMapping[str, str] | None = None) -> Mapping[str, str]:
    """Set each of :func:`tensorflow_environment`'s variables in ``env`` (default os.environ) unless already set."""
    env = os.environ if env is None else env
    for name, value in tensorflow_environment().items():
        env.setdefault(name, value)
    return env
