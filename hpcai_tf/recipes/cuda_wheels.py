"""CUDA from NVIDIA's wheels: what TensorFlow's ``and-cuda`` extra admits, from ``containers/cuda-wheels.toml``.

A site with ``stack.cuda_source = "pypi-wheels"`` installs ``tensorflow[and-cuda]`` and pins the CUDA runtime,
cuDNN and NCCL wheels to its ``stack.cuda``, ``stack.cudnn`` and ``stack.nccl``; :func:`check_cuda_wheels` refuses
pins outside the ranges the TensorFlow pin's wheel declares, in one line naming the field.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import tomllib
from pip._vendor.packaging.specifiers import InvalidSpecifier, SpecifierSet

from hpcai_tf.catalog import Site
from hpcai_tf.errors import KitError
from hpcai_tf.files import display_path, read_text_file
from hpcai_tf.paths import CONTAINERS_DIR

CUDA_WHEELS = CONTAINERS_DIR / "cuda-wheels.toml"
AND_CUDA_EXTRA = "and-cuda"
"""TensorFlow's extra that pulls NVIDIA's CUDA 12 wheels (runtime, cuDNN, NCCL, cuBLAS, ptxas and libnvvm; no nvcc)."""
PINS = ("cuda", "cudnn", "nccl")
"""The stack fields a wheel-based CUDA source pins, each the version of one wheel ([wheels] of the file)."""


@cache
def _table(path: Path) -> dict:
    shown = display_path(path)
    try:
        data = tomllib.loads(read_text_file(path, "CUDA wheels file"))
    except tomllib.TOMLDecodeError as err:
        raise KitError(f"{shown}: not valid TOML: {err}") from None
    wheels = data.get("wheels")
    if not isinstance(wheels, dict) or set(wheels) != set(PINS) or not all(isinstance(v, str) for v in wheels.values()):
        raise KitError(f"{shown}: wheels: expected a table naming the wheel of each of {', '.join(PINS)}")
    for release, entry in data.get("tensorflow", {}).items():
        if not isinstance(entry, dict) or set(entry) != {"source", *PINS}:
            raise KitError(f"{shown}: tensorflow.{release}: expected source, {', '.join(PINS)}")
        for pin in PINS:
            try:
                SpecifierSet(entry[pin])
            except (InvalidSpecifier, TypeError):
                raise KitError(
                    f"{shown}: tensorflow.{release}.{pin}: expected a version range like >=12.5,<13"
                ) from None
    return data


def wheel_names(path: Path = CUDA_WHEELS) -> dict[str, str]:
    """Catalog pin (cuda, cudnn, nccl) -> the NVIDIA wheel whose version it pins."""
    return dict(_table(path)["wheels"])


def and_cuda_ranges(tensorflow: str, path: Path = CUDA_WHEELS) -> dict[str, str] | None:
    """The version range of each pinned wheel that TensorFlow ``tensorflow``'s ``and-cuda`` extra requires, or
    ``None`` when the file has no entry for that release."""
    entry = _table(path).get("tensorflow", {}).get(tensorflow)
    return None if entry is None else {pin: entry[pin] for pin in PINS}


def cuda_wheel_pins(site: Site, path: Path = CUDA_WHEELS) -> list[str]:
    """``NAME==VERSION`` of the CUDA runtime, cuDNN and NCCL wheels of a ``pypi-wheels`` site (none otherwise)."""
    if site.stack.cuda_source != "pypi-wheels":
        return []
    return [f"{wheel}=={getattr(site.stack, pin)}" for pin, wheel in wheel_names(path).items()]


def check_cuda_wheels(site: Site, path: Path = CUDA_WHEELS) -> None:
    """Refuse a ``pypi-wheels`` site whose TensorFlow has no entry in the file or whose CUDA, cuDNN or NCCL pin
    is outside what its ``and-cuda`` extra requires, in one line."""
    stack = site.stack
    if stack.cuda_source != "pypi-wheels":
        return
    ranges = and_cuda_ranges(stack.tensorflow, path)
    if ranges is None:
        raise KitError(
            f"site {site.id}: stack.cuda_source: 'pypi-wheels' with TensorFlow {stack.tensorflow}, which "
            f"{display_path(path)} does not list; add its and-cuda requirements there"
        )
    wheels = wheel_names(path)
    for pin in PINS:
        version = getattr(stack, pin)
        if version not in SpecifierSet(ranges[pin]):
            raise KitError(
                f"site {site.id}: stack.{pin}: {version} is not what TensorFlow {stack.tensorflow}'s and-cuda extra "
                f"brings ({wheels[pin]}{ranges[pin]}, {display_path(path)})"
            )
