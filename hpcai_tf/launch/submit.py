"""Submit a rendered job script with the site's submit command (``sbatch``, ``swbatch``, ``bsub``) and read its id.

Whether the command reads the script from standard input, and how it reports the job's id, is the scheduler's
record (:mod:`hpcai_tf.launch.schedulers`); a script without a file goes to standard input on any scheduler. The
submit command inherits the environment, so ``sbatch`` finds a test cluster through ``SLURM_CONF``.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from hpcai_tf.catalog import Site
from hpcai_tf.errors import KitError
from hpcai_tf.launch.schedulers import scheduler_for


def submit_command(site: Site, script: Path | None) -> tuple[list[str], bool]:
    """The argv that submits ``script`` (None: the text goes to standard input) and whether stdin carries it."""
    submit = shutil.which(site.scheduler.submit)
    if submit is None:
        raise KitError(f"--submit: site {site.id} submits with {site.scheduler.submit!r}, which is not on PATH")
    if scheduler_for(site.scheduler.kind).script_on_stdin or script is None:
        return [submit], True
    return [submit, str(script)], False


def submit_job_script(
    site: Site,
    text: str,
    script: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> str:
    """Submit the job script (the file ``script`` when given, else ``text`` on stdin) from ``cwd``; return its id."""
    argv, on_stdin = submit_command(site, script)
    result = subprocess.run(
        argv,
        input=text if on_stdin else None,
        capture_output=True,
        text=True,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        check=False,
    )
    if result.returncode != 0:
        reason = (result.stderr.strip() or result.stdout.strip() or f"exit status {result.returncode}").splitlines()
        raise KitError(f"--submit: {site.scheduler.submit} refused the job: {reason[-1]}")
    match = scheduler_for(site.scheduler.kind).job_id_pattern.search(result.stdout)
    if not match:
        raise KitError(f"--submit: no job id in the output of {site.scheduler.submit}: {result.stdout.strip()!r}")
    return match[1]
