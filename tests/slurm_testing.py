"""A real one-node Slurm 22.05 cluster on localhost for the launcher, scaling and Apptainer tests, from the catalog.

``tests/conftest.py`` imports the ``slurm_cluster`` fixture from here, so one pytest run starts one cluster.

``slurm_cluster`` starts munged, slurmctld and slurmd in the foreground as child processes (config, state, logs
and munge key under a temp dir, free ports), waits until the node is idle, and at the end cancels every job,
waits for them to leave, and stops the daemons by PID.

- The ``local`` node is this machine: CPUs from the catalog's local node type, the partition named as in the
  catalog, so ``hpcai launch --site local --submit`` really runs there.
- Every Slurm site with GPU nodes (HAL, Bridges-AI) also gets its partitions and node types, as powered-down
  cloud nodes with the catalog's threads, sockets and GPU generic resources (``Gres=gpu:v100:4``). Slurm never
  starts them; ``sbatch --test-only`` checks a generated script against them: partition, node counts, time limit,
  tasks and CPUs per node, GRES type and count. That is Slurm's own check of the directives against the shape the
  catalog describes, not a check against the real sites' configuration.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hpcai_tf.catalog import Site, load_catalog
from hpcai_tf.launch.emulated_cluster import free_port
from hpcai_tf.launch.job_script import parse_time
from hpcai_tf.launch.job_state import scontrol_fields
from hpcai_tf.launch.schedulers import SLURM

TOOLS = ("mungekey", "munged", "slurmctld", "slurmd", "sbatch", "scontrol", "squeue", "scancel", "sinfo")
LOCAL_NODE = "localhost"


def _node_name(site: Site, node_type: str) -> str:
    return f"{site.id}-{node_type}"


def gpu_site_lines(site: Site) -> tuple[list[str], list[str], list[str]]:
    """slurm.conf node and partition lines and gres.conf lines for one Slurm site, as cloud nodes."""
    nodes, partitions, gres = [], [], []
    for node in site.node_types:
        name = _node_name(site, node.name)
        hosts = f"{name}-[1-{node.count}]" if node.count > 1 else f"{name}-1"
        gpu_type = node.gres.split(":", 1)[1] if node.gres and ":" in node.gres else None
        gres_field = f" Gres=gpu:{gpu_type}:{node.gpus}" if gpu_type else ""
        nodes.append(
            f"NodeName={hosts} CPUs={node.hardware_threads} Sockets=2 CoresPerSocket={node.cores // 2} "
            f"ThreadsPerCore={node.hardware_threads // node.cores}{gres_field} State=CLOUD"
        )
        if gpu_type:
            gres.append(f"NodeName={hosts} Name=gpu Type={gpu_type} Count={node.gpus}")
    by_name: dict[str, list] = {}
    for part in site.partitions:
        by_name.setdefault(part.name, []).append(part)
    for name, parts in by_name.items():
        hosts = ",".join(
            f"{_node_name(site, p.node_type)}-[1-{site.node_type(p.node_type).count}]"
            if site.node_type(p.node_type).count > 1
            else f"{_node_name(site, p.node_type)}-1"
            for p in parts
        )
        max_minutes = max(parse_time(p.max_time, "max_time") for p in parts)
        partitions.append(
            f"PartitionName={name} Nodes={hosts} MinNodes={min(p.min_nodes for p in parts)} "
            f"MaxNodes={max(p.max_nodes for p in parts)} MaxTime={max_minutes} State=UP"
        )
    return nodes, partitions, gres


@dataclass
class SlurmCluster:
    """A running test cluster: its config file, the local partition, the environment that reaches it."""

    root: Path
    conf: Path
    local_partition: str
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """The caller's environment plus SLURM_CONF; as root, Open MPI's consent to run as root."""
        env = dict(os.environ, SLURM_CONF=str(self.conf))
        if os.geteuid() == 0:
            env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
        return env

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(list(argv), env=self.env, capture_output=True, text=True, check=check, timeout=60)

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job -o`` as a dict (JobState, Restarts, ExitCode ...)."""
        return scontrol_fields(self.run("scontrol", "show", "job", "-o", job_id).stdout)

    def wait(self, job_id: str, until, timeout: float, what: str) -> dict[str, str]:
        """Poll the job once a second until ``until(fields)`` holds; fail with its last state after ``timeout``."""
        deadline = time.monotonic() + timeout
        fields: dict[str, str] = {}
        while time.monotonic() < deadline:
            fields = self.job(job_id)
            if until(fields):
                return fields
            time.sleep(1)
        raise AssertionError(f"job {job_id}: not {what} after {timeout:.0f} s; last state {fields}")

    def wait_end(self, job_id: str, timeout: float) -> dict[str, str]:
        return self.wait(job_id, lambda f: f.get("JobState") in SLURM.end_states, timeout, "ended")

    def log(self, name: str) -> str:
        path = self.root / "log" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _write_config(root: Path, local: Site, gpu_sites: list[Site]) -> tuple[Path, str]:
    node = local.node_type()
    local_parts = [p for p in local.partitions if p.node_type == node.name]
    part = local_parts[0]
    nodes, partitions, gres = [], [], []
    for site in gpu_sites:
        site_nodes, site_parts, site_gres = gpu_site_lines(site)
        nodes += site_nodes
        partitions += site_parts
        gres += site_gres
    names = [line.split()[0] for line in partitions] + [f"PartitionName={part.name}"]
    if len(names) != len(set(names)):
        raise RuntimeError(f"partition names collide across the catalog's Slurm sites: {sorted(names)}")
    munge_socket = root / "munge" / "munge.sock"
    lines = [
        "ClusterName=hpcaitest",
        f"SlurmctldHost={LOCAL_NODE}",
        f"SlurmctldPort={free_port()}",
        f"SlurmdPort={free_port()}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        # cred_expire also sets how long a requeued job waits before it may start again (default 120 s).
        f"AuthInfo=socket={munge_socket},cred_expire=10",
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
        f"PlugStackConfig={root / 'plugstack.conf'}",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "SchedulerType=sched/builtin",
        "SchedulerParameters=sched_interval=2",
        "MpiDefault=none",
        "ReturnToService=2",
        "EnforcePartLimits=ALL",
        "JobCompType=jobcomp/none",
        "AccountingStorageType=accounting_storage/none",
        "GresTypes=gpu",
        # The catalog's GPU nodes are cloud nodes that stay powered down: only `sbatch --test-only` sees them.
        "SuspendProgram=/bin/true",
        "ResumeProgram=/bin/true",
        "SuspendTime=600",
        "ResumeTimeout=600",
        f"SuspendExcNodes={LOCAL_NODE}",
        *nodes,
        # After the cloud nodes: listed first, slurmctld 22.05 stops with "Duplicated NodeHostName <cloud node>".
        f"NodeName={LOCAL_NODE} CPUs={node.hardware_threads} State=UNKNOWN",
        f"PartitionName={part.name} Nodes={LOCAL_NODE} Default=YES MaxTime={parse_time(part.max_time, 'max_time')} State=UP",
        *partitions,
    ]
    conf = root / "slurm.conf"
    conf.write_text("\n".join(lines) + "\n")
    (root / "gres.conf").write_text("\n".join(gres) + "\n")
    (root / "plugstack.conf").write_text("")
    return conf, part.name


def _start(cluster: SlurmCluster, name: str, argv: list[str]) -> None:
    with open(cluster.root / "log" / f"{name}.out", "w") as log:  # the child keeps its own descriptor
        cluster.processes[name] = subprocess.Popen(argv, env=cluster.env, stdout=log, stderr=subprocess.STDOUT)


def _stop(cluster: SlurmCluster) -> None:
    """Cancel every job, wait for them to leave, then stop the daemons by PID (newest first)."""
    if "slurmd" in cluster.processes and cluster.processes["slurmd"].poll() is None:
        cluster.run("scancel", "--full", "--user=root", check=False)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = cluster.run("squeue", "-h", "-o", "%i %T", check=False).stdout.strip()
            if not out:
                break
            time.sleep(1)
    for name in reversed(list(cluster.processes)):
        process = cluster.processes[name]
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A one-node Slurm cluster on localhost (plus the catalog's GPU partitions for ``--test-only``)."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"Slurm/munge tools missing ({', '.join(missing)}): run scripts/install-system.sh")
    catalog = {site.id: site for site in load_catalog()}
    local = catalog["local"]
    gpu_sites = [s for s in catalog.values() if s.scheduler.kind == "slurm" and any(n.gpus for n in s.node_types)]
    root = tmp_path_factory.mktemp("slurm")
    for sub in ("munge", "state", "spool", "log"):
        (root / sub).mkdir()
    (root / "munge").chmod(0o700)
    conf, partition = _write_config(root, local, gpu_sites)
    cluster = SlurmCluster(root, conf, partition)
    key = root / "munge" / "munge.key"
    subprocess.run(["mungekey", "--create", "--keyfile", str(key)], check=True, capture_output=True)
    key.chmod(0o600)
    try:
        _start(
            cluster,
            "munged",
            [
                "munged", "--foreground", "--force",
                f"--socket={root / 'munge' / 'munge.sock'}", f"--key-file={key}",
                f"--pid-file={root / 'munge' / 'munged.pid'}", f"--log-file={root / 'log' / 'munged.log'}",
                f"--seed-file={root / 'munge' / 'munged.seed'}",
            ],
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not (root / "munge" / "munge.sock").exists():
            if time.monotonic() > deadline:
                raise RuntimeError("munged did not create its socket")
            time.sleep(0.1)
        _start(cluster, "slurmctld", ["slurmctld", "-D", "-f", str(conf)])
        _start(cluster, "slurmd", ["slurmd", "-D", "-N", LOCAL_NODE, "-f", str(conf)])
        deadline = time.monotonic() + 30
        state = ""
        while time.monotonic() < deadline:
            dead = [name for name, process in cluster.processes.items() if process.poll() is not None]
            if dead:
                raise RuntimeError(f"{', '.join(dead)} stopped:\n{cluster.log('slurmctld')[-2000:]}")
            state = cluster.run("sinfo", "-h", "-n", LOCAL_NODE, "-o", "%T", check=False).stdout.strip()
            if state == "idle":
                break
            time.sleep(0.3)
        else:
            raise RuntimeError(
                f"node {LOCAL_NODE} is {state!r}, not idle\n{cluster.log('slurmctld')[-2000:]}"
                f"\n{cluster.log('slurmd')[-2000:]}"
            )
        yield cluster
    finally:
        _stop(cluster)
