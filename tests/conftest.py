"""Shared test helpers: run the ``hpcai`` CLI as a user would, in a subprocess; the one-node Slurm cluster."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from emulated_testing import emulated_hal  # noqa: F401  (a 2-node emulated cluster, tests/emulated_testing.py)
from slurm_testing import slurm_cluster  # noqa: F401  (the session's one Slurm cluster, for every directory)

REPO = Path(__file__).resolve().parent.parent
HPCAI = [sys.executable, "-m", "hpcai_tf"]


def run_hpcai(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``hpcai ARGS`` in a subprocess; returns the completed process (text output)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [*HPCAI, *args], capture_output=True, text=True, env=full_env, cwd=cwd or REPO, timeout=timeout, check=False
    )


@pytest.fixture
def hpcai():
    """The ``run_hpcai`` helper, as a fixture."""
    return run_hpcai


def tree(root: Path) -> dict[str, tuple]:
    """Every entry below ``root`` (symlinks not followed): its kind, size and content hash, to compare before/after."""
    import hashlib
    import stat

    listing: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            info = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(info.st_mode) else ""
            target = os.readlink(path) if stat.S_ISLNK(info.st_mode) else ""
            listing[str(path.relative_to(root))] = (stat.S_IFMT(info.st_mode), info.st_size, digest, target)
    return listing


def assert_refused(result: subprocess.CompletedProcess[str], *names: str) -> str:
    """Exit 2, one ``hpcai: error:`` line on stderr that holds every one of ``names``, no traceback; the line."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert lines[0].startswith("hpcai") and ": error: " in lines[0], lines[0]
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]
