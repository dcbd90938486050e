"""The local site's SIF, built by the kit from its Docker image (the OLCF route), checked with Apptainer.

- The SIF carries the site's labels and was converted from the Docker image (``docker-daemon``), not rebuilt.
- It has a ``%test`` section, and ``apptainer test`` runs it and passes (the build runs it too).
- ``hpcai verify --site local --runtime singularity`` passes every check inside the SIF, 2-rank ones included.
"""

from __future__ import annotations

import re
import sys

import pytest

pytestmark = [pytest.mark.singularity, pytest.mark.slow]


def test_sif_is_converted_from_the_docker_image(harness, local_sif):
    """Labels: the site's pins and kit source, bootstrapped from the Docker daemon's image of this recipe."""
    labels = harness.labels(local_sif.path)
    assert labels["org.hpcai.site"] == "local"
    assert labels["org.hpcai.pin.tensorflow"] == "tensorflow-cpu-2.21.0"
    assert labels["org.label-schema.usage.singularity.deffile.bootstrap"] in ("docker-daemon", "docker-archive")
    if local_sif.docker_tag:
        assert labels["org.label-schema.usage.singularity.deffile.from"] == local_sif.docker_tag


def test_sif_is_compressed_as_the_build_asked(local_sif):
    """The fixture builds with `--sif-compression zstd`: the SIF's squashfs superblock names zstd, not gzip."""
    if local_sif.docker_tag:  # built or reused by the fixture, not given as HPCAI_TEST_SIF
        assert local_sif.compression == "zstd"


def test_sif_passes_its_own_test_section(harness, local_sif, sh):
    """`apptainer inspect --test` shows the recipe's %test; `apptainer test` runs it and exits 0."""
    section = sh(["apptainer", "inspect", "--test", local_sif.path], env=harness.env())
    assert section.returncode == 0, section.stderr
    assert "horovodrun --check-build" in section.stdout, f"the SIF has no %test section: {section.stdout!r}"
    result = sh(["apptainer", "test", local_sif.path], env=harness.env(), timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "tensorflow 2.21.0 horovod 0.28.1" in result.stdout
    assert "[X] TensorFlow" in result.stdout and "[X] MPI" in result.stdout


def test_verify_passes_in_the_sif(harness, local_sif, sh):
    """`hpcai verify --site local --runtime singularity`: all checks pass, the 2-rank allreduce and training too."""
    argv = [
        sys.executable,
        "-m",
        "hpcai_tf",
        "verify",
        "--site",
        "local",
        "--runtime",
        "singularity",
        "--image",
        local_sif.path,
    ]
    result = sh(argv, env=harness.env(), timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r": all \d+ checks passed$", result.stdout, re.M), result.stdout
    assert "PASS  allreduce    sum 3 (expected 3) on ranks [0, 1]" in result.stdout
