"""The emulated multi-node Slurm cluster (:mod:`hpcai_tf.launch.emulated_cluster`) as a pytest fixture.

``emulated_hal`` is 2 nodes shaped after HAL (its partitions ``gpux1`` and ``gpux2``, 160 CPUs and
``gpu:v100:4`` per node), each in its own UTS and mount namespaces, under a directory in ``/var/tmp`` (the
nodes' ``/tmp`` is their own). The daemons are stopped by PID at the end, and the directory removed. Like
``slurm_cluster`` (tests/slurm_testing.py), a missing Slurm or munge fails the test rather than skipping it.
"""

from __future__ import annotations

import shutil
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
