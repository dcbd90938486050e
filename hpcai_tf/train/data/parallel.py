"""Share independent chunks of a data generation between processes on this node or between MPI ranks.

Each chunk writes its own file atomically, so an interrupted generation resumes by skipping finished chunks.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any


def mpi_world() -> tuple[int, int, Callable[[], None]]:
    """(rank, size, barrier) of the MPI job this process runs in, or (0, 1, no-op) outside one.

    mpi4py is imported only when a launcher started several tasks, so a plain run does not initialise MPI.
    """
    if int(os.environ.get("OMPI_COMM_WORLD_SIZE", os.environ.get("PMI_SIZE", "1"))) <= 1:
        return 0, 1, lambda: None
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    return comm.Get_rank(), comm.Get_size(), comm.Barrier


def my_chunks(chunks: Sequence[int], rank: int, size: int) -> list[int]:
    """The chunks rank ``rank`` of ``size`` generates: every size-th one."""
    return [chunk for position, chunk in enumerate(chunks) if position % size == rank]


def run_chunks(job: Callable[[Any], Any], arguments: Iterable[Any], workers: int) -> list[Any]:
    """Run ``job`` over ``arguments`` in ``workers`` spawned processes (no forked TensorFlow state)."""
    arguments = list(arguments)
    if workers <= 1 or len(arguments) <= 1:
        return [job(argument) for argument in arguments]
    context = multiprocessing.get_context("spawn")
    with context.Pool(min(workers, len(arguments))) as pool:
        return list(pool.imap_unordered(job, arguments))


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)
