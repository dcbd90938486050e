"""TensorFlow's import-time environment: tf.keras is Keras 2 on every stack, and the kit's runs are quiet."""

from __future__ import annotations

import os
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


# What TensorFlow 2.21's libraries printed while loading on an AMD EPYC with AVX-512 (2026-12-02), after a line of
# other text, with a WARNING and an ERROR line of the same shape. A line after a log line is its continuation.
LOADING = [
    "something else on stderr\n",
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
    "I0000 00:00:1796184641.412824    2747 port.cc:153] oneDNN custom operations are on.\n",
    "I0000 00:00:1796184641.449809    2747 cpu_feature_guard.cc:227] This TensorFlow binary is optimized.\n",
    "To enable the following instructions: AVX2 AVX512F FMA, rebuild TensorFlow.\n",
    "W0000 00:00:1796184641.5    2747 loader.cc:12] a warning\n",
    "E0000 00:00:1796184641.6    2747 loader.cc:40] an error\n",
]


@pytest.mark.parametrize(
    ("level", "kept"),
    [(0, list(range(7))), (1, [0, 5, 6]), (2, [0, 6]), (3, [0])],
)
def test_loading_lines_are_held_to_the_threshold(level, kept):
    """INFO lines (with their continuation) go at level 1, WARNING at 2, ERROR at 3; absl's notice from 1; text
    before any log line always passes."""
    from hpcai_tf.train.tf_environment import admitted_lines

    assert admitted_lines(LOADING, level) == [LOADING[i] for i in kept]


def test_importing_tensorflow_through_the_kit_prints_nothing(tmp_path):
    """A fresh process's ``import_tensorflow`` at the kit's threshold writes nothing to stderr (whatever the CPU)."""
    code = "from hpcai_tf.train.tf_environment import import_tensorflow; print(import_tensorflow().__version__)"
    env = {k: v for k, v in os.environ.items() if k not in tensorflow_environment()}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
