"""The emulated cluster: its Slurm configuration as exact text, and 2 HAL-shaped nodes running for real."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from hpcai_tf.catalog import load_site
from hpcai_tf.errors import KitError
from hpcai_tf.launch.emulated_cluster import (
    check_root,
    emulated_cluster,
    left_clusters,
    shape_for_site,
    slurm_conf_lines,
)


def nodes_partitions_gres(site_id: str, nodes: int) -> tuple[list[str], list[str]]:
    shape = shape_for_site(load_site(site_id), nodes)
    lines, gres = slurm_conf_lines(shape, Path("/c"))
    ports = {node.port: "P" for node in shape.nodes}
    own = [line for line in lines if line.startswith(("NodeName=", "PartitionName="))]
    return [
        " ".join(w if not w.startswith("Port=") else f"Port={ports[int(w[5:])]}" for w in line.split()) for line in own
    ], gres


def test_hal_on_two_nodes_has_its_partitions_cpus_and_gpus():
    """HAL: gpux1 and gpux2 (gpux3.. need more nodes), 160 CPUs, gpu:v100:4 backed by stand-in device files."""
    lines, gres = nodes_partitions_gres("hal", 2)
    assert lines == [
        "NodeName=hal-ac922-1 NodeHostname=hal-ac922-1 NodeAddr=127.0.0.1 Port=P CPUs=160 Sockets=2 CoresPerSocket=20 ThreadsPerCore=4 Gres=gpu:v100:4 State=UNKNOWN",
        "NodeName=hal-ac922-2 NodeHostname=hal-ac922-2 NodeAddr=127.0.0.1 Port=P CPUs=160 Sockets=2 CoresPerSocket=20 ThreadsPerCore=4 Gres=gpu:v100:4 State=UNKNOWN",
        "PartitionName=gpux1 Nodes=hal-ac922-1,hal-ac922-2 MinNodes=1 MaxNodes=1 MaxTime=1440 State=UP Default=YES",
        "PartitionName=gpux2 Nodes=hal-ac922-1,hal-ac922-2 MinNodes=2 MaxNodes=2 MaxTime=1440 State=UP",
    ]  # fmt: skip
    assert gres == [
        "NodeName=hal-ac922-1 Name=gpu Type=v100 Count=4 File=/c/dev/hal-ac922-1/gpu[0-3]",
        "NodeName=hal-ac922-2 Name=gpu Type=v100 Count=4 File=/c/dev/hal-ac922-2/gpu[0-3]",
    ]


def test_bridges_ai_emulates_its_default_node_type_in_gpu_ai():
    lines, gres = nodes_partitions_gres("bridges-ai", 2)
    assert lines[-1] == "PartitionName=GPU-AI Nodes=bridges-ai-apollo6500-1,bridges-ai-apollo6500-2 MinNodes=1 MaxNodes=2 MaxTime=2880 State=UP Default=YES"  # fmt: skip
    assert "CPUs=80 Sockets=2 CoresPerSocket=20 ThreadsPerCore=2 Gres=gpu:volta16:8" in lines[0]
    assert gres[0].endswith("Count=8 File=/c/dev/bridges-ai-apollo6500-1/gpu[0-7]")


@pytest.mark.parametrize(
    ("site", "nodes", "words"),
    [
        ("summit", 2, ("--site", "summit", "lsf", "Slurm only")),
        ("local", 2, ("--nodes", "1..1")),
        ("hal", 0, ("--nodes",)),
    ],
)
def test_what_cannot_be_emulated_is_refused_in_one_line(site, nodes, words):
    with pytest.raises(KitError) as refused:
        shape_for_site(load_site(site), nodes)
    assert all(word in str(refused.value) for word in words), refused.value


@pytest.mark.parametrize("root", ["/tmp/c", "/dev/shm/c", "/tmp"])
def test_a_root_under_a_node_private_directory_is_refused(root):
    with pytest.raises(KitError, match="each emulated node replaces with its own"):
        check_root(Path(root))


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.timeout(180)
def test_two_nodes_have_own_hostnames_tmp_gpus_and_pmix_across_them(emulated_hal):
    """Each task on its own node: hostname, a private /tmp, a GPU granted; an allreduce over srun --mpi=pmix."""
    cluster = emulated_hal
    probe = 'echo "$(hostname) $(ls -A /tmp | tr "\\n" " ")${CUDA_VISIBLE_DEVICES:-none}"'
    done = cluster.run("srun", "-p", "gpux2", "-N2", "--ntasks-per-node=1", "--gres=gpu:v100:1", "sh", "-c", probe)
    # Each node's /tmp holds its own spool directory only; the GPU granted is a stand-in device.
    assert sorted(done.stdout.splitlines()) == ["hal-ac922-1 slurmd-hal-ac922-1 0", "hal-ac922-2 slurmd-hal-ac922-2 0"]
    refused = cluster.run("srun", "-p", "gpux2", "-N2", "--gres=gpu:v100:5", "true", check=False)
    assert refused.returncode != 0 and "Requested node configuration is not available" in refused.stderr
    code = "from mpi4py import MPI; import socket; c = MPI.COMM_WORLD; print(c.rank, socket.gethostname(), c.allreduce(c.rank + 1))"
    done = cluster.run("srun", "-p", "gpux2", "-N2", "--ntasks-per-node=1", "--mpi=pmix", sys.executable, "-c", code)
    assert sorted(done.stdout.splitlines()) == ["0 hal-ac922-1 3", "1 hal-ac922-2 3"], done


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.timeout(120)
def test_stop_ends_every_daemon_by_pid():
    """start, then stop: munged, slurmctld and both slurmd are gone, also after an exception inside the block."""
    root = Path(tempfile.mkdtemp(prefix="hpcai-test-cluster-", dir="/var/tmp"))
    try:
        with pytest.raises(RuntimeError, match="inside"):
            with emulated_cluster(load_site("bridges-ai"), 2, root) as cluster:
                pids = cluster.pids()
                assert len(pids) == 4 and all(Path(f"/proc/{pid}").exists() for pid in pids.values())
                raise RuntimeError("inside")
        for pid in pids.values():
            assert not Path(f"/proc/{pid}").exists() or _zombie(pid), pid
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.timeout(120)
def test_hpcai_cluster_runs_until_interrupted_and_jobs_reach_it_through_its_export_line():
    """`hpcai cluster --site bridges-ai`: its export line reaches it (srun over both nodes), SIGTERM stops every
    daemon by PID and exits 0; the directory stays, a leftover for `hpcai clean` once nothing runs there."""
    process = subprocess.Popen(
        [sys.executable, "-m", "hpcai_tf", "cluster", "--site", "bridges-ai"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    root = None
    try:
        first, export, submit = (process.stdout.readline() for _ in range(3))
        root = Path(re.search(r" in (\S+); daemon pids ", first)[1])
        pids = [int(p) for p in re.search(r"daemon pids (.*)", first)[1].replace("=", " ").split()[1::2]]
        assert export.startswith(f"export SLURM_CONF={root}/slurm.conf ") and "OMPI_MCA_btl_tcp_if_include=lo" in export
        assert submit.startswith(f"hpcai cluster: submit from {root}/shared ")
        env = {**os.environ, **dict(word.split("=", 1) for word in shlex.split(export)[1:])}
        done = subprocess.run(
            ["srun", "-N2", "--ntasks-per-node=1", "hostname"], env=env, capture_output=True, text=True, timeout=60
        )
        assert sorted(done.stdout.split()) == ["bridges-ai-apollo6500-1", "bridges-ai-apollo6500-2"], done.stderr
        assert root not in left_clusters()
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
        assert (process.returncode, err) == (0, ""), err
        assert out == f"hpcai cluster: stopped; its directory stays: {root} (`hpcai clean` removes it)\n"
        assert len(pids) == 4 and not [pid for pid in pids if Path(f"/proc/{pid}").exists() and not _zombie(pid)]
        assert root in left_clusters()
    finally:
        if process.poll() is None:
            process.kill()
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.timeout(60)
def test_the_daemons_end_when_their_owner_is_killed():
    """SIGKILL leaves `hpcai cluster` no time to stop its cluster: the kernel's SIGTERM (parent death) stops munged,
    slurmctld and both slurmd all the same."""
    process = subprocess.Popen(
        [sys.executable, "-m", "hpcai_tf", "cluster", "--site", "hal"], stdout=subprocess.PIPE, text=True
    )
    root = None
    try:
        first = process.stdout.readline()
        root = Path(re.search(r" in (\S+); daemon pids ", first)[1])
        pids = [int(p) for p in re.search(r"daemon pids (.*)", first)[1].replace("=", " ").split()[1::2]]
        process.kill()
        process.wait(timeout=10)
        deadline = time.monotonic() + 20
        while [pid for pid in pids if Path(f"/proc/{pid}").exists() and not _zombie(pid)]:
            assert time.monotonic() < deadline, [pid for pid in pids if Path(f"/proc/{pid}").exists()]
            time.sleep(0.2)
        assert len(pids) == 4
    finally:
        if process.poll() is None:
            process.kill()
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
