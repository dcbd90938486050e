"""The in-image CUDA checks' arithmetic: the soname each pinned library loads by, and how each library's version
function encodes its release (the libraries themselves load in the delta image: tests/build/test_gpu_image.py)."""

from __future__ import annotations

import pytest

from hpcai_tf.train.selftest import decode_library_version, library_soname


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
