"""Where a run writes: ``runs/<workload>-<timestamp>`` by default; ``--resume`` without ``--run-dir`` picks
the newest unfinished run of the workload that has a checkpoint."""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from hpcai_tf.errors import KitError
from hpcai_tf.train.checkpoint import CHECKPOINT_FILE
from hpcai_tf.train.metrics_log import METRICS_FILE, read_records

RUNS_ROOT = Path("runs")


def _finished(run_dir: Path) -> bool:
    metrics = run_dir / METRICS_FILE
    if not metrics.exists():
        return False
    records = read_records(metrics)
    return bool(records) and records[-1]["type"] == "final"


def latest_unfinished_run(workload: str, root: Path = RUNS_ROOT) -> Path | None:
    candidates = [
        path for path in root.glob(f"{workload}-*") if (path / CHECKPOINT_FILE).exists() and not _finished(path)
    ]
    return max(candidates, key=lambda p: (p / CHECKPOINT_FILE).stat().st_mtime) if candidates else None


def new_run_dir(workload: str, root: Path = RUNS_ROOT) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = root / f"{workload}-{stamp}"
    suffix = 2
    while path.exists():
        path = root / f"{workload}-{stamp}-{suffix}"
        suffix += 1
    return path


def plan_run_dir(workload: str, requested: str | None, resume: bool) -> Path:
    """The run directory to use (not created yet); a directory that already holds a run needs --resume."""
    if requested:
        path = Path(requested)
    elif resume:
        path = latest_unfinished_run(workload) or new_run_dir(workload)
    else:
        path = new_run_dir(workload)
    if path.exists() and not path.is_dir():
        raise KitError(f"--run-dir {path}: exists and is not a directory")
    if not resume and (path / METRICS_FILE).exists():
        raise KitError(f"{path}: already holds a run; pass --resume to continue it, or choose another --run-dir")
    return path


def make_run_dir(path: Path) -> Path:
    """Create ``path`` (and its parents); its absolute form."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise KitError(f"--run-dir {path}: cannot create it ({err.strerror})") from None
    return path.absolute()


def choose_run_dir(workload: str, requested: str | None, resume: bool) -> Path:
    """The run directory (created); a directory that already holds a run needs --resume."""
    return make_run_dir(plan_run_dir(workload, requested, resume))


@dataclass(frozen=True)
class RunDirBefore:
    """What was at a run directory before this run made it: its entries, or the topmost directory it created."""

    entries: frozenset[str]
    created: Path | None


def before_run_dir(path: Path) -> RunDirBefore:
    """Note, before :func:`make_run_dir`, what :func:`abandon_run_dir` must leave in place."""
    top = None
    current = path.absolute()
    while not current.exists() and current != current.parent:
        top, current = current, current.parent
    return RunDirBefore(frozenset(os.listdir(path)) if path.is_dir() else frozenset(), top)


def abandon_run_dir(path: Path, before: RunDirBefore) -> None:
    """Remove what a run that failed before its first epoch left: the directories it created, or else the
    entries it added (lock file, metrics, TensorBoard logs); the user asked for a run, not for these."""
    if before.created is not None:
        shutil.rmtree(before.created, ignore_errors=True)
        return
    for name in set(os.listdir(path)) - before.entries:
        entry = path / name
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


LOCK_FILE = ".hpcai-rank0.lock"


def hold_run_dir(path: Path) -> int:
    """Lock ``path`` for this process (rank 0) until it exits; a second rank 0 there is a one-line error.

    Two rank-0 processes in one run directory mean the launcher's variables did not reach the tasks (e.g.
    ``apptainer exec --cleanenv`` strips OMPI_*/PMIX_*), so each task started as a lone 1-rank job.
    """
    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise KitError(
            f"{path}: in use by {holder}; two rank-0 processes in one run directory: the launcher's variables "
            "did not reach this task (e.g. `apptainer exec --cleanenv`), so each task started as a lone rank 0"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"hpcai train pid {os.getpid()} on {socket.gethostname()}".encode())
    return fd  # left open: the lock lasts as long as the process
