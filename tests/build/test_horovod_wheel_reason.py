"""Whether the local image installs the host's Horovod wheel: only when its record names the image's own build."""

from __future__ import annotations

import hashlib
import platform
from pathlib import Path

import pytest

from hpcai_tf.catalog import load_site
from hpcai_tf.image.context import BuildOptions, horovod_wheel_reason, horovod_wheels, record_reason, stage_context
from hpcai_tf.paths import PATCHES_DIR
from hpcai_tf.recipes.build_inputs import build_inputs
from hpcai_tf.recipes.horovod_build import image_record, record_text

WHEEL = "horovod-0.28.1-cp311-cp311-linux_x86_64.whl"
x86_64 = pytest.mark.skipif(platform.machine() != "x86_64", reason="the local sites are x86_64")


def sha256(name: str) -> str:
    return hashlib.sha256((PATCHES_DIR / f"{name}.patch").read_bytes()).hexdigest()


def host_wheel(directory: Path, record: dict[str, object]) -> Path:
    """A wheel file and its sidecar, as scripts/setup-venv.sh leaves them."""
    wheel = directory / WHEEL
    wheel.write_bytes(b"PK")
    (directory / f"{WHEEL}.built-against.json").write_text(record_text(record) + "\n")
    return wheel


def test_the_local_image_needs_this_build():
    """The record a wheel must carry to serve the local image: its pins, patches by sha256, OS, MPI and switches."""
    assert image_record(load_site("local")) == {
        "horovod": "0.28.1",
        "patches": [
            f"horovod-0.28.1-no-xla-ops sha256:{sha256('horovod-0.28.1-no-xla-ops')}",
            f"horovod-0.28.1-tf-keras-backend sha256:{sha256('horovod-0.28.1-tf-keras-backend')}",
        ],
        "tensorflow": "tensorflow-cpu==2.21.0",
        "python": "3.11.2",
        "platform": "linux-x86_64",
        "os": "debian 12",
        "mpi": "openmpi 4.1.4 (debian package)",
        "switches": [
            "HOROVOD_WITH_TENSORFLOW=1",
            "HOROVOD_WITH_MPI=1",
            "HOROVOD_WITHOUT_PYTORCH=1",
            "HOROVOD_WITHOUT_MXNET=1",
        ],
    }


@x86_64
def test_the_local_image_takes_the_host_wheel_of_its_own_build(tmp_path):
    """Same Horovod, patches, TensorFlow, Python ABI, platform, OS, MPI and switches: the wheel is staged, without
    its record (the patched site's recipe installs it instead of compiling)."""
    local = load_site("local")
    record = dict(image_record(local), python="3.11.7")  # another patch release of CPython 3.11: the same cp311 ABI
    wheel = host_wheel(tmp_path, record)
    assert horovod_wheel_reason(local, tmp_path) is None
    assert horovod_wheels(local, tmp_path) == [wheel]
    staged = stage_context(build_inputs(local), BuildOptions(wheels_dir=tmp_path), dest=tmp_path / "ctx")
    assert staged.wheels == [WHEEL]
    assert sorted(p.name for p in (staged.path / "build/wheels").iterdir()) == [WHEEL]


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("horovod", "0.28.0", "horovod: the wheel was built with 0.28.0, the image needs 0.28.1"),
        (
            "patches",
            [f"horovod-0.28.1-no-xla-ops sha256:{sha256('horovod-0.28.1-no-xla-ops')}"],
            "patches: the wheel was built with horovod-0.28.1-no-xla-ops sha256:{0}, the image needs "
            "horovod-0.28.1-no-xla-ops sha256:{0}, horovod-0.28.1-tf-keras-backend sha256:{1}",
        ),
        (
            "patches",
            ["horovod-0.28.1-no-xla-ops sha256:00", "horovod-0.28.1-tf-keras-backend sha256:11"],
            "patches: the wheel was built with horovod-0.28.1-no-xla-ops sha256:00, "
            "horovod-0.28.1-tf-keras-backend sha256:11, the image needs horovod-0.28.1-no-xla-ops sha256:{0}, "
            "horovod-0.28.1-tf-keras-backend sha256:{1}",
        ),
        (
            "tensorflow",
            "tensorflow-cpu==2.20.0",
            "tensorflow: the wheel was built with tensorflow-cpu==2.20.0, the image needs tensorflow-cpu==2.21.0",
        ),
        (
            "tensorflow",
            "tensorflow==2.21.0",
            "tensorflow: the wheel was built with tensorflow==2.21.0, the image needs tensorflow-cpu==2.21.0",
        ),
        ("python", "3.12.1", "python: the wheel was built with 3.12, the image needs 3.11"),
        ("platform", "linux-aarch64", "platform: the wheel was built with linux-aarch64, the image needs linux-x86_64"),
        ("os", "ubuntu 22.04", "os: the wheel was built with ubuntu 22.04, the image needs debian 12"),
        (
            "mpi",
            "openmpi 4.1.2 (debian package)",
            "mpi: the wheel was built with openmpi 4.1.2 (debian package), "
            "the image needs openmpi 4.1.4 (debian package)",
        ),
        (
            "mpi",
            "openmpi 4.1.4 (not from a package)",
            "mpi: the wheel was built with openmpi 4.1.4 (not from a "
            "package), the image needs openmpi 4.1.4 (debian package)",
        ),
        ("mpi", None, "mpi: the wheel was built with nothing recorded, the image needs openmpi 4.1.4 (debian package)"),
        (
            "switches",
            [
                "HOROVOD_WITH_TENSORFLOW=1",
                "HOROVOD_WITH_MPI=1",
                "HOROVOD_WITHOUT_PYTORCH=1",
                "HOROVOD_WITHOUT_MXNET=1",
                "HOROVOD_WITHOUT_GLOO=1",
            ],
            "switches: the wheel was built with HOROVOD_WITH_TENSORFLOW=1, HOROVOD_WITH_MPI=1, "
            "HOROVOD_WITHOUT_PYTORCH=1, HOROVOD_WITHOUT_MXNET=1, HOROVOD_WITHOUT_GLOO=1, the image needs "
            "HOROVOD_WITH_TENSORFLOW=1, HOROVOD_WITH_MPI=1, HOROVOD_WITHOUT_PYTORCH=1, HOROVOD_WITHOUT_MXNET=1",
        ),
    ],
)
def test_each_difference_of_the_build_is_named(field, value, reason):
    """One field of the record off, the first in the order of the record: that field, what was built, what the
    image needs."""
    local = load_site("local")
    record = dict(image_record(local))
    if value is None:
        del record[field]
    else:
        record[field] = value
    expected = reason.format(sha256("horovod-0.28.1-no-xla-ops"), sha256("horovod-0.28.1-tf-keras-backend"))
    assert record_reason(local, record) == expected


def test_a_record_of_the_older_format_is_refused():
    """The sidecar before it named the whole build (TensorFlow, Python, patches) proves nothing of the MPI or
    switches: refused at its first missing field."""
    local = load_site("local")
    old = {key: image_record(local)[key] for key in ("patches", "python", "tensorflow")}
    assert record_reason(local, old) == "horovod: the wheel was built with nothing recorded, the image needs 0.28.1"


@x86_64
def test_the_reason_names_the_wheel_and_its_first_difference(tmp_path):
    """The one line `hpcai build` prints when Horovod compiles: the wheel's name, then the difference."""
    local = load_site("local")
    host_wheel(tmp_path, dict(image_record(local), tensorflow="tensorflow-cpu==2.20.0"))
    assert horovod_wheel_reason(local, tmp_path) == (
        f"{WHEEL}: tensorflow: the wheel was built with tensorflow-cpu==2.20.0, the image needs tensorflow-cpu==2.21.0"
    )
    assert horovod_wheels(local, tmp_path) == []


@x86_64
def test_no_wheel_or_no_record_compiles(tmp_path):
    """No wheel, a wheel without a readable record, or ``--wheels none``: compiled, and said so."""
    local = load_site("local")
    assert horovod_wheel_reason(local, None) == "hpcai build --wheels none"
    assert horovod_wheel_reason(local, tmp_path) == f"no {tmp_path / WHEEL} (scripts/setup-venv.sh builds it)"
    (tmp_path / WHEEL).write_bytes(b"PK")
    assert (
        horovod_wheel_reason(local, tmp_path) == f"{tmp_path / WHEEL} has no readable record {WHEEL}.built-against.json"
    )
    (tmp_path / f"{WHEEL}.built-against.json").write_text("[]")
    assert horovod_wheels(local, tmp_path) == []


def test_sites_no_host_wheel_can_serve(tmp_path):
    """Conda sites, GPU builds and another architecture are refused before any record is read."""
    host_wheel(tmp_path, image_record(load_site("local")))
    assert horovod_wheel_reason(load_site("summit"), tmp_path) == "the image takes Horovod from the open-ce channel"
    assert horovod_wheel_reason(load_site("bridges-ai"), tmp_path) == (
        "the image builds Horovod with NCCL GPU operations"
    )


@x86_64
def test_local_tf215_compiles_beside_the_venvs_wheel(tmp_path):
    """The host venv's wheel (TF 2.21, patched) does not serve the 2023 stack; the patches differ first."""
    host_wheel(tmp_path, image_record(load_site("local")))
    tf215 = load_site("local-tf215")
    assert horovod_wheel_reason(tf215, tmp_path).startswith(
        f"{WHEEL}: patches: the wheel was built with horovod-0.28.1"
    )
    assert horovod_wheel_reason(tf215, tmp_path).endswith(", the image needs none")
