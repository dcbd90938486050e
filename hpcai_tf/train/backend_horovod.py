"""``--backend horovod`` (the default): Horovod 0.28.1 over MPI, as its users expect it.

``hvd.init()`` under the launcher's MPI; the distributed optimizer averages gradients (fp16 compression on request);
rank 0's initial state is broadcast; Horovod's metric-average callback averages each epoch's metrics over ranks; the
BatchNorm statistics, which each rank keeps for its own data, are averaged before a checkpoint or an evaluation.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from typing import Any, TypeVar

import numpy as np

from hpcai_tf.errors import KitError
from hpcai_tf.train.distributed import Ranks, seed_everything, set_threads_and_gpu
from hpcai_tf.train.launcher_env import detect_launcher, hybrid_mpi_mismatch

T = TypeVar("T")


def prepare_horovod_environment(*, deterministic: bool, timeline: str | None) -> None:
    """Environment Horovod reads at ``hvd.init``: no tensor fusion for bitwise runs, the timeline file."""
    if deterministic:
        os.environ["HOROVOD_FUSION_THRESHOLD"] = "0"
    if timeline:
        os.environ["HOROVOD_TIMELINE"] = os.path.abspath(timeline)


class HorovodBackend:
    """Horovod's collectives and Keras API behind :class:`~hpcai_tf.train.distributed.Backend`."""

    name = "horovod"

    def __init__(self, hvd: Any):
        self.hvd = hvd

    def broadcast_object(self, value: T, name: str) -> T:
        return self.hvd.broadcast_object(value, root_rank=0, name=name)

    def allgather_object(self, value: T, name: str) -> list[T]:
        return self.hvd.allgather_object(value, name=name)

    def allreduce_sum(self, values: np.ndarray, name: str) -> np.ndarray:
        import tensorflow as tf

        return self.hvd.allreduce(tf.constant(values), op=self.hvd.Sum, name=name).numpy()

    def scope(self):
        return nullcontext()

    def distributed_optimizer(self, optimizer: Any, *, fp16_allreduce: bool) -> Any:
        import horovod.tensorflow.keras as hvd_keras

        compression = hvd_keras.Compression.fp16 if fp16_allreduce else hvd_keras.Compression.none
        return hvd_keras.DistributedOptimizer(optimizer, compression=compression)

    def fit_callbacks(self) -> list[Any]:
        import horovod.tensorflow.keras as hvd_keras

        return [hvd_keras.callbacks.MetricAverageCallback()]

    def dataset(self, make: Callable[[], Any]) -> Any:
        return make()

    def broadcast_variables(self, variables: Iterable[Any]) -> None:
        self.hvd.broadcast_variables(list(variables), root_rank=0)

    def average_non_trainable(self, model: Any) -> None:
        for index, variable in enumerate(model.non_trainable_variables):
            if variable.dtype.is_floating:
                averaged = self.hvd.allreduce(variable.value(), op=self.hvd.Average, name=f"hpcai.bn_average.{index}")
                variable.assign(averaged)

    def local_value(self, variable: Any) -> np.ndarray:
        return variable.numpy()

    def plain_model(self, model: Any, build: Callable[[], Any]) -> Any:
        return model

    def lost_worker(self, error: BaseException) -> str | None:
        return None  # mpirun ends the job when a rank dies

    def settings(self) -> dict[str, Any]:
        return {}


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
    backend = HorovodBackend(hvd)
    ranks = Ranks(hvd.rank(), hvd.size(), hvd.local_rank(), hvd.local_size(), backend)
    set_threads_and_gpu(ranks.local_rank, ranks.local_size)
    seed_everything(seed, deterministic=deterministic)
    return ranks
