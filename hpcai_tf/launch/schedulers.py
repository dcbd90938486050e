"""What the kit knows about each batch system, one record per scheduler kind (the catalog's ``scheduler.kind``).

Job-script planning, submission and job state read these records and nothing else about a scheduler; a new
kind is a new :class:`Scheduler` passed to :func:`register_scheduler` and a ``launch/<kind>.sh.j2`` template
(which holds the text of its directives). The registry follows ReFrame's habit of registering each scheduler
backend under its name, once (its ``register_scheduler``, https://github.com/reframe-hpc/reframe).

Slurm: ``sbatch`` (or a site wrapper such as NCSA's ``swbatch``) takes the script as a file argument and prints
``Submitted batch job ID``; ``scontrol show job -o ID`` prints one line of ``Key=Value`` words; ``--time`` reads
``H:MM:SS`` (``H:MM`` would be minutes:seconds). LSF: ``bsub`` reads the ``#BSUB`` lines only from standard
input (``bsub < script``) and prints ``Job <ID> is submitted ...``; ``bjobs -noheader -o "stat exit_code" ID``
prints the state and the exit code (``-`` for none); ``-W`` reads ``H:MM``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hpcai_tf.errors import KitError


@dataclass(frozen=True)
class Scheduler:
    """One batch system: how a job script speaks to it, how it is submitted, and how its jobs are followed."""

    kind: str
    """The catalog's ``scheduler.kind``."""
    directive: str
    """Prefix of the scheduler's lines at the top of a job script (their text is in :attr:`template`)."""
    launchers: tuple[str, ...]
    """Launchers that can start ranks in its jobs (the catalog's ``scheduler.launcher`` is the default)."""
    job_id_variable: str
    """Environment variable holding the job's id inside the job."""
    submit_dir_variable: str
    """Environment variable holding the directory the job was submitted from."""
    script_on_stdin: bool
    """Whether the submit command reads the script from standard input rather than from a file argument."""
    job_id_pattern: re.Pattern[str]
    """Finds the id of a submitted job (group 1) in the submit command's output."""
    query: tuple[str, ...]
    """The command (followed by the job id) that prints a job's state."""
    end_states: frozenset[str]
    """States after which a job never runs again (a requeued job is pending, not ended)."""
    success_state: str
    """The end state of a job whose script exited 0."""
    time_format: str
    """The wall time as its time-limit directive reads it, from ``hours`` and ``minutes``."""

    @property
    def template(self) -> str:
        """The job-script template in ``launch/``."""
        return f"{self.kind}.sh.j2"

    def wall_time(self, minutes: int) -> str:
        """``minutes`` of wall time in this scheduler's format."""
        hours, mins = divmod(minutes, 60)
        return self.time_format.format(hours=hours, minutes=mins)


SCHEDULERS: dict[str, Scheduler] = {}
"""Every registered scheduler kind, by name."""


def register_scheduler(scheduler: Scheduler) -> Scheduler:
    """Add ``scheduler`` to :data:`SCHEDULERS`; a kind is registered once."""
    if scheduler.kind in SCHEDULERS:
        raise ValueError(f"scheduler kind {scheduler.kind!r} is already registered")
    SCHEDULERS[scheduler.kind] = scheduler
    return scheduler


def scheduler_for(kind: str) -> Scheduler:
    """The record of scheduler kind ``kind`` (a site's ``scheduler.kind``)."""
    try:
        return SCHEDULERS[kind]
    except KeyError:
        raise KitError(f"scheduler.kind: expected one of {', '.join(SCHEDULERS)}, got {kind!r}") from None


SLURM = register_scheduler(
    Scheduler(
        kind="slurm",
        directive="#SBATCH",
        launchers=("mpirun", "srun"),
        job_id_variable="SLURM_JOB_ID",
        submit_dir_variable="SLURM_SUBMIT_DIR",
        script_on_stdin=False,
        job_id_pattern=re.compile(r"Submitted batch job (\d+)"),
        query=("scontrol", "show", "job", "-o"),
        end_states=frozenset(
            {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}
        ),
        success_state="COMPLETED",
        time_format="{hours}:{minutes:02d}:00",
    )
)
LSF = register_scheduler(
    Scheduler(
        kind="lsf",
        directive="#BSUB",
        launchers=("jsrun",),
        job_id_variable="LSB_JOBID",
        submit_dir_variable="LS_SUBCWD",
        script_on_stdin=True,
        job_id_pattern=re.compile(r"Job <(\d+)> is submitted"),
        query=("bjobs", "-noheader", "-o", "stat exit_code"),
        end_states=frozenset({"DONE", "EXIT"}),
        success_state="DONE",
        time_format="{hours}:{minutes:02d}",
    )
)
