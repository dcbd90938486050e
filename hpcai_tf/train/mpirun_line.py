"""The kit's ``mpirun`` command line and the Open MPI settings of its runs, with one rule for ``--oversubscribe``.

Every ``mpirun`` of the kit is built here: ``hpcai train --ranks N``, the Slurm job script's ``mpirun`` launcher,
the 2-rank checks of ``hpcai verify`` and the benchmarks. A pure module (no TensorFlow, no host side), so the
training package inside images, the job-script planner and the image checks may all import it.

The line is ``mpirun -np N --bind-to none --map-by slot [-q] [--oversubscribe] [-x NAME ...]``: ranks are not
pinned (each sets its own thread counts), and slots are filled in order. The rule: ``--oversubscribe`` only for
more ranks than this process's cores outside a batch allocation. Inside one, Open MPI counts the allocation's
slots, and more ranks than those is an error of the request, not something to paper over.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

ALLOCATION_VARIABLES = ("SLURM_JOB_ID", "LSB_JOBID", "PBS_JOBID")
"""Set in every batch job (Slurm, LSF, PBS): their presence means mpirun runs inside an allocation."""
OPEN_MPI_SHARED_NODE = {"OMPI_MCA_mpi_yield_when_idle": "1"}
"""Ranks yield when idle: busy-waiting, 2 ranks on 2 cores run at half speed."""
OPEN_MPI_AS_ROOT = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
"""Lets mpirun run as root (a container's default user)."""
OPEN_MPI_IN_CONTAINER = {"OMPI_MCA_btl_vader_single_copy_mechanism": "none"}
"""Shared-memory transport without ptrace/CMA, which a container does not allow."""


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def in_allocation(env: Mapping[str, str]) -> bool:
    """Whether ``env`` is the environment of a batch job."""
    return any(name in env for name in ALLOCATION_VARIABLES)


def oversubscribes(ranks: int, cores: int, allocated: bool) -> bool:
    """The one rule: ``--oversubscribe`` only for more ranks than cores, and never inside an allocation."""
    return ranks > cores and not allocated


@dataclass(frozen=True)
class MpirunLine:
    """An ``mpirun`` command line without its program: the placement of the ranks, then the forwarded variables."""

    placement: tuple[str, ...]
    """``mpirun -np N --bind-to none --map-by slot [-q] [--oversubscribe]``."""
    forwarded: tuple[str, ...]
    """``-x NAME`` for each variable passed to the ranks on other nodes."""

    def argv(self, program: Sequence[str]) -> list[str]:
        """The whole command, starting ``program`` on every rank."""
        return [*self.placement, *self.forwarded, *program]


def mpirun_line(
    ranks: int,
    *,
    allocated: bool,
    cores: int | None = None,
    forward: Sequence[str] = (),
    quiet: bool = False,
    mpirun: str = "mpirun",
) -> MpirunLine:
    """The ``mpirun`` line for ``ranks`` ranks; ``cores`` (default: this process's) count outside an allocation."""
    placement = [mpirun, "-np", str(ranks), "--bind-to", "none", "--map-by", "slot"]
    if quiet:
        placement.append("-q")
    if oversubscribes(ranks, available_cores() if cores is None else cores, allocated):
        placement.append("--oversubscribe")
    forwarded = [word for name in forward for word in ("-x", name)]
    return MpirunLine(tuple(placement), tuple(forwarded))
