"""``--backend mwms``: TensorFlow's own ``MultiWorkerMirroredStrategy``, no Horovod and no MPI build.

Before TensorFlow starts, :func:`plan_workers` writes ``TF_CONFIG`` from the launcher's environment
(:mod:`hpcai_tf.train.tf_config`): under srun and jsrun the allocation names every worker's host; under mpirun the
hosts are gathered over MPI (mpi4py), together with each worker's check that its port is free, so that every rank
refuses a taken port with the same line. A ``TF_CONFIG`` the user set is checked and kept.

:func:`init_mwms` creates the strategy with the kit's collective timeout (``--collective-timeout``), after the
threads and the GPU of the rank are set. The strategy then does what Horovod's API does in the other backend:
variables created in its scope start from worker 0's values, the optimizer all-reduces the gradients and Keras
aggregates the metrics over workers (sums and counts, not a mean of per-rank means). The kit's own collectives
(Python objects, metric sums, the broadcast of a restored checkpoint, the average of BatchNorm statistics) are
all-reduces and all-gathers in a replica context. A worker that dies is noticed by the other workers through
TensorFlow's coordination service (its heartbeats); :meth:`MwmsBackend.lost_worker` turns that error into one line.
"""

from __future__ import annotations

import os
import pickle
import socket
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from hpcai_tf.errors import KitError
from hpcai_tf.train.distributed import AgreedError, Ranks, seed_everything, set_threads_and_gpu
from hpcai_tf.train.tf_config import (
    ADDRESS_VARIABLE,
    TF_CONFIG,
    WorkerPlace,
    given_tf_config,
    tf_config,
    tf_config_text,
    worker_addresses,
    worker_place,
    worker_ports,
)

T = TypeVar("T")


@dataclass(frozen=True)
class WorkerPlan:
    """The workers of this job as :func:`plan_workers` found them."""

    launcher: str
    rank: int
    size: int
    local_rank: int
    local_size: int
    config: dict | None
    """The ``TF_CONFIG`` written (or found), None for a single worker."""


_PLAN: list[WorkerPlan] = []


def port_problem(port: int) -> str | None:
    """Why this host cannot listen on ``port`` (someone else does), or None. SO_REUSEADDR as gRPC sets it, so a
    port left in TIME_WAIT by a finished run counts as free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("", port))
        except OSError as err:
            return err.strerror or str(err)
    return None


def free_port_base(count: int, attempts: int = 100) -> int:
    """A ``--port-base`` whose ``count`` ports are free now (for tests and benchmarks that run beside others)."""
    for _ in range(attempts):
        with socket.socket() as probe:
            probe.bind(("", 0))
            base = probe.getsockname()[1]
        if base + count <= 65536 and not any(port_problem(base + offset) for offset in range(count)):
            return base
    raise KitError(f"--port-base: no {count} free consecutive ports found in {attempts} tries")


def _gather_over_mpi(value: Any) -> list[Any]:
    """``value`` of every rank, in rank order, over MPI (mpirun's ranks; MPI stays initialised, as under Horovod,
    so that mpirun ends the job when a rank dies)."""
    from mpi4py import MPI

    return MPI.COMM_WORLD.allgather(value)


def plan_workers(
    env: MutableMapping[str, str], port_base: int, gather: Callable[[Any], list[Any]] = _gather_over_mpi
) -> WorkerPlan:
    """Write ``TF_CONFIG`` into ``env`` for this worker (before TensorFlow is imported), or refuse in one line."""
    given = env.get(TF_CONFIG, "").strip()
    place = worker_place(env)
    if given:
        config = given_tf_config(given)
        index, size = config["task"]["index"], len(config["cluster"]["worker"])
        if place is not None and (place.rank, place.size) != (index, size):
            raise KitError(
                f"TF_CONFIG names worker {index} of {size}, {place.launcher} started rank {place.rank} of {place.size}"
            )
        local = (place.local_rank, place.local_size) if place else (0, 1)
        plan = WorkerPlan("TF_CONFIG", index, size, *local, config)
    elif place is None or place.size == 1:
        plan = WorkerPlan(place.launcher if place else "none", 0, 1, 0, 1, None)
    else:
        plan = _plan_from_place(env, place, port_base, gather)
    _PLAN[:] = [plan]
    return plan


def _plan_from_place(
    env: MutableMapping[str, str], place: WorkerPlace, port_base: int, gather: Callable[[Any], list[Any]]
) -> WorkerPlan:
    port = worker_ports(port_base, place.size)[place.rank]
    problem = port_problem(port)
    mine = f"port {port} (--port-base {port_base} + rank {place.rank}) on {socket.gethostname()}: {problem}"
    if place.hosts is None:  # mpirun: the hosts and every rank's port check, over MPI
        gathered = gather((socket.gethostname(), mine if problem else None))
        hosts = [host for host, _ in gathered]
        agreed = next((found for _, found in gathered if found), None)
        if agreed:  # every rank refuses with the same line; rank 0 prints it
            raise AgreedError(f"--backend mwms: {agreed}; choose another --port-base")
    else:
        hosts = list(place.hosts)
    if problem:
        raise KitError(f"--backend mwms: {mine}; choose another --port-base")
    config = tf_config(worker_addresses(hosts, env.get(ADDRESS_VARIABLE) or None), port_base, place.rank)
    env[TF_CONFIG] = tf_config_text(config)
    return WorkerPlan(place.launcher, place.rank, place.size, place.local_rank, place.local_size, config)


def current_plan(env: Mapping[str, str]) -> WorkerPlan:
    """The plan :func:`plan_workers` made in this process (made now, with the default port base, if none was)."""
    if not _PLAN:
        from hpcai_tf.train.tf_config import DEFAULT_PORT_BASE

        plan_workers(env if isinstance(env, MutableMapping) else dict(env), DEFAULT_PORT_BASE)
    return _PLAN[-1]


# ------------------------------------------------------------------------------------------------ the backend
def _as_integers(tensor: Any) -> Any:
    """The bits of ``tensor`` as an integer tensor that collectives sum exactly (x + 0 == x, also for -0.0)."""
    import tensorflow as tf

    if tensor.dtype in (tf.int32, tf.int64):
        return tensor
    if tensor.dtype == tf.float32:
        return tf.bitcast(tensor, tf.int32)
    if tensor.dtype == tf.float64:
        return tf.bitcast(tensor, tf.int64)
    if tensor.dtype in (tf.float16, tf.bfloat16):
        return tf.cast(tf.bitcast(tensor, tf.int16), tf.int32)
    if tensor.dtype == tf.bool:
        return tf.cast(tensor, tf.int32)
    raise KitError(f"--backend mwms: cannot broadcast a variable of type {tensor.dtype.name}")


def _from_integers(tensor: Any, dtype: Any) -> Any:
    import tensorflow as tf

    if dtype in (tf.int32, tf.int64):
        return tensor
    if dtype in (tf.float32, tf.float64):
        return tf.bitcast(tensor, dtype)
    if dtype in (tf.float16, tf.bfloat16):
        return tf.bitcast(tf.cast(tensor, tf.int16), dtype)
    return tf.cast(tensor, dtype)


class MwmsBackend:
    """``tf.distribute.MultiWorkerMirroredStrategy`` behind :class:`~hpcai_tf.train.distributed.Backend`."""

    name = "mwms"

    def __init__(self, strategy: Any, plan: WorkerPlan):
        self.strategy = strategy
        self.plan = plan

    # ----------------------------------------------------------------------------------- collectives
    def _in_replica(self, fn: Callable[[Any], Any]) -> Any:
        """``fn(replica context)`` run on this worker's one replica; its local results."""
        import tensorflow as tf

        result = self.strategy.run(lambda: fn(tf.distribute.get_replica_context()))
        return tf.nest.map_structure(lambda value: self.strategy.experimental_local_results(value)[0], result)

    def _all_gather(self, values: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        tensor = tf.constant(values)
        return self._in_replica(lambda context: context.all_gather(tensor, axis=0)).numpy()

    def allgather_object(self, value: T, name: str) -> list[T]:
        data = pickle.dumps(value)
        words = np.frombuffer(data + b"\0" * (-len(data) % 8), dtype=np.int64)
        lengths = self._all_gather(np.array([len(data)], dtype=np.int64))
        longest = -(-int(lengths.max()) // 8)
        padded = np.zeros((1, longest), dtype=np.int64)
        padded[0, : len(words)] = words
        gathered = self._all_gather(padded)
        return [pickle.loads(row.tobytes()[:length]) for row, length in zip(gathered, lengths.tolist(), strict=True)]

    def broadcast_object(self, value: T, name: str) -> T:
        return self.allgather_object(value if self.plan.rank == 0 else None, name)[0]

    def allreduce_sum(self, values: np.ndarray, name: str) -> np.ndarray:
        import tensorflow as tf

        tensor = tf.constant(values)
        return self._in_replica(lambda context: context.all_reduce(tf.distribute.ReduceOp.SUM, tensor)).numpy()

    # ------------------------------------------------------------------------------------- training
    def scope(self):
        return self.strategy.scope()

    def distributed_optimizer(self, optimizer: Any, *, fp16_allreduce: bool) -> Any:
        return optimizer  # the strategy all-reduces the gradients in apply_gradients

    def fit_callbacks(self) -> list[Any]:
        return []  # Keras aggregates the metrics over workers itself

    def dataset(self, make: Callable[[], Any]) -> Any:
        # The dataset is this rank's shard already (the workloads shard by rank): no auto-sharding, no re-batching.
        return self.strategy.distribute_datasets_from_function(lambda _context: make())

    def _local(self, variable: Any) -> Any:
        return self.strategy.experimental_local_results(variable)[0]

    def broadcast_variables(self, variables: Iterable[Any]) -> None:
        import tensorflow as tf

        local = [self._local(variable) for variable in variables]
        if not local:
            return
        root = self.plan.rank == 0
        payload = [_as_integers(v.value()) if root else tf.zeros_like(_as_integers(v.value())) for v in local]
        summed = self._in_replica(lambda context: context.all_reduce(tf.distribute.ReduceOp.SUM, payload))
        for variable, value in zip(local, summed, strict=True):
            variable.assign(_from_integers(value, variable.dtype))

    def average_non_trainable(self, model: Any) -> None:
        import tensorflow as tf

        local = [self._local(v) for v in model.non_trainable_variables if v.dtype.is_floating]
        if not local:
            return
        values = [v.value() for v in local]
        averaged = self._in_replica(lambda context: context.all_reduce(tf.distribute.ReduceOp.MEAN, values))
        for variable, value in zip(local, averaged, strict=True):
            variable.assign(value)

    def local_value(self, variable: Any) -> np.ndarray:
        return self._local(variable).numpy()

    def plain_model(self, model: Any, build: Callable[[], Any]) -> Any:
        from hpcai_tf.train.checkpoint import assign_by_name

        values = {variable.name: self.local_value(variable) for variable in model.variables}
        plain = build()
        assign_by_name(plain.variables, values, "the trained model", "model")
        return plain

    def lost_worker(self, error: BaseException) -> str | None:
        """One line for a lost worker; "" (say nothing) under mpirun when the peer's process is gone: mpirun ends
        the job and names the rank that died (the ``--ranks`` parent in one line), so the survivors stay quiet."""
        import tensorflow as tf

        lost = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError)
        if not isinstance(error, lost):
            return None
        text = getattr(error, "message", str(error))
        gone = ("connection reset", "connection refused", "failed to connect", "socket closed")
        if self.plan.launcher.startswith("mpirun") and any(word in text.lower() for word in gone):
            return ""
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        tasks = sorted({line for line in lines if line.startswith("/job:worker/")})
        if tasks:
            workers = ", ".join(task.rsplit("task:", 1)[-1] for task in tasks)
            return (
                f"--backend mwms: worker {workers} of {self.plan.size} stopped (no heartbeats); the job ends on "
                f"worker {self.plan.rank}"
            )
        telling = ("timed out", "timeout", "aborted by", "failed to connect", "unavailable", "deadline")
        reason = next((line for line in lines if any(word in line.lower() for word in telling)), type(error).__name__)
        reason = reason.split("aborted by:", 1)[-1].strip()
        return f"--backend mwms: a collective failed on worker {self.plan.rank} ({reason[:160]}); the job ends"

    def settings(self) -> dict[str, Any]:
        config = self.plan.config
        return {
            "launcher": self.plan.launcher,
            "workers": config["cluster"]["worker"] if config else None,
            "collective_timeout_s": self.strategy.extended._communication_options.timeout_seconds,
            "collective_implementation": self.strategy.extended._communication_options.implementation.name,
        }


def init_mwms(*, deterministic: bool, seed: int, collective_timeout: float) -> Ranks:
    """The strategy for this worker (``TF_CONFIG`` planned before), after its threads and GPU are set."""
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # also its note that eager collectives are slow: the kit's are few
    plan = current_plan(os.environ)
    set_threads_and_gpu(plan.local_rank, plan.local_size)
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=collective_timeout or None)
    strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    if strategy.num_replicas_in_sync != plan.size:
        raise KitError(
            f"--backend mwms: the strategy has {strategy.num_replicas_in_sync} replicas for {plan.size} workers; "
            "expected one device per worker"
        )
    seed_everything(seed, deterministic=deterministic)
    backend = MwmsBackend(strategy, plan)
    return Ranks(plan.rank, plan.size, plan.local_rank, plan.local_size, backend)
