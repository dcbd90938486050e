"""One rank's place in the job and the collectives over it, whichever backend trains (Horovod or MWMS).

:class:`Ranks` is what the loop, the workloads and the checkpoints use: rank, size, local rank and size, and the
collectives (broadcast and all-gather of Python objects, a sum of float64 arrays) of its :class:`Backend`. Without a
backend (``hpcai evaluate``, unit tests) it is a single process and every collective is the identity. The backends
live in :mod:`hpcai_tf.train.backend_horovod` and :mod:`hpcai_tf.train.backend_mwms`; :func:`init_ranks` starts the
chosen one. What both need before a model is built (threads, GPU, seeds) is here.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from hpcai_tf.errors import KitError
from hpcai_tf.train.mpirun_line import available_cores

T = TypeVar("T")


class AgreedError(KitError):
    """A KitError that every rank raises together; only rank 0 prints it, the others exit quietly."""


class Backend(Protocol):
    """What the loop asks of a data-parallel backend, beyond the rank numbers. Collectives are called by every
    rank in the same order; ``name`` labels them (Horovod needs it)."""

    name: str

    def broadcast_object(self, value: T, name: str) -> T: ...

    def allgather_object(self, value: T, name: str) -> list[T]: ...

    def allreduce_sum(self, values: np.ndarray, name: str) -> np.ndarray: ...

    def scope(self) -> AbstractContextManager[Any]:
        """Where models and optimizers are created."""
        ...

    def distributed_optimizer(self, optimizer: Any, *, fp16_allreduce: bool) -> Any:
        """The optimizer that averages gradients over ranks."""
        ...

    def fit_callbacks(self) -> list[Any]:
        """Keras callbacks ``model.fit`` needs (Horovod: the metric average)."""
        ...

    def dataset(self, make: Callable[[], Any]) -> Any:
        """What ``model.fit``/``evaluate`` take for this rank's dataset ``make()`` (already sharded by rank)."""
        ...

    def broadcast_variables(self, variables: Iterable[Any]) -> None:
        """Rank 0's values of ``variables`` on every rank, bitwise."""
        ...

    def average_non_trainable(self, model: Any) -> None:
        """Non-trainable float variables (BatchNorm statistics) averaged over ranks, in place."""
        ...

    def local_value(self, variable: Any) -> np.ndarray:
        """This rank's value of ``variable``, read without a collective."""
        ...

    def plain_model(self, model: Any, build: Callable[[], Any]) -> Any:
        """A model for evaluation on this rank's data alone (``model`` itself, or a copy ``build()`` outside the
        backend's scope with its values)."""
        ...

    def lost_worker(self, error: BaseException) -> str | None:
        """The one-line message when ``error`` means another worker is gone ("" when the launcher reports it),
        else None."""
        ...

    def settings(self) -> dict[str, Any]:
        """What the provenance record says of the backend."""
        ...


@dataclass
class Ranks:
    """This process's place in the job and the collectives over it (``hvd`` None: a single process)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    backend: Backend | None = None

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None and self.size > 1

    def broadcast_object(self, value: T, name: str) -> T:
        return self.backend.broadcast_object(value, name) if self.distributed else value  # type: ignore[union-attr]

    def allgather_object(self, value: T, name: str) -> list[T]:
        return self.backend.allgather_object(value, name) if self.distributed else [value]  # type: ignore[union-attr]

    def allreduce_sum(self, values: np.ndarray, name: str) -> np.ndarray:
        """Elementwise sum over ranks of a float64 array."""
        values = np.asarray(values, dtype=np.float64)
        if not self.distributed:
            return values
        return np.asarray(self.backend.allreduce_sum(values, name), dtype=np.float64)  # type: ignore[union-attr]

    def average_non_trainable(self, model: Any) -> None:
        """Average the model's non-trainable float variables (BatchNorm moving statistics) over ranks, in place.

        Each rank normalises its own data, so the moving statistics drift apart; averaging them makes every rank
        hold the same model before a checkpoint or an evaluation (the backend does it)."""
        if self.distributed:
            self.backend.average_non_trainable(model)  # type: ignore[union-attr]

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


_CURRENT: list[Ranks] = []


def current_ranks() -> Ranks | None:
    """The Ranks :func:`init_ranks` started in this process, if any."""
    return _CURRENT[-1] if _CURRENT else None


def init_ranks(
    backend: str, *, deterministic: bool, timeline: str | None, seed: int, collective_timeout: float
) -> Ranks:
    """Start ``backend`` (horovod or mwms) on this rank, with its threads, GPU and seeds set."""
    if backend == "mwms":
        from hpcai_tf.train.backend_mwms import init_mwms

        ranks = init_mwms(deterministic=deterministic, seed=seed, collective_timeout=collective_timeout)
    else:
        from hpcai_tf.train.backend_horovod import init_horovod

        ranks = init_horovod(deterministic=deterministic, timeline=timeline, seed=seed)
    _CURRENT.append(ranks)
    return ranks


def set_threads_and_gpu(local_rank: int, local_size: int) -> None:
    """Before TensorFlow's runtime starts: this rank's share of the node's cores (:func:`thread_counts`) and, on GPU
    nodes, one GPU by local rank."""
    import tensorflow as tf

    intra, inter = thread_counts(available_cores(), local_size, os.environ)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    except RuntimeError:  # the TensorFlow runtime was already initialised (e.g. in tests)
        pass
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    if gpus:
        tf.config.set_visible_devices(gpus[local_rank % len(gpus)], "GPU")


def seed_everything(seed: int, *, deterministic: bool) -> None:
    """Seed Python, NumPy and TensorFlow; with ``deterministic`` also make TensorFlow ops deterministic."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def hostname() -> str:
    return socket.gethostname()
