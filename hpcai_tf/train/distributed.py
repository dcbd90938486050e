"""Horovod for one rank: environment before ``hvd.init``, threads, determinism, the loop's collectives.

:class:`Ranks` wraps Horovod's collectives so that the rest of the package can also run as a single process
without Horovod (``hpcai evaluate``, unit tests): there every collective is the identity.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from hpcai_tf.errors import KitError
from hpcai_tf.train.launcher_env import detect_launcher, hybrid_mpi_mismatch
from hpcai_tf.train.mpirun_line import available_cores

T = TypeVar("T")


class AgreedError(KitError):
    """A KitError that every rank raises together; only rank 0 prints it, the others exit quietly."""


@dataclass
class Ranks:
    """This process's place in the job and the collectives over it (``hvd`` None: a single process)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    hvd: Any = None

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def broadcast_object(self, value: T, name: str) -> T:
        if self.hvd is None or self.size == 1:
            return value
        return self.hvd.broadcast_object(value, root_rank=0, name=name)

    def allgather_object(self, value: T, name: str) -> list[T]:
        if self.hvd is None or self.size == 1:
            return [value]
        return self.hvd.allgather_object(value, name=name)

    def allreduce_sum(self, values: np.ndarray, name: str) -> np.ndarray:
        """Elementwise sum over ranks of a float64 array."""
        values = np.asarray(values, dtype=np.float64)
        if self.hvd is None or self.size == 1:
            return values
        import tensorflow as tf

        summed = self.hvd.allreduce(tf.constant(values), op=self.hvd.Sum, name=name)
        return np.asarray(summed.numpy(), dtype=np.float64)

    def any(self, flag: bool, name: str) -> bool:
        """True on every rank if ``flag`` is true on any rank (a tiny allreduce)."""
        return bool(self.allreduce_sum(np.array([1.0 if flag else 0.0]), name)[0] > 0)

    def barrier(self, name: str) -> None:
        self.allreduce_sum(np.zeros(1), name)

    def agree(self, action: Callable[[], T], name: str) -> T:
        """Run ``action`` on every rank; a KitError on any rank becomes an AgreedError on every rank."""
        error = None
        result = None
        try:
            result = action()
        except AgreedError:
            raise
        except KitError as err:
            error = str(err)
        errors = self.allgather_object(error, name=name)
        failed = [(rank, message) for rank, message in enumerate(errors) if message]
        if failed:
            rank, message = failed[0]
            same_everywhere = len(failed) == self.size and len({m for _, m in failed}) == 1
            raise AgreedError(message if same_everywhere or self.size == 1 else f"rank {rank}: {message}")
        return result  # type: ignore[return-value]

    def on_root(self, action: Callable[[], T], name: str) -> T:
        """Run ``action`` on rank 0 only and broadcast its result (or its KitError) to every rank."""
        outcome: dict[str, Any] = {}
        if self.is_root:
            try:
                outcome = {"value": action()}
            except KitError as err:
                outcome = {"error": str(err)}
        outcome = self.broadcast_object(outcome, name=name)
        if "error" in outcome:
            raise AgreedError(outcome["error"])
        return outcome["value"]


def prepare_horovod_environment(*, deterministic: bool, timeline: str | None) -> None:
    """Environment Horovod reads at ``hvd.init``: no tensor fusion for bitwise runs, the timeline file."""
    if deterministic:
        os.environ["HOROVOD_FUSION_THRESHOLD"] = "0"
    if timeline:
        os.environ["HOROVOD_TIMELINE"] = os.path.abspath(timeline)


THREAD_VARIABLES = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def thread_counts(cores: int, local_ranks: int, environ: Mapping[str, str]) -> tuple[int, int]:
    """(intra-op, inter-op) threads of one rank: the node's cores shared by its ranks (inter-op at most 2),
    unless ``TF_NUM_INTRAOP_THREADS`` / ``TF_NUM_INTEROP_THREADS`` say otherwise."""
    intra = max(1, cores // max(1, local_ranks))
    counts = [intra, min(2, intra)]
    for index, name in enumerate(THREAD_VARIABLES):
        text = environ.get(name, "").strip()
        if not text:
            continue
        if not text.isdigit() or int(text) < 1:
            raise KitError(f"{name}={text!r}: expected a positive number of threads")
        counts[index] = int(text)
    return counts[0], counts[1]


def init_horovod(*, deterministic: bool, timeline: str | None, seed: int) -> Ranks:
    """``hvd.init()`` plus the checks and settings every rank needs before building a model."""
    prepare_horovod_environment(deterministic=deterministic, timeline=timeline)
    import horovod.tensorflow as hvd
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    hvd.init()
    mismatch = hybrid_mpi_mismatch(detect_launcher(), hvd.size())
    if mismatch:
        raise KitError(mismatch)
    ranks = Ranks(hvd.rank(), hvd.size(), hvd.local_rank(), hvd.local_size(), hvd)
    intra, inter = thread_counts(available_cores(), ranks.local_size, os.environ)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    except RuntimeError:  # the TensorFlow runtime was already initialised (e.g. in tests)
        pass
    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(gpu, True)
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        tf.config.set_visible_devices(gpus[ranks.local_rank % len(gpus)], "GPU")
    seed_everything(seed, deterministic=deterministic)
    return ranks


def seed_everything(seed: int, *, deterministic: bool) -> None:
    """Seed Python, NumPy and TensorFlow; with ``deterministic`` also make TensorFlow ops deterministic."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def hostname() -> str:
    return socket.gethostname()
