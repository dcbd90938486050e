"""The state of submitted batch jobs, and waiting for them to end, through each scheduler's query command.

The query command and the end and success states are the scheduler's record (:mod:`hpcai_tf.launch.schedulers`).
Slurm: ``JobState`` and ``ExitCode`` are read from ``scontrol``'s ``Key=Value`` words. A requeued job (a
preempted run's exit status, then ``scontrol requeue``) goes back to PENDING and is waited for again, so only an
end state ends a wait. slurmctld forgets a finished job ``MinJobAge`` seconds (300 by default) after it ends, so
poll more often than that.

LSF: ``bjobs`` prints the state (PEND, RUN, DONE, EXIT ...) and the exit code. There is no LSF on the machines this
kit is tested on: that path is tested against the text IBM documents for ``bjobs -o``, never against a running LSF.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from hpcai_tf.errors import KitError
from hpcai_tf.launch.schedulers import scheduler_for


@dataclass(frozen=True)
class JobState:
    """One reading of a job: its scheduler's state name and exit code (``0:0`` or ``-`` style, as printed)."""

    job_id: str
    state: str
    exit_code: str

    def ended(self, kind: str) -> bool:
        return self.state in scheduler_for(kind).end_states

    def succeeded(self, kind: str) -> bool:
        return self.state == scheduler_for(kind).success_state


def scontrol_fields(text: str) -> dict[str, str]:
    """``scontrol show job -o`` output as a dict of its ``Key=Value`` words (JobState, ExitCode, NumTasks ...)."""
    return dict(word.partition("=")[::2] for word in text.split())


def parse_state(kind: str, job_id: str, text: str) -> JobState:
    """A :class:`JobState` from the query command's output, or a one-line error naming the job."""
    if kind == "slurm":
        fields = scontrol_fields(text)
        if "JobState" not in fields:
            raise KitError(f"job {job_id}: no JobState in the output of scontrol: {text.strip()[:200]!r}")
        return JobState(job_id, fields["JobState"], fields.get("ExitCode", ""))
    words = text.split()
    if not words or not words[0].isupper():
        raise KitError(f"job {job_id}: no state in the output of bjobs: {text.strip()[:200]!r}")
    return JobState(job_id, words[0], words[1] if len(words) > 1 else "-")


def query_state(kind: str, job_id: str, env: Mapping[str, str] | None = None) -> JobState:
    """Ask the scheduler for a job's state once."""
    argv = list(scheduler_for(kind).query)
    if shutil.which(argv[0]) is None:
        raise KitError(f"job {job_id}: {argv[0]} is not on PATH; cannot read the job's state")
    result = subprocess.run(
        [*argv, job_id], capture_output=True, text=True, env=dict(env) if env is not None else None, check=False
    )
    if result.returncode != 0 or not result.stdout.strip():
        reason = (result.stderr.strip() or result.stdout.strip() or f"exit status {result.returncode}").splitlines()
        raise KitError(f"job {job_id}: {argv[0]} cannot tell its state: {reason[-1]}")
    return parse_state(kind, job_id, result.stdout)


def wait_for_jobs(
    kind: str,
    job_ids: Iterable[str],
    *,
    poll_s: float = 10.0,
    env: Mapping[str, str] | None = None,
    report: Callable[[JobState], None] | None = None,
) -> dict[str, JobState]:
    """Poll every job until each has reached an end state; ``report`` hears each change of state."""
    waiting = list(job_ids)
    last: dict[str, JobState] = {}
    while True:
        for job_id in list(waiting):
            state = query_state(kind, job_id, env)
            if report and (job_id not in last or last[job_id].state != state.state):
                report(state)
            last[job_id] = state
            if state.ended(kind):
                waiting.remove(job_id)
        if not waiting:
            return last
        time.sleep(poll_s)
