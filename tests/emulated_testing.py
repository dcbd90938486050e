"""The emulated multi-node Slurm cluster (:mod:`hpcai_tf.launch.emulated_cluster`) as a pytest fixture.

``emulated_hal`` is 2 nodes shaped after HAL (its partitions ``gpux1`` and ``gpux2``, 160 CPUs and
``gpu:v100:4`` per node), each in its own UTS and mount namespaces, under a directory in ``/var/tmp`` (the
nodes' ``/tmp`` is their own). The daemons are stopped by PID at the end, and the directory removed. Like
``slurm_cluster`` (tests/slurm_testing.py), a missing Slurm or munge fails the test rather than skipping it.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from slurm_testing import TOOLS

from hpcai_tf.catalog import load_site
from hpcai_tf.launch.emulated_cluster import EmulatedCluster, emulated_cluster


@pytest.fixture(scope="module")
def emulated_hal() -> Iterator[EmulatedCluster]:
    """A running 2-node HAL-shaped emulated cluster."""
    missing = [tool for tool in (*TOOLS, "unshare") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"Slurm/munge tools missing ({', '.join(missing)}): run scripts/install-system.sh")
    root = Path(tempfile.mkdtemp(prefix="hpcai-test-cluster-", dir="/var/tmp"))
    try:
        with emulated_cluster(load_site("hal"), 2, root) as cluster:
            yield cluster
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_stopping_cluster(
    *args: str, cwd: Path, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``hpcai ARGS`` that runs an emulated cluster; past ``timeout`` it gets SIGTERM, on which it stops its cluster
    by PID (a SIGKILL, as ``subprocess.run`` sends, would leave the nodes' jobs behind), then the test fails."""
    process = subprocess.Popen(
        [sys.executable, "-m", "hpcai_tf", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env,
    )  # fmt: skip
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=90)
        pytest.fail(f"hpcai {args[0]} still running after {timeout:.0f} s:\n{out[-3000:]}\n{err[-3000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)
