"""``TF_CONFIG`` for ``tf.distribute.MultiWorkerMirroredStrategy``, from what the launcher says about the job.

A pure module (no TensorFlow, no MPI): :func:`worker_place` reads this task's rank, the task count and its rank on
the node from the variables that srun, Open MPI's mpirun and jsrun set per task, and, where the allocation names them,
the host of every rank (:func:`hosts_by_rank`): Slurm's step node list and task layout, LSF's host list under jsrun.
Under mpirun the hosts are not in the environment; the caller gathers them over MPI (mpi4py) before TensorFlow
starts and passes them to :func:`tf_config`.

Worker ``r`` listens on ``port_base + r``: ranks on one host (and the emulated nodes of ``hpcai rehearse``, which
share 127.0.0.1) never collide. When every rank runs on one host its address is 127.0.0.1. A launcher environment
that does not name every worker (a rank started by hand, a variable missing) is refused in one line that names what
is missing, before TensorFlow starts. References: srun(1) "OUTPUT ENVIRONMENT VARIABLES"
(https://slurm.schedmd.com/srun.html), Open MPI's variables of MPI processes
(https://docs.open-mpi.org/en/v5.0.x/tuning-apps/environment-var.html), IBM's jsrun
(https://www.ibm.com/docs/en/spectrum-lsf/10.1.0?topic=jsm-jsrun) and TensorFlow's multi-worker guide
(https://www.tensorflow.org/tutorials/distribute/multi_worker_with_keras).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hpcai_tf.errors import KitError
from hpcai_tf.train.image_contract import WORKER_ADDRESS_VARIABLE
from hpcai_tf.train.launcher_env import in_slurm_step

TF_CONFIG = "TF_CONFIG"
DEFAULT_PORT_BASE = 23456
"""Worker ``r`` listens on this port plus ``r`` (``--port-base`` changes it)."""
LOOPBACK = "127.0.0.1"
ADDRESS_VARIABLE = WORKER_ADDRESS_VARIABLE
"""When set, every worker is reached at this address (e.g. 127.0.0.1 on the emulated nodes, whose names do not
resolve); otherwise at its host's name, or 127.0.0.1 when all workers share one host."""

OPEN_MPI = ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE")
JSRUN = ("JSM_NAMESPACE_RANK", "JSM_NAMESPACE_SIZE", "JSM_NAMESPACE_LOCAL_RANK", "JSM_NAMESPACE_LOCAL_SIZE")
JSRUN_HOSTS = "LSB_MCPU_HOSTS"
SRUN = ("SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID", "SLURM_STEP_NODELIST", "SLURM_STEP_TASKS_PER_NODE")


@dataclass(frozen=True)
class WorkerPlace:
    """This task's place in the job, as its launcher says."""

    launcher: str
    rank: int
    size: int
    local_rank: int
    local_size: int
    hosts: tuple[str, ...] | None
    """The host of every rank, in rank order; None when the environment does not say (mpirun: gather them)."""


def _require(env: Mapping[str, str], names: Sequence[str], launcher: str) -> None:
    """Every one of ``names`` set; the missing ones are named in one refusal."""
    missing = [name for name in names if not env.get(name, "").strip()]
    if missing:
        raise KitError(
            f"--backend mwms under {launcher}: the environment does not name every worker; missing "
            f"{', '.join(missing)} (start every worker with the launcher, not by hand)"
        )


def _numbers(env: Mapping[str, str], names: Sequence[str], launcher: str) -> list[int]:
    """The whole numbers in ``names``."""
    values = []
    for name in names:
        text = env[name].strip()
        if not text.isdigit():
            raise KitError(f"--backend mwms under {launcher}: {name}={text!r}, expected a whole number")
        values.append(int(text))
    return values


def _check_rank(launcher: str, rank: int, size: int, local_rank: int, local_size: int, names: Sequence[str]) -> None:
    if size < 1 or rank >= size or local_size < 1 or local_rank >= local_size:
        raise KitError(
            f"--backend mwms under {launcher}: {names[0]}={rank} of {names[1]}={size}, local {local_rank} of "
            f"{local_size}: expected 0 <= rank < size and 0 <= local rank < local size"
        )


def worker_place(env: Mapping[str, str]) -> WorkerPlace | None:
    """This task's place from its launcher's variables; None for a process no launcher started (one worker).

    Open MPI's variables win over Slurm's (mpirun inside a batch job), jsrun's over LSF's. A launcher's variables
    present in part are refused, naming the missing ones.
    """
    if any(name in env for name in OPEN_MPI):
        _require(env, OPEN_MPI, "mpirun (Open MPI)")
        rank, size, local_rank, local_size = _numbers(env, OPEN_MPI, "mpirun (Open MPI)")
        _check_rank("mpirun (Open MPI)", rank, size, local_rank, local_size, OPEN_MPI)
        return WorkerPlace("mpirun (Open MPI)", rank, size, local_rank, local_size, None)
    if any(name in env for name in JSRUN):
        _require(env, (*JSRUN, JSRUN_HOSTS), "jsrun")
        rank, size, local_rank, local_size = _numbers(env, JSRUN, "jsrun")
        _check_rank("jsrun", rank, size, local_rank, local_size, JSRUN)
        hosts = lsf_compute_hosts(env[JSRUN_HOSTS])
        return WorkerPlace("jsrun", rank, size, local_rank, local_size, jsrun_hosts_by_rank(hosts, size, local_size))
    if in_slurm_step(env):
        _require(env, SRUN, "srun")
        rank, size, local_rank = _numbers(env, SRUN[:3], "srun")
        hosts = slurm_hosts_by_rank(
            env["SLURM_STEP_NODELIST"], env["SLURM_STEP_TASKS_PER_NODE"], env.get("SLURM_DISTRIBUTION", "")
        )
        if len(hosts) != size:
            raise KitError(
                f"--backend mwms under srun: SLURM_STEP_TASKS_PER_NODE={env['SLURM_STEP_TASKS_PER_NODE']!r} places "
                f"{len(hosts)} tasks, SLURM_STEP_NUM_TASKS={size}"
            )
        local_size = hosts.count(hosts[rank]) if rank < size else 1
        _check_rank("srun", rank, size, local_rank, local_size, SRUN)
        node = env.get("SLURMD_NODENAME")
        if node and node != hosts[rank]:
            raise KitError(
                f"--backend mwms under srun: the task layout puts rank {rank} on {hosts[rank]}, but it runs on "
                f"{node} (SLURMD_NODENAME); expected srun's block or cyclic distribution"
            )
        return WorkerPlace("srun", rank, size, local_rank, local_size, tuple(hosts))
    if env.get("SLURM_PROCID", "0").strip() not in ("", "0"):
        _require(env, ("SLURM_STEP_ID", *SRUN), "srun")  # a rank started by hand, outside a job step
    found = next((name for name in ("PMI_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK") if name in env), None)
    if found:
        raise KitError(
            f"--backend mwms: started by a launcher the kit cannot read the workers from ({found}); use srun, "
            "Open MPI's mpirun or jsrun, or set TF_CONFIG yourself"
        )
    return None


def expand_hostlist(text: str) -> list[str]:
    """Slurm's compressed host list, expanded in order: ``gpu[01-03,07],login1`` -> gpu01 gpu02 gpu03 gpu07 login1."""
    hosts: list[str] = []
    for item in _split_top_level(text.strip()):
        hosts += _expand_item(item, text)
    return hosts


def _split_top_level(text: str) -> list[str]:
    items, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    items.append(current)
    return items


def _expand_item(item: str, whole: str) -> list[str]:
    match = re.fullmatch(r"([^\[\]]*)\[([^\[\]]+)\](.*)", item)
    if not match:
        if not item or "[" in item or "]" in item:
            raise KitError(f"SLURM_STEP_NODELIST={whole!r}: expected a Slurm host list such as node[01-04],gpu7")
        return [item]
    prefix, ranges, rest = match.groups()
    names = []
    for part in ranges.split(","):
        bounds = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not bounds or (bounds[2] is not None and int(bounds[2]) < int(bounds[1])):
            raise KitError(f"SLURM_STEP_NODELIST={whole!r}: expected ranges such as 01-04 inside [...], got {part!r}")
        first, last = bounds[1], bounds[2] or bounds[1]
        names += [f"{prefix}{number:0{len(first)}d}" for number in range(int(first), int(last) + 1)]
    return [name + tail for name in names for tail in _expand_item(rest, whole)] if rest else names


def tasks_per_node(text: str) -> list[int]:
    """Slurm's ``SLURM_STEP_TASKS_PER_NODE``: ``2(x3),1`` -> [2, 2, 2, 1]."""
    counts: list[int] = []
    for part in text.strip().split(","):
        match = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part)
        if not match:
            raise KitError(f"SLURM_STEP_TASKS_PER_NODE={text!r}: expected counts such as 2(x3),1")
        counts += [int(match[1])] * int(match[2] or 1)
    return counts


def slurm_hosts_by_rank(nodelist: str, per_node: str, distribution: str = "") -> list[str]:
    """The node of every task of a step: srun's block distribution (its default) fills each node in turn; cyclic
    deals the tasks round-robin over the nodes that still have room."""
    nodes, counts = expand_hostlist(nodelist), tasks_per_node(per_node)
    if len(nodes) != len(counts):
        raise KitError(
            f"SLURM_STEP_NODELIST={nodelist!r} names {len(nodes)} nodes, SLURM_STEP_TASKS_PER_NODE={per_node!r} "
            f"{len(counts)}"
        )
    kind = distribution.split(":", 1)[0].strip() or "block"
    if kind == "block":
        return [node for node, count in zip(nodes, counts, strict=True) for _ in range(count)]
    if kind == "cyclic":
        left, hosts = list(counts), []
        while any(left):
            for index, node in enumerate(nodes):
                if left[index]:
                    hosts.append(node)
                    left[index] -= 1
        return hosts
    raise KitError(
        f"--backend mwms under srun: SLURM_DISTRIBUTION={distribution!r}; the kit places workers for the block and "
        "cyclic distributions only"
    )


def lsf_compute_hosts(mcpu_hosts: str) -> list[str]:
    """The compute hosts of an LSF job from ``LSB_MCPU_HOSTS`` (``host slots host slots ...``), without the
    launch node that jsrun runs on, which LSF lists first (Summit: ``batch1 1 a01n01 42 a01n02 42``)."""
    words = mcpu_hosts.split()
    if len(words) < 4 or len(words) % 2 or not all(word.isdigit() for word in words[1::2]):
        raise KitError(
            f"{JSRUN_HOSTS}={mcpu_hosts!r}: expected 'HOST SLOTS' pairs, the launch node first, then compute hosts"
        )
    return words[2::2]


def jsrun_hosts_by_rank(hosts: Sequence[str], size: int, local_size: int) -> tuple[str, ...]:
    """The host of every task of a jsrun step whose resource sets fill each node in turn (the kit's ``-r`` layout:
    the same number of tasks per node), ranks packed in order."""
    if size % local_size or size // local_size > len(hosts):
        raise KitError(
            f"--backend mwms under jsrun: {size} tasks at {local_size} per node do not fit the {len(hosts)} compute "
            f"hosts of {JSRUN_HOSTS}; expected the same number of tasks on each node"
        )
    return tuple(hosts[rank // local_size] for rank in range(size))


def worker_addresses(hosts: Sequence[str], override: str | None = None) -> list[str]:
    """The address of every worker: ``override`` for all, else 127.0.0.1 when all share one host, else the host."""
    if override:
        return [override] * len(hosts)
    if len(set(hosts)) == 1:
        return [LOOPBACK] * len(hosts)
    return list(hosts)


def worker_ports(port_base: int, size: int) -> list[int]:
    """``port_base + r`` for every rank ``r``; the range must fit below 65536."""
    if port_base < 1024 or port_base + size - 1 > 65535:
        raise KitError(
            f"--port-base {port_base}: the workers need ports {port_base}-{port_base + size - 1}; expected a base "
            f"from 1024 to {65536 - size}"
        )
    return [port_base + rank for rank in range(size)]


def tf_config(addresses: Sequence[str], port_base: int, rank: int) -> dict:
    """The ``TF_CONFIG`` of worker ``rank`` (as a dict): every worker's ``address:port`` and this task."""
    ports = worker_ports(port_base, len(addresses))
    return {
        "cluster": {"worker": [f"{address}:{port}" for address, port in zip(addresses, ports, strict=True)]},
        "task": {"type": "worker", "index": rank},
    }


def tf_config_text(config: dict) -> str:
    """``TF_CONFIG``'s value: compact JSON, keys in a fixed order."""
    return json.dumps(config, separators=(",", ":"))


def given_tf_config(text: str) -> dict:
    """A ``TF_CONFIG`` the user set, checked: workers listed, this task one of them (one line naming the fault)."""
    try:
        config = json.loads(text)
        workers = config["cluster"]["worker"]
        task = config["task"]
        index = task["index"]
    except (ValueError, KeyError, TypeError):
        raise KitError(
            'TF_CONFIG: expected JSON {"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", '
            '"index": N}}'
        ) from None
    if set(config["cluster"]) != {"worker"} or task.get("type") != "worker":
        raise KitError("TF_CONFIG: MultiWorkerMirroredStrategy here takes workers only (no chief, ps or evaluator)")
    if not isinstance(workers, list) or not workers or not isinstance(index, int) or not 0 <= index < len(workers):
        raise KitError(f"TF_CONFIG: task index {index!r} is not one of the {len(workers)} workers listed")
    return config
