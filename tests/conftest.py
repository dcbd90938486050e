"""Shared test helpers: run the ``hpcai`` CLI as a user would, in a subprocess; the one-node Slurm cluster."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
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
