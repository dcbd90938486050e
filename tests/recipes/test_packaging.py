"""The kit as images install it: a wheel built from the checkout carries the workloads' configs."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_wheel_carries_the_training_configs(tmp_path: Path):
    """`pip install /opt/hpcai/src` in an image gets configs/*.toml (package data), not just the modules."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=280,
    )
    wheel = next(tmp_path.glob("hpcai-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for workload in ("gw", "des", "resnet50"):
        assert f"hpcai_tf/train/configs/{workload}.toml" in names
    assert "hpcai_tf/cli.py" in names
