"""TensorFlow's import-time environment: tf.keras is Keras 2 on every stack, and the kit's runs are quiet."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from hpcai_tf.train.summaries import SCALARS_PLUGIN, write_scalar
from hpcai_tf.train.tf_environment import QUIET, prepare_tensorflow, tensorflow_environment

# What TensorFlow >= 2.16 writes to stderr at start-up when nothing quiets it (absl, CPU features, oneDNN).
NOISE = ("absl::InitializeLog", "cpu_feature_guard", "oneDNN", "rebuild TensorFlow", "I0000 ", "W0000 ")


def test_a_variable_the_user_set_wins():
    """prepare_tensorflow fills in what is missing and keeps what is set (TF_CPP_MIN_LOG_LEVEL=0 shows all)."""
    env = {"TF_CPP_MIN_LOG_LEVEL": "0", "PATH": "/bin"}
    prepare_tensorflow(env)
    assert env == {**tensorflow_environment(), "TF_CPP_MIN_LOG_LEVEL": "0", "PATH": "/bin"}
    empty: dict[str, str] = {}
    prepare_tensorflow(empty)
    assert empty == tensorflow_environment() and empty["TF_CPP_MIN_LOG_LEVEL"] == QUIET["TF_CPP_MIN_LOG_LEVEL"]


def test_tf_keras_is_keras_2_on_this_stack():
    """With the kit's environment, tf.keras is Keras 2 (tf-keras on TF >= 2.16), which Horovod's Keras API needs."""
    import tensorflow as tf

    version = tuple(int(p) for p in tf.__version__.split(".")[:2])
    assert ("TF_USE_LEGACY_KERAS" in tensorflow_environment()) == (version >= (2, 16))
    if version >= (2, 16):
        import tf_keras

        assert tf.keras.Model is tf_keras.Model
    else:
        import keras

        assert keras.__version__.startswith("2.") and tf.keras.Model.__module__.startswith("keras.")
    import horovod.tensorflow.keras as hvd

    assert hvd.DistributedOptimizer(tf.keras.optimizers.legacy.SGD(0.1)) is not None


def test_scalars_are_written_without_the_tensorboard_package(tmp_path):
    """write_scalar's event holds the tag, the value and the scalars plugin's metadata, as tf.summary.scalar's."""
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(tmp_path))
    with writer.as_default(step=3):
        assert write_scalar(tf, "loss", 0.25)
    writer.flush()
    (event_file,) = tmp_path.iterdir()
    values = [
        (event.step, value)
        for event in tf.compat.v1.train.summary_iterator(str(event_file))
        for value in event.summary.value
    ]
    assert len(values) == 1
    step, value = values[0]
    assert (step, value.tag, value.metadata.plugin_data.plugin_name) == (3, "loss", SCALARS_PLUGIN)
    assert float(tf.make_ndarray(value.tensor)) == 0.25


def _without_kit_settings(kit) -> dict[str, str]:
    """The test environment less the variables the kit itself sets, so that the run shows the kit's defaults."""
    return {k: v for k, v in kit.env().items() if k not in tensorflow_environment()}


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_a_two_rank_smoke_run_writes_nothing_to_stderr(kit, gw_smoke_data, tmp_path):
    """`hpcai train gw --smoke --ranks 2`: no start-up notice of TensorFlow, absl or Open MPI on any rank."""
    env = _without_kit_settings(kit)
    bare = subprocess.run(  # the same Python without the kit: what TensorFlow prints on its own here
        [sys.executable, "-c", "import tensorflow as tf; print(float(tf.reduce_sum(tf.ones([2]))))"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bare.returncode == 0, bare.stderr
    print(f"\n[stderr of a bare TensorFlow import] {bare.stderr!r}")
    start = time.time()
    done = subprocess.run(
        [
            *kit.hpcai,
            "train",
            "gw",
            "--smoke",
            "--ranks",
            "2",
            "--data",
            str(gw_smoke_data),
            "--run-dir",
            str(tmp_path / "run"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    print(f"[duration] gw --smoke --ranks 2 (kit defaults): {time.time() - start:.1f} s")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "weights agree across ranks: True" in done.stdout
    assert done.stderr == ""
    assert not [line for line in done.stdout.splitlines() if any(mark in line for mark in NOISE)]
