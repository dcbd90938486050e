"""The local site's job script, run for real: a one-node Slurm 22.05 on localhost (tests/slurm_testing.py), Open MPI 4.1.

- The smoke training of AI-GW in 2 MPI ranks ends COMPLETED with its metrics.
- Preemption: USR1 to the batch shell (as ``--signal=B:USR1@N`` would send it before the time limit) makes the
  ranks checkpoint and exit with the preempted status, the script requeues the job, and the requeued run resumes and completes.
- Injection: arguments with ``;``, ``$()`` and a newline reach ``hpcai train`` as literal arguments (under
  ``srun --mpi=pmix``, HAL's launcher).

There is no Apptainer on this machine, so the jobs run the host's ``hpcai`` (``--runtime none``); the container
line of the script is covered by the exact-text tests.
"""

from __future__ import annotations

import time

import pytest

from hpcai_tf.train.metrics_log import read_records
from hpcai_tf.train.signals import EXIT_PREEMPTED

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def submit(hpcai, cluster, cwd, *args: str) -> str:
    """`hpcai launch gw --site local --runtime none --submit ARGS` from ``cwd``; returns the job id."""
    result = hpcai("launch", "gw", "--site", "local", "--runtime", "none", "--submit", *args, env=cluster.env, cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().isdigit(), result.stdout
    return result.stdout.strip()


def job_log(cwd, job_id: str) -> str:
    path = cwd / "runs" / f"gw-{job_id}" / "job.log"
    return path.read_text(errors="replace") if path.exists() else "(no job.log)"


@pytest.mark.timeout(600)
def test_smoke_training_completes(slurm_cluster, hpcai, tmp_path):
    """`hpcai launch gw --site local --submit -- --smoke`: 2 ranks, COMPLETED, metrics written."""
    job_id = submit(hpcai, slurm_cluster, tmp_path, "--", "--smoke")
    fields = slurm_cluster.wait_end(job_id, timeout=540)
    log = job_log(tmp_path, job_id)
    assert (fields["JobState"], fields["ExitCode"]) == ("COMPLETED", "0:0"), log
    assert (fields["NumTasks"], fields["Partition"]) == ("2", slurm_cluster.local_partition)
    records = read_records(tmp_path / "runs" / f"gw-{job_id}" / "metrics.jsonl")
    types = [r["type"] for r in records]
    assert types[0] == "provenance" and types[-1] == "final" and "epoch" in types, types
    assert records[0]["ranks"] == 2
    assert (tmp_path / "runs" / f"gw-{job_id}" / "checkpoint.h5").is_file()
    assert (
        f"hpcai: job {job_id} writes its output to {tmp_path}/runs/gw-{job_id}/job.log"
        in (tmp_path / f"hpcai-gw-{job_id}.out").read_text()
    )


@pytest.mark.timeout(900)
def test_preempted_job_checkpoints_requeues_and_resumes(slurm_cluster, hpcai, tmp_path):
    """USR1 to the batch shell: checkpoint, exit EXIT_PREEMPTED, `scontrol requeue`, the same job resumes and completes."""
    script = tmp_path / "job.sh"
    job_id = submit(hpcai, slurm_cluster, tmp_path, "--out", str(script), "--", "--smoke")
    assert f"Command={script}" in slurm_cluster.run("scontrol", "show", "job", "-o", job_id).stdout
    run_dir = tmp_path / "runs" / f"gw-{job_id}"
    checkpoint = run_dir / "checkpoint.h5"
    deadline = time.monotonic() + 480
    while not checkpoint.exists():  # the first epoch's checkpoint: training is under way
        state = slurm_cluster.job(job_id).get("JobState")
        assert state in ("PENDING", "RUNNING"), (
            f"job {job_id} is {state} before its first checkpoint\n{job_log(tmp_path, job_id)}"
        )
        assert time.monotonic() < deadline, f"no checkpoint after 480 s\n{job_log(tmp_path, job_id)}"
        time.sleep(1)
    signalled = time.monotonic()
    slurm_cluster.run("scancel", "--signal=USR1", "--batch", job_id)
    slurm_cluster.wait(job_id, lambda f: f.get("Restarts") == "1", timeout=300, what="requeued")
    requeued = time.monotonic() - signalled
    fields = slurm_cluster.wait_end(job_id, timeout=540)
    log = job_log(tmp_path, job_id)
    assert (fields["JobState"], fields["ExitCode"], fields["Restarts"]) == ("COMPLETED", "0:0", "1"), log

    records = read_records(run_dir / "metrics.jsonl")
    types = [r["type"] for r in records]
    assert types.count("provenance") == 2 and types.count("preempted") == 1 and types[-1] == "final", types
    first_run, second_run = types[: types.index("preempted") + 1], types[types.index("preempted") + 1 :]
    assert first_run[0] == "provenance" and "epoch" in first_run, types
    assert second_run[0] == "provenance" and second_run[-1] == "final", types
    resumed = records[types.index("preempted") + 1]
    assert resumed["resumed_from"], resumed
    epochs = [r["epoch"] for r in records if r["type"] == "epoch"]
    assert epochs == sorted(set(epochs)), f"an epoch ran twice: {epochs}"
    assert "hpcai: USR1 received: asking the ranks to checkpoint and stop" in log
    assert f"hpcai: launcher exited with status {EXIT_PREEMPTED}" in log
    assert f"hpcai: preempted; requeueing job {job_id} to resume from its checkpoint" in log
    assert log.count(f"hpcai: job {job_id} starts on") == 2
    print(f"job {job_id}: requeued {requeued:.0f} s after the signal; {types}")


@pytest.mark.timeout(300)
def test_injection_reaches_train_as_literal_arguments(slurm_cluster, hpcai, tmp_path):
    """`;` and `$()` in a train argument's value: one literal argument of `hpcai train` in the real job, which
    refuses it as a data path; nothing is executed. (Unknown arguments are refused before submission.)"""
    marker, substituted = tmp_path / "INJECTED", tmp_path / "SUBSTITUTED"
    evil = f"; touch {marker} $(touch {substituted})"
    job_id = submit(hpcai, slurm_cluster, tmp_path, "--launcher", "srun", "--", "--smoke", "--data", evil)
    fields = slurm_cluster.wait_end(job_id, timeout=240)
    log = job_log(tmp_path, job_id)
    assert fields["JobState"] == "FAILED", log
    assert fields["ExitCode"] == "2:0", log  # hpcai train refused the data path, taken literally
    assert evil in log, log
    assert not marker.exists() and not substituted.exists()
