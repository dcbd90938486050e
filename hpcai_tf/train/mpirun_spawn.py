"""``hpcai train W --ranks N``: start ``mpirun -np N`` on this node, re-invoking the same command per rank.

The environment follows STACK.md: Open MPI yields when idle (else 2 ranks on 2 cores run at half speed), root
is allowed when running as root, ``--oversubscribe`` only for more ranks than cores outside an allocation. A
SIGUSR1 or SIGTERM sent to this process becomes a SIGUSR1 for the ranks (a graceful preemption: mpirun
forwards SIGUSR1, while a SIGTERM makes it kill the job); a second SIGTERM is passed on as is.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence

from hpcai_tf.errors import KitError

# Variables passed to remote ranks with ``-x`` (local ranks inherit the whole environment anyway).
FORWARDED_PREFIXES = ("HOROVOD_", "NCCL_", "TF_", "HPCAI_", "OMP_", "KMP_", "CUDA_", "PYTHON")
FORWARDED_NAMES = ("PATH", "LD_LIBRARY_PATH", "VIRTUAL_ENV", "HOME")
ALLOCATION_VARIABLES = ("SLURM_JOB_ID", "LSB_JOBID", "PBS_JOBID")


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def mpirun_environment(base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """mpirun's environment: ``base`` plus ``extra`` plus what every run on a shared node needs."""
    env = dict(base)
    env.update(extra)
    env.setdefault("OMPI_MCA_mpi_yield_when_idle", "1")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    return env


def mpirun_command(
    ranks: int,
    rank_argv: Sequence[str],
    env: Mapping[str, str],
    *,
    mpirun: str = "mpirun",
    cores: int | None = None,
) -> list[str]:
    """``mpirun -np N --bind-to none --map-by slot [--oversubscribe] -x ... <rank_argv>``."""
    cores = available_cores() if cores is None else cores
    command = [mpirun, "-np", str(ranks), "--bind-to", "none", "--map-by", "slot", "-q"]
    in_allocation = any(name in env for name in ALLOCATION_VARIABLES)
    if ranks > cores and not in_allocation:
        command.append("--oversubscribe")
    for name in sorted(env):
        if name in FORWARDED_NAMES or name.startswith(FORWARDED_PREFIXES):
            command += ["-x", name]
    return [*command, *rank_argv]


def find_mpirun(env: Mapping[str, str]) -> str:
    """``$HPCAI_MPIRUN`` or ``mpirun`` on PATH; a KitError if neither exists."""
    name = env.get("HPCAI_MPIRUN", "mpirun")
    path = shutil.which(name, path=env.get("PATH"))
    if path is None:
        raise KitError(f"--ranks needs '{name}' on PATH (or HPCAI_MPIRUN set to an mpirun); none found")
    return path


def run_mpirun(command: Sequence[str], env: Mapping[str, str]) -> int:
    """Run mpirun, forwarding preemption signals as SIGUSR1; return its exit status (75 when preempted)."""
    process = subprocess.Popen(list(command), env=dict(env))
    terms = 0

    def forward(signum: int, _frame: object) -> None:
        nonlocal terms
        if signum == signal.SIGTERM:
            terms += 1
        process.send_signal(signal.SIGUSR1 if terms <= 1 else signal.SIGTERM)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGUSR1, signal.SIGTERM)}
    try:
        while True:
            try:
                status = process.wait()
                break
            except KeyboardInterrupt:
                process.send_signal(signal.SIGINT)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return status if status >= 0 else 128 - status


def rank_entry_argv() -> list[str]:
    """How each rank starts the kit: this Python running the ``hpcai_tf`` package."""
    return [sys.executable, "-m", "hpcai_tf"]
