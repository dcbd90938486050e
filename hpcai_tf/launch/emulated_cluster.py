"""An emulated Slurm cluster on this machine, shaped after a catalog site, for rehearsing its job scripts.

N nodes (default 2), each one ``slurmd`` in its own UTS and mount namespaces (``unshare --uts --mount``): its own
hostname, its own ``/tmp`` and ``/dev/shm`` (tmpfs), as a real node has; one ``slurmctld`` and one ``munged``.
Every node listens on ``NodeAddr=127.0.0.1`` with its own ``Port=``; spool (in the node's own ``/tmp``), pid and
log files carry ``%n``. A
directory ``shared/`` under the cluster's root stands for the site's shared filesystem: the nodes see the
host's filesystem, so it is shared as a parallel filesystem would be. The root must not lie under ``/tmp`` or
``/dev/shm``, which each node replaces with its own.

The shape is the site's: its partition names (those that ``N`` nodes can satisfy), one node type's sockets,
cores and hardware threads (``SlurmdParameters=config_overrides`` lets ``slurmd`` declare more CPUs than this
machine has: the ranks share its cores), and its GPUs as generic resources (``Gres=gpu:<type>:<n>``) backed by
stand-in device files (:func:`stand_in_devices`: Slurm 22.05 refuses a GPU without ``File=``), so the site's
``--gres`` directives are honoured and no GPU is used.

The daemons are child processes recorded by PID; :meth:`EmulatedCluster.stop` cancels every job, then stops
them by PID, and also ends the processes left in a node's namespaces (the job steps that node started). Use it
as a context manager; SIGTERM and SIGINT become :class:`KeyboardInterrupt` while it runs, so ``finally`` runs.
The directory records its owner's PID (``owner.pid``) beside the daemons'; :func:`left_clusters` lists the
``/var/tmp/hpcai-cluster-*`` directories that no live process records (``hpcai clean`` removes them).
The namespaces follow the measurements in the repository's issue 16; ``unshare(1)`` and ``slurm.conf(5)``:
https://man7.org/linux/man-pages/man1/unshare.1.html, https://slurm.schedmd.com/slurm.conf.html
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from hpcai_tf.catalog import NodeType, Site
from hpcai_tf.errors import KitError
from hpcai_tf.launch.job_script import parse_time
from hpcai_tf.launch.schedulers import SLURM
from hpcai_tf.train.image_contract import WORKER_ADDRESS_VARIABLE

TOOLS = ("unshare", "mount", "mungekey", "munged", "slurmctld", "slurmd", "sbatch", "scontrol", "squeue", "scancel")
DEFAULT_NODES = 2
CONTROLLER = "localhost"
PRIVATE_DIRS = ("/tmp", "/dev/shm")
"""Directories each emulated node mounts a tmpfs of its own over."""
LOOPBACK_ENV = {
    "OMPI_MCA_btl_tcp_if_include": "lo",
    "OMPI_MCA_oob_tcp_if_include": "lo",
    WORKER_ADDRESS_VARIABLE: "127.0.0.1",
}
"""Open MPI between the nodes on loopback only (it leaves loopback out by default); ``--backend mwms`` workers
reached at 127.0.0.1 (the nodes' names do not resolve; each worker has its own port)."""
SHARED_NODE_ENV = {"OMPI_MCA_mpi_yield_when_idle": "1"}
"""Ranks on shared cores yield when idle."""

NODE_SPOOL = "/tmp/slurmd-%n"
"""Each node's spool directory, in its private ``/tmp`` (a real node's local disk)."""
DEFAULT_PARENT = "/var/tmp"
DEFAULT_PREFIX = "hpcai-cluster-"
"""A cluster directory without ``--cluster-dir``: ``/var/tmp/hpcai-cluster-*``."""
OWNER_FILE = "owner.pid"
"""The PID of the process that runs the cluster, in its directory (with the daemons' PID files under ``run/``)."""
SOCKET_PATH_MAX = 107
"""Bytes in a Unix socket path (``sun_path`` holds 108 with its terminating NUL)."""

_NODE_SCRIPT = (
    'hostname "$1" && mount -t tmpfs -o mode=1777 tmpfs /tmp && mount -t tmpfs -o mode=1777 tmpfs /dev/shm '
    '&& exec slurmd -D -N "$1" -f "$2"'
)


@dataclass(frozen=True)
class NodeShape:
    """One emulated node: its name (also its hostname), port and the hardware Slurm is told it has."""

    name: str
    port: int
    sockets: int
    cores_per_socket: int
    threads_per_core: int
    gres: str | None
    """``gpu:<type>:<count>``, or None on a CPU node."""

    @property
    def cpus(self) -> int:
        return self.sockets * self.cores_per_socket * self.threads_per_core


@dataclass(frozen=True)
class PartitionShape:
    """One partition of the site that the emulated nodes can satisfy."""

    name: str
    min_nodes: int
    max_nodes: int
    max_minutes: int


@dataclass(frozen=True)
class ClusterShape:
    """The site's shape on ``len(nodes)`` emulated nodes of one node type."""

    site_id: str
    node_type: str
    nodes: tuple[NodeShape, ...]
    partitions: tuple[PartitionShape, ...]


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _gres(node: NodeType) -> str | None:
    if not node.gpus:
        return None
    kind = node.gres.split(":", 1)[1] if node.gres and ":" in node.gres else None
    return f"gpu:{kind}:{node.gpus}" if kind else f"gpu:{node.gpus}"


def require_slurm(site: Site, field: str = "--site") -> None:
    """Refuse, in one line starting with ``field``, a site whose scheduler is not Slurm."""
    if site.scheduler.kind != "slurm":
        raise KitError(
            f"{field}: site {site.id} runs {site.scheduler.kind} (launcher {site.scheduler.launcher}); "
            "the emulated cluster is Slurm only"
        )


def shape_for_site(site: Site, nodes: int = DEFAULT_NODES, node_type: str | None = None) -> ClusterShape:
    """``nodes`` nodes of ``site``'s node type (default: the site's) and the partitions they can satisfy."""
    require_slurm(site)
    node = site.node_type(node_type)
    if not 1 <= nodes <= node.count:
        raise KitError(
            f"--nodes: site {site.id} has {node.count} node(s) of type {node.name}; expected 1..{node.count}"
        )
    parts = tuple(
        PartitionShape(p.name, p.min_nodes, min(p.max_nodes, nodes), parse_time(p.max_time, "max_time"))
        for p in site.partitions
        if p.node_type == node.name and p.min_nodes <= nodes
    )
    return ClusterShape(site.id, node.name, _node_shapes(site, node, nodes), parts)


LINK_PROBE_PARTITION = "link-probe"


def link_probe_shape(site: Site, nodes: int = 2) -> ClusterShape:
    """``nodes`` nodes of ``site``'s default node type in one partition, :data:`LINK_PROBE_PARTITION`, whatever
    the site's node count and partitions: where ``hpcai calibrate --across-nodes`` times Horovod's collectives
    between nodes. Between emulated nodes of this machine that is Open MPI's TCP transport over loopback (the
    ``local`` site's link across nodes in the catalog, although the site has one node)."""
    require_slurm(site)
    node = site.node_type()
    partition = PartitionShape(LINK_PROBE_PARTITION, 1, nodes, 60)
    return ClusterShape(site.id, node.name, _node_shapes(site, node, nodes), (partition,))


def _node_shapes(site: Site, node: NodeType, nodes: int) -> tuple[NodeShape, ...]:
    threads = max(1, node.hardware_threads // node.cores)
    sockets = 2 if node.cores % 2 == 0 else 1
    return tuple(
        NodeShape(f"{site.id}-{node.name}-{index}", free_port(), sockets, node.cores // sockets, threads, _gres(node))
        for index in range(1, nodes + 1)
    )


def slurm_conf_lines(shape: ClusterShape, root: Path, first_job_id: int = 1) -> tuple[list[str], list[str]]:
    """The ``slurm.conf`` and ``gres.conf`` lines of ``shape`` with its files under ``root``; job ids from
    ``first_job_id``."""
    munge_socket = root / "munge" / "munge.sock"
    lines = [
        f"ClusterName=rehearse-{shape.site_id}"[:40],
        f"SlurmctldHost={CONTROLLER}",
        f"SlurmctldPort={free_port()}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={munge_socket},cred_expire=10",
        f"StateSaveLocation={root / 'state'}",
        # In the node's own /tmp: its job steps' sockets there stay under the 108-byte limit of a socket path.
        f"SlurmdSpoolDir={NODE_SPOOL}",
        f"SlurmctldPidFile={root / 'run' / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'run' / 'slurmd-%n.pid'}",
        f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'log' / 'slurmd-%n.log'}",
        f"PlugStackConfig={root / 'plugstack.conf'}",
        # The catalog's cores and threads, more than this machine has: the ranks share its cores.
        "SlurmdParameters=config_overrides",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "SchedulerType=sched/builtin",
        "SchedulerParameters=sched_interval=2",
        "MpiDefault=none",
        "ReturnToService=2",
        "EnforcePartLimits=ALL",
        "SlurmdTimeout=20",
        "JobCompType=jobcomp/none",
        "AccountingStorageType=accounting_storage/none",
        "GresTypes=gpu",
    ]
    if first_job_id != 1:
        lines.append(f"FirstJobId={first_job_id}")
    gres = []
    for node in shape.nodes:
        gres_field = f" Gres={node.gres}" if node.gres else ""
        lines.append(
            f"NodeName={node.name} NodeHostname={node.name} NodeAddr=127.0.0.1 Port={node.port} CPUs={node.cpus} "
            f"Sockets={node.sockets} CoresPerSocket={node.cores_per_socket} ThreadsPerCore={node.threads_per_core}"
            f"{gres_field} State=UNKNOWN"
        )
        if node.gres:
            name, *kind, count = node.gres.split(":")
            type_field = f" Type={kind[0]}" if kind else ""
            files = f"{stand_in_devices(root, node.name)}/gpu" + (f"[0-{int(count) - 1}]" if int(count) > 1 else "0")
            gres.append(f"NodeName={node.name} Name={name}{type_field} Count={count} File={files}")
    names = ",".join(node.name for node in shape.nodes)
    for index, part in enumerate(shape.partitions):
        if any(p.name == part.name for p in shape.partitions[:index]):
            continue  # one partition over several node types: only this type's nodes are emulated
        lines.append(
            f"PartitionName={part.name} Nodes={names} MinNodes={part.min_nodes} MaxNodes={part.max_nodes} "
            f"MaxTime={part.max_minutes} State=UP{' Default=YES' if index == 0 else ''}"
        )
    return lines, gres


def stand_in_devices(root: Path, node: str) -> Path:
    """The directory of a node's stand-in GPU device files: ``gpu<i>`` -> ``/dev/null``.

    Slurm 22.05's slurmd drops a GPU without ``File=`` ("Removing file-less GPU ... from final GRES list") and
    then drains the node (count 0 < configured); a symbolic link to ``/dev/null`` is a character device to it.
    With ``TaskPlugin=task/none`` no device is constrained; the job sees ``CUDA_VISIBLE_DEVICES`` and no GPU.
    """
    return root / "dev" / node


def default_root() -> Path:
    """A fresh directory under :data:`DEFAULT_PARENT` (``/tmp`` is private to each emulated node), its owner's
    PID recorded at once, so that :func:`left_clusters` never takes it for a leftover."""
    root = Path(tempfile.mkdtemp(prefix=DEFAULT_PREFIX, dir=DEFAULT_PARENT))
    (root / OWNER_FILE).write_text(f"{os.getpid()}\n")
    return root


def node_private_dir(path: Path) -> str | None:
    """The node-private directory (``/tmp``, ``/dev/shm``) that ``path`` or its real path lies under, or None."""
    for candidate in dict.fromkeys((Path(os.path.abspath(path)), Path(os.path.realpath(path)))):
        for private in PRIVATE_DIRS:
            if candidate == Path(private) or Path(private) in candidate.parents:
                return private
    return None


def check_visible_to_nodes(path: Path, field: str, noun: str = "") -> None:
    """Refuse, in one line naming ``path`` (``field: [noun] path ...``), what the emulated nodes cannot see."""
    private = node_private_dir(path)
    if private is not None:
        raise KitError(
            f"{field}: {noun + ' ' if noun else ''}{path} is under {private}, which each emulated node replaces "
            "with its own; expected it elsewhere (e.g. under /var/tmp)"
        )


def check_train_args_visible(train_args: Sequence[str], field: str) -> None:
    """Refuse a training argument that is an absolute path the emulated nodes cannot see (``--data /tmp/gw.h5``,
    ``--data=/tmp/gw.h5``): the ranks would look for it in their own ``/tmp``."""
    for word in train_args:
        value = word.split("=", 1)[1] if word.startswith("--") and "=" in word else word
        if value.startswith("/"):
            check_visible_to_nodes(Path(value), field, "the training argument")


def check_host_environment(field: str) -> None:
    """The ranks run this environment's ``hpcai`` on every node: neither it nor the kit may lie in a directory
    that each emulated node replaces with its own (``/tmp``, ``/dev/shm``)."""
    check_visible_to_nodes(Path(sys.prefix), field, "the environment (the ranks' hpcai)")
    check_visible_to_nodes(Path(os.path.abspath(__file__)).parents[1], field, "the kit")  # as imported, unresolved


def settle_root(root: Path, keep: bool, command: str, hint: str = "") -> None:
    """A cluster directory made by :func:`default_root`: removed after a successful run (saying so, with
    ``hint``), else kept and named."""
    if not root.exists():
        return
    if keep:
        kept = f"the cluster directory stays: {root} (`hpcai clean` removes it once nothing runs there)"
        print(f"hpcai {command}: {kept}")
        return
    shutil.rmtree(root, ignore_errors=True)
    print(f"hpcai {command}: removed the cluster directory {root}{hint}")


def check_root(root: Path, what: str = "cluster directory") -> Path:
    """``root`` as an absolute path, refused under a directory that each node replaces with its own."""
    root = Path(os.path.abspath(root))
    check_visible_to_nodes(root, what)
    socket_path = root / "munge" / "munge.sock"
    if len(os.fsencode(socket_path)) > SOCKET_PATH_MAX:
        raise KitError(
            f"{what}: {root} is too long for munged's socket {socket_path} (at most {SOCKET_PATH_MAX} bytes); "
            "expected a shorter path"
        )
    return root


@dataclass
class EmulatedCluster:
    """A running (or stopped) emulated cluster: its shape, files, daemons by name and the jobs' environment."""

    shape: ClusterShape
    root: Path
    first_job_id: int = 1
    """A fresh cluster numbers jobs from 1; a later one writing beside earlier runs continues after them."""
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    _signals: dict[int, object] = field(default_factory=dict)
    _namespaces: dict[str, str] = field(default_factory=dict)
    """Each node's UTS namespace (``uts:[N]``), recorded at start."""

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def shared(self) -> Path:
        """The directory standing for the site's shared filesystem."""
        return self.root / "shared"

    @property
    def node_names(self) -> list[str]:
        return [node.name for node in self.shape.nodes]

    @property
    def own_env(self) -> dict[str, str]:
        """What a job of this cluster needs: ``SLURM_CONF``, loopback-only Open MPI and, as root, its consent."""
        env = {"SLURM_CONF": str(self.conf), **LOOPBACK_ENV, **SHARED_NODE_ENV}
        if os.geteuid() == 0:
            env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
        return env

    @property
    def env(self) -> dict[str, str]:
        """The caller's environment plus :attr:`own_env`."""
        return {**os.environ, **self.own_env}

    def pids(self) -> dict[str, int]:
        """Each daemon's PID, by name (``munged``, ``slurmctld``, ``slurmd:<node>``)."""
        return {name: process.pid for name, process in self.processes.items()}

    @property
    def pids_text(self) -> str:
        """:meth:`pids` as the commands print it: ``munged=PID slurmctld=PID slurmd:n1=PID ...``."""
        return " ".join(f"{name}={pid}" for name, pid in self.pids().items())

    def dead_daemons(self) -> list[str]:
        """The daemons (names as in :meth:`pids`) that have exited."""
        return [name for name, process in self.processes.items() if process.poll() is not None]

    def run(
        self, *argv: str, check: bool = True, timeout: float = 60, cwd: Path | None = None
    ) -> subprocess.CompletedProcess:
        """A Slurm command against this cluster (from ``cwd``, default the shared directory)."""
        return subprocess.run(
            list(argv),
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
            cwd=cwd or (self.shared if self.shared.is_dir() else None),
        )

    def sbatch(self, script: Path, *flags: str, field: str, cwd: Path | None = None) -> str:
        """Submit ``script`` with ``sbatch FLAGS`` (from ``cwd``, default the shared directory); its job id, or a
        one-line error starting with ``field`` and sbatch's reason."""
        done = self.run("sbatch", *flags, str(script), check=False, cwd=cwd)
        match = SLURM.job_id_pattern.search(done.stdout)
        if done.returncode != 0 or not match:
            reason = (done.stderr.strip() or done.stdout.strip() or f"exit status {done.returncode}").splitlines()
            raise KitError(f"{field}: sbatch refused the site's job script: {reason[-1]}")
        return match[1]

    def log(self, name: str) -> str:
        """A daemon's log (``slurmctld``, ``slurmd-<node>``, ``munged``), or empty."""
        path = self.root / "log" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def lost_nodes(self) -> list[str]:
        """Nodes whose ``slurmd`` has exited while the cluster runs."""
        return [name for name in self.node_names if self.processes[f"slurmd:{name}"].poll() is not None]

    def node_processes(self, name: str) -> list[int]:
        """PIDs of every process in node ``name``'s UTS namespace (its slurmd, job steps and ranks).

        After its slurmd has gone (a lost node, a daemon that died first), only those whose environment names
        this cluster's ``SLURM_CONF``: the namespace recorded at start is then known only by its number."""
        process = self.processes.get(f"slurmd:{name}")
        if process is not None and process.poll() is None:
            return namespace_processes(process.pid)
        namespace = self._namespaces.get(name)
        return [pid for pid in processes_in_namespace(namespace) if self._runs_here(pid)] if namespace else []

    def _runs_here(self, pid: int) -> bool:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            return False
        return os.fsencode(f"SLURM_CONF={self.conf}") in environ

    def __enter__(self) -> EmulatedCluster:
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._signals[signum] = signal.signal(signum, _interrupt)
        try:
            self.start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            for signum, handler in self._signals.items():
                signal.signal(signum, handler)  # type: ignore[arg-type]
            self._signals.clear()

    def start(self, timeout: float = 60) -> None:
        """Write the configuration, start munged, slurmctld and every node, and wait until all nodes are idle."""
        missing = [tool for tool in TOOLS if shutil.which(tool) is None]
        if missing:
            raise KitError(f"emulated cluster: {', '.join(missing)} not on PATH; run scripts/install-system.sh")
        for sub in ("munge", "state", "run", "log", "shared"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / OWNER_FILE).write_text(f"{os.getpid()}\n")
        for node in self.shape.nodes:
            if node.gres:
                devices = stand_in_devices(self.root, node.name)
                devices.mkdir(parents=True, exist_ok=True)
                for index in range(int(node.gres.rsplit(":", 1)[1])):
                    link = devices / f"gpu{index}"
                    if not link.is_symlink():
                        link.symlink_to("/dev/null")
        (self.root / "munge").chmod(0o700)
        lines, gres = slurm_conf_lines(self.shape, self.root, self.first_job_id)
        self.conf.write_text("\n".join(lines) + "\n")
        (self.root / "gres.conf").write_text("".join(f"{line}\n" for line in gres))
        (self.root / "plugstack.conf").write_text("")
        munge = self.root / "munge"
        key = munge / "munge.key"
        subprocess.run(["mungekey", "--create", "--force", "--keyfile", str(key)], check=True, capture_output=True)
        key.chmod(0o600)
        self._spawn(
            "munged",
            [
                "munged", "--foreground", "--force", f"--socket={munge / 'munge.sock'}", f"--key-file={key}",
                f"--pid-file={munge / 'munged.pid'}", f"--log-file={self.root / 'log' / 'munged.log'}",
                f"--seed-file={munge / 'munged.seed'}",
            ],
        )  # fmt: skip
        self._wait(lambda: (munge / "munge.sock").exists(), 10, "munged did not create its socket")
        self._spawn("slurmctld", ["slurmctld", "-D", "-f", str(self.conf)])
        for node in self.shape.nodes:
            argv = ["unshare", "--uts", "--mount", "--propagation", "private", "sh", "-c", _NODE_SCRIPT, "sh"]
            self._spawn(f"slurmd:{node.name}", [*argv, node.name, str(self.conf)])
        self._wait(self._all_idle, timeout, "the emulated nodes are not idle")
        for node in self.shape.nodes:  # each slurmd is in its own namespace once its node is idle
            self._namespaces[node.name] = namespace_of(self.processes[f"slurmd:{node.name}"].pid) or ""

    def _all_idle(self) -> bool:
        if dead := self.dead_daemons():
            raise KitError(f"emulated cluster: {', '.join(dead)} stopped at start; logs under {self.root / 'log'}")
        out = self.run("sinfo", "-h", "-N", "-o", "%N %T", check=False).stdout.split()
        states = dict(zip(out[::2], out[1::2], strict=False))
        return all(states.get(name) == "idle" for name in self.node_names)

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise KitError(f"emulated cluster: {what} after {timeout:.0f} s; logs under {self.root / 'log'}")
            time.sleep(0.3)

    def _spawn(self, name: str, argv: list[str]) -> None:
        out = self.root / "log" / f"{name.replace(':', '-')}.out"
        owner = os.getpid()
        with open(out, "w") as log:  # the child keeps its own descriptor
            self.processes[name] = subprocess.Popen(
                argv,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a terminal's Ctrl-C reaches the owner only, which then stops them in order
                preexec_fn=lambda: _terminate_with(owner),
            )

    def stop(self, drain_s: float = 30) -> None:
        """Cancel every job and wait for them to leave, then stop the daemons and the nodes' leftovers by PID.

        Each step runs even if the one before it fails or is interrupted (a slow ``squeue`` on a loaded machine,
        a second Ctrl-C): the daemons are always signalled."""
        try:
            self._cancel_jobs(drain_s)
        finally:
            try:
                self._kill_leftovers()
            finally:
                self._stop_daemons()

    def _cancel_jobs(self, drain_s: float) -> None:
        """Cancel every job (none is requeued), kill what runs on the nodes at once (a cancelled job's script and
        ranks would checkpoint on TERM first, and Slurm wait ``KillWait`` for them), then let the jobs leave."""
        ctld = self.processes.get("slurmctld")
        if ctld is not None and ctld.poll() is None and not self.lost_nodes():
            self.run("scancel", "--user=root", check=False)
            self._kill_leftovers()
            deadline = time.monotonic() + drain_s
            while time.monotonic() < deadline and self.run("squeue", "-h", check=False).stdout.strip():
                time.sleep(0.5)

    def _kill_leftovers(self) -> None:
        for name in self.node_names:
            leftovers = [pid for pid in self.node_processes(name) if pid != self.processes[f"slurmd:{name}"].pid]
            for pid in leftovers:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def _stop_daemons(self) -> None:
        for name in reversed(list(self.processes)):
            process = self.processes[name]
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)


def namespace_of(pid: int) -> str | None:
    """The UTS namespace of ``pid`` (``uts:[N]``), or None if it is gone or is this host's namespace."""
    try:
        own = os.readlink(f"/proc/{pid}/ns/uts")
    except OSError:
        return None
    return None if own == os.readlink("/proc/self/ns/uts") else own


def processes_in_namespace(namespace: str) -> list[int]:
    """PIDs of every process in the UTS namespace ``namespace``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "ns" / "uts") == namespace:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def namespace_processes(slurmd_pid: int) -> list[int]:
    """PIDs of every process in the UTS namespace of an emulated node's ``slurmd`` (none if it is the host's)."""
    namespace = namespace_of(slurmd_pid)
    return processes_in_namespace(namespace) if namespace else []


def kill_node_processes(slurmd_pid: int) -> list[int]:
    """Lose a node: SIGKILL every process of its namespace (its slurmd, job steps and ranks); the PIDs killed."""
    pids = namespace_processes(slurmd_pid)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


def recorded_pids(root: Path) -> list[int]:
    """The PIDs a cluster directory records: its owner's, munged's and each Slurm daemon's."""
    pids = []
    for path in (root / OWNER_FILE, root / "munge" / "munged.pid", *sorted((root / "run").glob("*.pid"))):
        try:
            pids.append(int(path.read_text().split()[0]))
        except (OSError, ValueError, IndexError):
            continue
    return pids


def in_use(root: Path) -> bool:
    """True while a process that ``root`` records still exists (a reused PID keeps the directory: the safe side)."""
    return any(Path(f"/proc/{pid}").exists() for pid in recorded_pids(root))


def left_clusters(parent: Path = Path(DEFAULT_PARENT)) -> list[Path]:
    """Cluster directories (``hpcai-cluster-*`` under ``parent``) that no running process records: left by
    rehearsals that failed or were interrupted (a successful one removes its own), safe to remove."""
    return [
        path
        for path in sorted(parent.glob(f"{DEFAULT_PREFIX}*"))
        if path.is_dir() and not path.is_symlink() and not in_use(path)
    ]


def remove_left_clusters(dry_run: bool = False, out=print, parent: Path = Path(DEFAULT_PARENT)) -> list[Path]:
    """Remove (or, with ``dry_run``, list) :func:`left_clusters`; the directories concerned."""
    found = left_clusters(parent)
    for path in found:
        if dry_run:
            out(f"would remove {path} (an emulated cluster no process runs)")
            continue
        shutil.rmtree(path, ignore_errors=True)
        out(f"removed {path} (an emulated cluster no process runs)")
    return found


PR_SET_PDEATHSIG = 1
"""prctl(2): the signal a process gets when the thread that started it ends."""


def _terminate_with(owner: int) -> None:
    """In a daemon's process before it runs (``preexec_fn``): SIGTERM to it when ``owner`` dies, also by SIGKILL,
    which :meth:`EmulatedCluster.stop` cannot catch; it survives ``unshare`` and ``sh -c 'exec slurmd'`` (one
    process throughout). Jobs already running on a node are not reached: ``hpcai clean`` names their directory."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != owner:  # the owner died before the line above
        os._exit(1)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def emulated_cluster(site: Site, nodes: int = DEFAULT_NODES, root: Path | None = None, node_type: str | None = None):
    """An :class:`EmulatedCluster` of ``nodes`` nodes shaped after ``site`` under ``root`` (not yet started)."""
    shape = shape_for_site(site, nodes, node_type)
    return EmulatedCluster(shape, check_root(root) if root is not None else default_root())
