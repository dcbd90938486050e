"""The Apptainer harness itself: what it recorded, what it says when its cache is gone, what a container sees.

- ``status`` names the Apptainer version that ``prepare`` installed, and the wrappers on PATH run that version.
- Without a cache, ``status``, ``env`` and the wrapper each say so in one line and exit non-zero.
- ``apptainer exec`` through the wrapper sees the host's /tmp, the working directory and the kit, and shares the
  host's PID and network namespaces (what the host's mpirun needs of its ranks).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = [pytest.mark.singularity]

REPO = Path(__file__).resolve().parents[2]
HARNESS = REPO / "scripts" / "apptainer-harness.sh"


def test_status_names_the_recorded_version(harness, sh):
    """`status` prints the VERSION record; `apptainer` and `singularity` on PATH run that Apptainer."""
    status = sh([HARNESS, "status"])
    assert status.returncode == 0, status.stderr
    assert harness.version in status.stdout
    assert harness.version.startswith("apptainer version ")
    for name in ("apptainer", "singularity"):
        shown = sh([name, "--version"], env=harness.env())
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.strip() == harness.version.split(" (")[0]


@pytest.mark.parametrize("command", [["status"], ["env"], ["apptainer", "--version"]])
def test_missing_cache_is_one_line(sh, tmp_path, command):
    """With no cache, each command exits non-zero with one line that names the cache and `prepare`."""
    cache = tmp_path / "apptainer"
    result = sh([HARNESS, *command], env={**os.environ, "HPCAI_APPTAINER_CACHE": str(cache)})
    assert result.returncode != 0
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert f"no Apptainer cache at {cache}" in lines[0]
    assert f"{HARNESS} prepare" in lines[0]


def test_gone_cache_is_one_line(sh, tmp_path):
    """A cache whose root was removed (VERSION left behind) is reported as gone, in one line."""
    cache = tmp_path / "apptainer"
    (cache / "bin").mkdir(parents=True)
    (cache / "VERSION").write_text("apptainer version 1.4.5 (Debian package 1.4.5-2)\n")
    result = sh(
        [HARNESS, "apptainer", "exec", "x.sif", "true"], env={**os.environ, "HPCAI_APPTAINER_CACHE": str(cache)}
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "is gone or incomplete" in lines[0], lines


@pytest.mark.slow
def test_exec_sees_host_paths_and_namespaces(harness, local_sif, sh, tmp_path):
    """In the container: a file under the host's /tmp, the working directory, the kit; host PID and net namespaces."""
    marker = tmp_path / "from-the-host"
    marker.write_text("hello\n")
    script = (
        f"cat {marker}; pwd; test -f {REPO}/scripts/apptainer-harness.sh && echo kit; "
        "readlink /proc/self/ns/pid /proc/self/ns/net"
    )
    result = sh(["apptainer", "exec", local_sif.path, "sh", "-c", script], env=harness.env(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "hello",
        str(tmp_path),
        "kit",
        os.readlink("/proc/self/ns/pid"),
        os.readlink("/proc/self/ns/net"),
    ]
