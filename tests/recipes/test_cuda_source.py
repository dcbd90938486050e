"""stack.cuda_source: its inconsistent uses are refused in one line naming the field (issue #18)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import assert_refused

from hpcai_tf.catalog import load_site
from hpcai_tf.errors import KitError
from hpcai_tf.paths import SITES_DIR
from hpcai_tf.recipes.cuda_wheels import and_cuda_ranges, check_cuda_wheels, cuda_wheel_pins

CATALOG_REFUSALS = [
    ("hal", 'cuda_source = "conda"', 'cuda_source = "pypi-wheels"', ["stack.cuda_source", "x86_64", "ppc64le"]),
    ("summit", 'cuda_source = "conda"', 'cuda_source = "pypi-wheels"', ["stack.cuda_source", "x86_64"]),
    ("local", 'cuda_source = "none"', 'cuda_source = "pypi-wheels"', ["stack.cuda_source", "'none' exactly"]),
    ("bridges-ai", 'cuda_source = "base-image"', 'cuda_source = "none"', ["stack.cuda_source", "'none' exactly"]),
    ("bridges-ai", 'cuda_source = "base-image"', 'cuda_source = "conda"', ["stack.cuda_source", "open-ce"]),
    ("hal", 'cuda_source = "conda"', 'cuda_source = "base-image"', ["stack.cuda_source", "open-ce"]),
    ("local", 'cuda_source = "none"', 'cuda_source = "apt"', ["stack.cuda_source", "pypi-wheels"]),
    (
        "delta",
        'horovod_gpu_operations = "none"',
        'horovod_gpu_operations = "NCCL"',
        ["stack.horovod_gpu_operations", "'NCCL' needs nvcc", "nvidia-cuda-nvcc-cu12", "docs/images.md"],
    ),
    (
        "bridges-ai",
        'horovod_gpu_operations = "NCCL"',
        'horovod_gpu_operations = "none"',
        ["stack.horovod_gpu_operations", "'none' exactly"],
    ),
]


@pytest.mark.parametrize(
    ("site", "old", "new", "names"), CATALOG_REFUSALS, ids=[str(i) for i in range(len(CATALOG_REFUSALS))]
)
def test_catalog_refuses_an_inconsistent_cuda_source(hpcai, tmp_path: Path, site, old, new, names):
    """A wheel-based CUDA on a ppc64le or conda site, a CUDA source on a CPU image, Horovod GPU operations with CUDA
    from the wheels (no nvcc) or none on another GPU image: one line, nothing written."""
    catalog = tmp_path / "sites"
    shutil.copytree(SITES_DIR, catalog)
    path = catalog / f"{site}.toml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    out = tmp_path / "out"
    result = hpcai("render", "--out", str(out), env={"HPCAI_CATALOG": str(catalog)})
    assert_refused(result, f"{site}.toml", *names)
    assert not out.exists()


def _wheel_site(**pins: str):
    """bridges-ai with its stack switched to NVIDIA's wheels and TensorFlow 2.21.0 (not re-validated)."""
    site = load_site("bridges-ai")
    stack = {"cuda_source": "pypi-wheels", "tensorflow": "2.21.0", "cuda": "12.9.79", "cudnn": "9.28.0.42"}
    stack.update({"nccl": "2.32.3", **pins})
    return site.model_copy(update={"stack": site.stack.model_copy(update=stack)})


def test_and_cuda_ranges_of_tensorflow_2_21():
    """The ranges recorded from tensorflow 2.21.0's METADATA (Requires-Dist, extra == "and-cuda")."""
    assert and_cuda_ranges("2.21.0") == {
        "cuda": ">=12.5.82,<13.0",
        "cudnn": ">=9.3.0.75,<10.0",
        "nccl": ">=2.27.7,<3.0",
    }
    assert and_cuda_ranges("2.13.1") is None


def test_pins_inside_the_ranges_pass_and_become_pip_pins():
    site = _wheel_site()
    check_cuda_wheels(site)
    assert cuda_wheel_pins(site) == [
        "nvidia-cuda-runtime-cu12==12.9.79",
        "nvidia-cudnn-cu12==9.28.0.42",
        "nvidia-nccl-cu12==2.32.3",
    ]
    assert cuda_wheel_pins(load_site("bridges-ai")) == []


@pytest.mark.parametrize(
    ("pins", "names"),
    [
        ({"cudnn": "8.6.0.163"}, ["stack.cudnn: 8.6.0.163", "nvidia-cudnn-cu12>=9.3.0.75,<10.0"]),
        ({"cuda": "11.8.0"}, ["stack.cuda: 11.8.0", "nvidia-cuda-runtime-cu12"]),
        ({"cuda": "13.0.1"}, ["stack.cuda: 13.0.1"]),
        ({"nccl": "2.16.5"}, ["stack.nccl: 2.16.5", "nvidia-nccl-cu12>=2.27.7,<3.0"]),
        ({"tensorflow": "2.13.1"}, ["stack.cuda_source", "TensorFlow 2.13.1", "cuda-wheels.toml"]),
    ],
)
def test_pins_the_tensorflow_wheel_does_not_bring_are_refused(pins, names):
    with pytest.raises(KitError) as err:
        check_cuda_wheels(_wheel_site(**pins))
    message = str(err.value)
    assert "\n" not in message
    for name in names:
        assert name in message, (name, message)
