"""The in-image CUDA and GPU checks as far as this machine can run them: the soname each pinned library loads by,
how each library's version function encodes its release (the libraries themselves load in the delta image:
tests/build/test_gpu_image.py), and the GPU check's training steps and all-reduce run on the CPU."""

from __future__ import annotations

import pytest

from hpcai_tf.train.selftest import decode_library_version, gpu_train_steps, library_soname, nccl_all_reduce
from hpcai_tf.train.tf_environment import prepare_tensorflow


@pytest.mark.parametrize(
    ("pin", "version", "soname"),
    [
        ("cuda", "12.9.79", "libcudart.so.12"),
        ("cuda", "11.8.0", "libcudart.so.11.0"),
        ("cudnn", "9.28.0.42", "libcudnn.so.9"),
        ("cudnn", "8.6.0.163", "libcudnn.so.8"),
        ("nccl", "2.32.3", "libnccl.so.2"),
    ],
)
def test_each_pin_loads_by_the_soname_of_its_major(pin, version, soname):
    assert library_soname(pin, version) == soname


@pytest.mark.parametrize(
    ("pin", "code", "release"),
    [
        ("cuda", 12090, (12, 9)),
        ("cuda", 11080, (11, 8)),
        ("cudnn", 92800, (9, 28, 0)),
        ("cudnn", 8907, (8, 9, 7)),
        ("nccl", 23203, (2, 32, 3)),
        ("nccl", 21805, (2, 18, 5)),
        ("nccl", 2804, (2, 8, 4)),
    ],
)
def test_each_librarys_version_code_decodes_to_its_release(pin, code, release):
    """cudaRuntimeGetVersion: 1000 x major + 10 x minor; cudnnGetVersion and ncclGetVersion widened their minor
    field (cuDNN 9, NCCL 2.9)."""
    assert decode_library_version(pin, code) == release


@pytest.mark.slow  # imports TensorFlow (about 20 s at a load of 8)
def test_the_gpu_checks_steps_and_all_reduce_run_here_on_the_cpu():
    """No GPU here: TensorFlow's soft placement runs the /GPU:0 training steps on the CPU, and an all-reduce over one
    device needs no NCCL. What holds is the code and its arithmetic (the loss falls over 20 steps; one replica sums to
    1), not the GPU placement or NCCL, which only a GPU host exercises (`hpcai verify` there)."""
    prepare_tensorflow()  # as the kit does before TensorFlow loads: tf.keras is tf-keras on TF >= 2.16
    import tensorflow as tf

    losses, device = gpu_train_steps(tf, 20)
    assert len(losses) == 20 and losses[-1] < losses[0] / 2
    assert device.endswith("CPU:0")
    assert nccl_all_reduce(tf, ["/cpu:0"]) == ([1.0], ["/job:localhost/replica:0/task:0/device:CPU:0"])
