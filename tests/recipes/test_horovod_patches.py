"""Horovod patches are catalog data: a site can pin TensorFlow 2.21 with no hand step."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from hpcai_tf.catalog import load_site
from hpcai_tf.paths import PATCHES_DIR, SITES_DIR
from hpcai_tf.recipes.render import render_recipe, render_steps

PATCHES = ["horovod-0.28.1-no-xla-ops", "horovod-0.28.1-tf-keras-backend"]


@pytest.fixture
def tf221_catalog(tmp_path: Path) -> Path:
    """A private copy of the local site, which pins TensorFlow 2.21.0 (the current stack of docs/compatibility.md)."""
    sites = tmp_path / "sites"
    sites.mkdir()
    text = (SITES_DIR / "local.toml").read_text()
    for pin in [
        'tensorflow = "2.21.0"',
        'keras = "tf-keras"',
        'numpy = "2.4.6"',
        f"horovod_patches = {PATCHES!r}".replace("'", '"'),
    ]:
        assert pin in text
    (sites / "local.toml").write_text(text)
    return sites


def test_tf221_site_renders_patched_horovod_build():
    """The Horovod step installs the staged wheel of its own build, or else downloads the sdist, applies each named
    patch and builds; tf-keras is installed."""
    site = load_site("local")
    horovod = next(s for s in render_steps(site) if s.name == "horovod-pip")
    assert horovod.title == f"Horovod 0.28.1 ({', '.join(PATCHES)})"
    assert horovod.files == [("build/wheels", "/opt/hpcai-build/wheels"), ("patches", "/opt/hpcai-build/patches")]
    wheel = "horovod-0.28.1-cp311-cp311-linux_x86_64.whl"
    assert horovod.commands == [
        ". /opt/hpcai-build/options/options.sh",
        "mkdir -p /tmp/horovod/dist",
        f'if [ -f /opt/hpcai-build/wheels/{wheel} ]; then echo "Horovod: installing the staged {wheel}"; else '
        "(pip download --no-cache-dir --no-deps --no-binary=:all: --dest /tmp/horovod horovod==0.28.1 "
        "&& tar -xzf /tmp/horovod/horovod-0.28.1.tar.gz -C /tmp/horovod "
        f"&& patch -d /tmp/horovod/horovod-0.28.1 -p1 < /opt/hpcai-build/patches/{PATCHES[0]}.patch "
        f"&& patch -d /tmp/horovod/horovod-0.28.1 -p1 < /opt/hpcai-build/patches/{PATCHES[1]}.patch "
        "&& HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_MPI=1 HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 "
        'MAKEFLAGS="-j$(nproc)" pip wheel --no-cache-dir --no-build-isolation --no-deps '
        "--wheel-dir /tmp/horovod/dist /tmp/horovod/horovod-0.28.1); fi",
        "pip install --no-cache-dir --constraint /opt/hpcai-build/constraints/local.txt "
        "--find-links /opt/hpcai-build/wheels --find-links /tmp/horovod/dist horovod==0.28.1",
        "rm -rf /tmp/horovod",
    ]
    python = next(s for s in render_steps(site) if s.name == "python-pip")
    assert python.env["TF_USE_LEGACY_KERAS"] == "1"
    assert python.commands[-1] == (
        "/opt/hpcai/venv/bin/pip install --no-cache-dir --no-deps "
        "--constraint /opt/hpcai-build/constraints/local.txt tf-keras==2.21.0"
    )
    assert "COPY patches/ /opt/hpcai-build/patches/" in render_recipe(site, "docker")


def test_tf221_without_tf_keras_is_refused(tf221_catalog: Path, hpcai):
    """TensorFlow >= 2.16 with tf.keras as Keras 3 would break Horovod's Keras API: refused in one line."""
    path = tf221_catalog / "local.toml"
    path.write_text(path.read_text().replace('keras = "tf-keras"', 'keras = "keras2"'))
    result = hpcai("render", "--site", "local", "--print", env={"HPCAI_CATALOG": str(tf221_catalog)})
    assert result.returncode == 2
    assert "stack.keras: expected 'tf-keras' for TensorFlow >= 2.16" in result.stderr


def test_unknown_patch_name_is_refused(tf221_catalog: Path, hpcai, tmp_path: Path):
    """A patch the repo does not have is a one-line error before anything is written."""
    path = tf221_catalog / "local.toml"
    path.write_text(path.read_text().replace(PATCHES[1], "horovod-0.28.1-missing"))
    result = hpcai("render", "--out", str(tmp_path / "out"), env={"HPCAI_CATALOG": str(tf221_catalog)})
    assert result.returncode == 2
    assert "stack.horovod_patches: no patch file" in result.stderr and "horovod-0.28.1-missing" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_patches_apply_to_the_real_horovod_sdist(tmp_path: Path):
    """Each patch applies cleanly to Horovod 0.28.1's sdist from PyPI (GNU patch: scripts/install-system.sh)."""
    assert shutil.which("patch"), "GNU patch is not installed: scripts/install-system.sh installs it"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary=:all:",
            "--dest",
            str(tmp_path),
            "horovod==0.28.1",
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    with tarfile.open(tmp_path / "horovod-0.28.1.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    source = tmp_path / "horovod-0.28.1"
    for name in PATCHES:
        patch = (PATCHES_DIR / f"{name}.patch").read_text()
        subprocess.run(["patch", "-d", str(source), "-p1"], input=patch, text=True, check=True, capture_output=True)
    assert "xla_mpi_ops.cc" not in (source / "horovod/tensorflow/CMakeLists.txt").read_text()
    assert "from keras import backend" not in (source / "horovod/tensorflow/keras/__init__.py").read_text()
