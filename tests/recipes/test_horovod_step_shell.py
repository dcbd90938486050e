"""The patched Horovod step's shell, run with stand-ins for pip, tar and patch: as Docker's RUN chains it and as
Singularity's %post runs it (``set -eu``, one command a line)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from hpcai_tf.catalog import load_site
from hpcai_tf.recipes.render import render_steps

WHEEL = "horovod-0.28.1-cp311-cp311-linux_x86_64.whl"


def step_script(tmp_path: Path, fmt: str) -> Path:
    """The step's commands (after options.sh), with /opt/hpcai-build and /tmp/horovod moved under ``tmp_path``."""
    step = next(s for s in render_steps(load_site("local")) if s.name == "horovod-pip")
    commands = [
        c.replace("/opt/hpcai-build", str(tmp_path / "build")).replace("/tmp/horovod", str(tmp_path / "horovod"))
        for c in step.commands[1:]
    ]
    body = " && ".join(commands) if fmt == "docker" else "set -eu\n" + "\n".join(commands)
    script = tmp_path / f"{fmt}.sh"
    script.write_text(body + "\n")
    return script


def run(tmp_path: Path, fmt: str, failing: str = "") -> tuple[int, list[str]]:
    """Run the step; each stand-in logs its name and first argument, ``failing`` exits 3."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("pip", "tar", "patch"):
        status = "exit 3" if tool == failing else "exit 0"
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $1" >> {tmp_path}/calls\n{status}\n')
        (bin_dir / tool).chmod(0o755)
    (tmp_path / "build" / "patches").mkdir(parents=True, exist_ok=True)
    for name in load_site("local").stack.horovod_patches:
        (tmp_path / "build" / "patches" / f"{name}.patch").write_text("")
    (tmp_path / "calls").unlink(missing_ok=True)
    shell = ["bash", "-o", "pipefail", "-c"] if fmt == "docker" else ["bash", "-c"]
    done = subprocess.run(
        [*shell, step_script(tmp_path, fmt).read_text()],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    calls = (tmp_path / "calls").read_text().splitlines() if (tmp_path / "calls").exists() else []
    return done.returncode, calls


@pytest.mark.parametrize("fmt", ["docker", "singularity"])
def test_without_a_staged_wheel_the_patched_sdist_is_built(tmp_path, fmt):
    """The recipe builds on its own: download, unpack, patch twice, build, install."""
    assert run(tmp_path, fmt) == (0, ["pip download", "tar -xzf", "patch -d", "patch -d", "pip wheel", "pip install"])


@pytest.mark.parametrize("fmt", ["docker", "singularity"])
def test_a_staged_wheel_is_installed_without_compiling(tmp_path, fmt):
    """The host's wheel, staged by `hpcai build` under the name the step checks: only pip install runs."""
    (tmp_path / "build" / "wheels").mkdir(parents=True)
    (tmp_path / "build" / "wheels" / WHEEL).write_bytes(b"PK")
    assert run(tmp_path, fmt) == (0, ["pip install"])


@pytest.mark.parametrize("fmt", ["docker", "singularity"])
def test_a_failing_build_stops_the_step(tmp_path, fmt):
    """A failure inside the build (here tar) fails the step in both formats; nothing is installed."""
    assert run(tmp_path, fmt, failing="tar") == (3, ["pip download", "tar -xzf"])
