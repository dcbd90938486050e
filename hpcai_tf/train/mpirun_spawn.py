"""``hpcai train W --ranks N``: start ``mpirun -np N`` on this node, re-invoking the same command per rank.

The command line and its ``--oversubscribe`` rule are :mod:`hpcai_tf.train.mpirun_line`'s. Open MPI yields when
idle (else 2 ranks on 2 cores run at half speed) and root is allowed when running as root. A SIGUSR1 or SIGTERM
sent to this process becomes a SIGUSR1 for the ranks (a graceful preemption: mpirun forwards SIGUSR1, while a
SIGTERM makes it kill the job); a second SIGTERM is passed on as is.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence

from hpcai_tf.errors import KitError
from hpcai_tf.train.mpirun_line import OPEN_MPI_AS_ROOT, OPEN_MPI_SHARED_NODE, in_allocation, mpirun_line

# Variables passed to remote ranks with ``-x`` (local ranks inherit the whole environment anyway).
FORWARDED_PREFIXES = ("HOROVOD_", "NCCL_", "TF_", "HPCAI_", "OMP_", "KMP_", "CUDA_", "PYTHON")
FORWARDED_NAMES = ("PATH", "LD_LIBRARY_PATH", "VIRTUAL_ENV", "HOME")


def mpirun_environment(base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """mpirun's environment: ``base`` plus ``extra`` plus what every run on a shared node needs (unless set)."""
    env = dict(base)
    env.update(extra)
    defaults = dict(OPEN_MPI_SHARED_NODE)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        defaults.update(OPEN_MPI_AS_ROOT)
    for name, value in defaults.items():
        env.setdefault(name, value)
    return env


def mpirun_command(
    ranks: int,
    rank_argv: Sequence[str],
    env: Mapping[str, str],
    *,
    mpirun: str = "mpirun",
    cores: int | None = None,
) -> list[str]:
    """The quiet :func:`~hpcai_tf.train.mpirun_line.mpirun_line` for ``env``, forwarding the kit's variables."""
    forward = [name for name in sorted(env) if name in FORWARDED_NAMES or name.startswith(FORWARDED_PREFIXES)]
    line = mpirun_line(ranks, allocated=in_allocation(env), cores=cores, forward=forward, quiet=True, mpirun=mpirun)
    return line.argv(rank_argv)


def find_mpirun(env: Mapping[str, str]) -> str:
    """``$HPCAI_MPIRUN`` or ``mpirun`` on PATH; a KitError if neither exists."""
    name = env.get("HPCAI_MPIRUN", "mpirun")
    path = shutil.which(name, path=env.get("PATH"))
    if path is None:
        raise KitError(f"--ranks needs '{name}' on PATH (or HPCAI_MPIRUN set to an mpirun); none found")
    return path


def run_mpirun(command: Sequence[str], env: Mapping[str, str]) -> int:
    """Run mpirun, forwarding preemption signals as SIGUSR1; its exit status (``EXIT_PREEMPTED`` when preempted)."""
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
