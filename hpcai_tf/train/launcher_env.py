"""What the launcher that started this process says about the job, from per-task environment variables.

Only variables that a launcher sets per task are used: ``SLURM_NTASKS`` is also set in a batch script, where
one ``hpcai train --ranks N`` process starts mpirun itself, so Slurm counts only inside a job step (srun).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class LauncherTasks:
    """A launcher's claim about this task: its name, its task count (None: unknown) and the variable."""

    launcher: str
    tasks: int | None
    variable: str


def _as_int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


SLURM_OUTSIDE_STEPS = ("batch", "extern", "4294967294", "4294967295")
"""``SLURM_STEP_ID`` of a batch script's own step and of the extern step (numerically 4294967294 and 4294967295):
not tasks of a job step."""


def in_slurm_step(env: Mapping[str, str]) -> bool:
    """Whether this process is a task of a Slurm job step (started by srun), not the batch script itself."""
    step = env.get("SLURM_STEP_ID", env.get("SLURM_STEPID", ""))
    return step not in ("", *SLURM_OUTSIDE_STEPS)


def detect_launcher(env: Mapping[str, str] | None = None) -> LauncherTasks | None:
    """The launcher this process runs under, or None for a process started by hand."""
    env = os.environ if env is None else env
    per_task_sizes = (
        ("mpirun (Open MPI)", "OMPI_COMM_WORLD_SIZE"),
        ("jsrun", "JSM_NAMESPACE_SIZE"),
        ("PMI (MPICH/Hydra, srun --mpi=pmi2)", "PMI_SIZE"),
        ("MVAPICH", "MV2_COMM_WORLD_SIZE"),
    )
    for launcher, variable in per_task_sizes:
        tasks = _as_int(env.get(variable))
        if tasks is not None:
            return LauncherTasks(launcher, tasks, variable)
    if in_slurm_step(env) and "SLURM_STEP_NUM_TASKS" in env and "SLURM_PROCID" in env:
        return LauncherTasks("srun", _as_int(env["SLURM_STEP_NUM_TASKS"]), "SLURM_STEP_NUM_TASKS")
    if "PMIX_RANK" in env:
        return LauncherTasks("PMIx launcher", None, "PMIX_RANK")
    return None


def hybrid_mpi_mismatch(claim: LauncherTasks | None, horovod_size: int) -> str | None:
    """The one-line error when a launcher started N > 1 tasks but Horovod sees another number of ranks."""
    if claim is None or claim.tasks is None or claim.tasks <= 1 or claim.tasks == horovod_size:
        return None
    if horovod_size == 1:
        return (
            f"launcher started {claim.tasks} tasks ({claim.variable}={claim.tasks}, {claim.launcher}) "
            f"but Horovod sees 1 rank: the MPI inside the image cannot talk to the host launcher "
            f"({claim.tasks} rank-0 processes); use an image MPI compatible with the host's and the same PMI "
            "(PMI2/PMIx), or bind the host MPI into the image"
        )
    return (
        f"launcher started {claim.tasks} tasks ({claim.variable}) but Horovod sees {horovod_size} ranks: "
        "the job is split into separate MPI worlds"
    )


def launcher_rank(env: Mapping[str, str] | None = None) -> int:
    """This task's rank according to the launcher (0 when started by hand), before MPI is initialised."""
    env = os.environ if env is None else env
    for variable in (
        "OMPI_COMM_WORLD_RANK",
        "JSM_NAMESPACE_RANK",
        "PMI_RANK",
        "MV2_COMM_WORLD_RANK",
        "PMIX_RANK",
    ):
        rank = _as_int(env.get(variable))
        if rank is not None:
            return rank
    if "SLURM_STEP_NUM_TASKS" in env:
        return _as_int(env.get("SLURM_PROCID")) or 0
    return 0
