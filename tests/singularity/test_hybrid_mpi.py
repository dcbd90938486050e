"""The hybrid MPI model for real: the host's launcher starts the ranks, each in ``apptainer exec`` of the local SIF.

- Host ``mpirun -np 2`` starts ``apptainer exec SIF hpcai train gw --smoke``: the two ranks join one Horovod job
  through the host's PMIx server and finish with identical trainable-weight digests.
- The same through ``hpcai launch gw --site local --runtime singularity --submit -- --smoke`` on the local Slurm,
  with mpirun (the site's launcher) and with ``srun --mpi=pmix`` (Slurm's PMIx server, as on HAL).
- A launcher the image's Open MPI cannot talk to (MPICH's Hydra) gives the one-line "N rank-0 processes" error
  on every rank instead of N independent trainings.
- Apptainer's ``--cleanenv`` strips the launcher's variables: each rank is a lone rank 0 again, with nothing to
  compare; the second rank 0 to lock the run directory says so in one line and the job ends.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from hpcai_tf.catalog import load_site
from hpcai_tf.train.metrics_log import read_records

pytestmark = [pytest.mark.singularity, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
HARNESS = REPO / "scripts" / "apptainer-harness.sh"
MISMATCH = "but Horovod sees 1 rank: the MPI inside the image cannot talk to the host launcher (2 rank-0 processes)"


def host_mpirun(ranks: int) -> list[str]:
    """The host's mpirun as the local site's job script calls it, with the site's environment passed on."""
    site = load_site("local")
    words = ["mpirun", "-np", str(ranks), "--bind-to", "none", "--map-by", "slot"]
    for name in site.env:
        words += ["-x", name]
    return words


def site_env(harness, **extra: str) -> dict[str, str]:
    return harness.env(**load_site("local").env, **extra)


def assert_two_ranks_agree(run_dir: Path, output: str) -> dict:
    """metrics.jsonl: ran inside the image, 2 ranks, completed, both ranks' trainable-weight digests equal."""
    records = read_records(run_dir / "metrics.jsonl")
    first, final = records[0], records[-1]
    assert first["type"] == "provenance" and first["ranks"] == 2, output
    assert first["image"] is not None and first["image"]["site"] == "local", "the ranks did not run in the image"
    assert first["mpi"].startswith("Open MPI v4.1.4"), first["mpi"]
    assert final["type"] == "final" and final["status"] == "completed", output
    digests = final["weights_digest_per_rank"]
    assert len(digests) == 2 and digests[0] == digests[1] and final["weights_agree"] is True, digests
    return final


def test_host_mpirun_starts_two_ranks_in_the_sif(harness, local_sif, sh, tmp_path):
    """`mpirun -np 2 apptainer exec SIF hpcai train gw --smoke`: one 2-rank job, equal weight digests."""
    run_dir = tmp_path / "gw"
    argv = [
        *host_mpirun(2),
        "apptainer",
        "exec",
        local_sif.path,
        "hpcai",
        "train",
        "gw",
        "--smoke",
        "--run-dir",
        run_dir,
    ]
    start = time.monotonic()
    result = sh(argv, env=site_env(harness), cwd=tmp_path, timeout=900)
    seconds = time.monotonic() - start
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "weights agree across ranks: True" in output
    final = assert_two_ranks_agree(run_dir, output)
    print(f"\nmpirun -np 2 apptainer exec: {seconds:.0f} s wall, training {final['wall_time_s']:.0f} s")


@pytest.mark.slurm
@pytest.mark.timeout(900)
@pytest.mark.parametrize("launcher", ["mpirun", "srun"])
def test_slurm_job_runs_two_ranks_in_the_sif(harness, local_sif, slurm_cluster, sh, tmp_path, launcher):
    """`hpcai launch gw --site local --runtime singularity --submit -- --smoke`: COMPLETED, equal digests.

    mpirun is the local site's launcher; srun (``--mpi=pmix``, as on HAL) has Slurm's own PMIx server meet the
    image's Open MPI.
    """
    env = {**slurm_cluster.env, "PATH": harness.env()["PATH"]}
    argv = [
        sys.executable,
        "-m",
        "hpcai_tf",
        "launch",
        "gw",
        "--site",
        "local",
        "--runtime",
        "singularity",
        "--launcher",
        launcher,
        "--image",
        local_sif.path,
        "--submit",
        "--",
        "--smoke",
    ]
    submitted = sh(argv, env=env, cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    assert job_id.isdigit(), submitted.stdout
    script = slurm_cluster.run("scontrol", "write", "batch_script", job_id, "-").stdout
    assert f"singularity exec {local_sif.path}" in script, script
    start = time.monotonic()
    fields = slurm_cluster.wait_end(job_id, timeout=840)
    seconds = time.monotonic() - start
    run_dir = tmp_path / "runs" / f"gw-{job_id}"
    log = (run_dir / "job.log").read_text(errors="replace") if (run_dir / "job.log").exists() else "(no job.log)"
    assert (fields["JobState"], fields["ExitCode"]) == ("COMPLETED", "0:0"), log[-4000:]
    final = assert_two_ranks_agree(run_dir, log)
    print(
        f"\nSlurm job {job_id} ({launcher}): {seconds:.0f} s from submission to end, "
        f"training {final['wall_time_s']:.0f} s"
    )


def test_mismatched_launcher_is_one_line_error(harness, local_sif, sh, tmp_path):
    """MPICH's Hydra starts 2 tasks of the Open MPI image: each is a lone rank 0, and each says so in one line."""
    run_dir = tmp_path / "gw"
    argv = [
        HARNESS,
        "hydra",
        "-launcher",
        "fork",
        "-n",
        "2",
        "apptainer",
        "exec",
        local_sif.path,
        "hpcai",
        "train",
        "gw",
        "--smoke",
        "--run-dir",
        run_dir,
    ]
    result = sh(argv, env=site_env(harness), cwd=tmp_path, timeout=600)
    errors = [line for line in result.stderr.splitlines() if line.startswith("hpcai: error:")]
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]
    assert len(errors) == 2, result.stderr[-3000:]
    for line in errors:
        assert "launcher started 2 tasks (PMI_SIZE=2" in line and MISMATCH in line, line
    assert not (run_dir / "metrics.jsonl").exists(), "a rank started training"


def test_stripped_environment_is_one_line_error(harness, local_sif, sh, tmp_path):
    """`apptainer exec --cleanenv` under mpirun -np 2: two lone rank-0 processes; the second stops in one line.

    --cleanenv hides OMPI_*/PMIX_* from the ranks, so the launcher check cannot fire; rank 0's lock on the run
    directory does: the second rank 0 fails on it, and mpirun ends the job before anything completes.
    """
    run_dir = tmp_path / "gw"
    argv = [
        *host_mpirun(2),
        "apptainer",
        "exec",
        "--cleanenv",
        local_sif.path,
        "hpcai",
        "train",
        "gw",
        "--smoke",
        "--run-dir",
        run_dir,
    ]
    result = sh(argv, env=site_env(harness), cwd=tmp_path, timeout=600)
    output = result.stdout + result.stderr
    errors = [line for line in output.splitlines() if line.startswith("hpcai: error:")]
    assert result.returncode != 0
    assert "Traceback" not in output, output[-3000:]
    assert len(errors) == 1, output[-3000:]
    assert f"{run_dir}: in use by hpcai train pid " in errors[0] and "two rank-0 processes" in errors[0], errors
    records = read_records(run_dir / "metrics.jsonl") if (run_dir / "metrics.jsonl").exists() else []
    assert not [r for r in records if r["type"] == "final"], "a lone rank 0 trained to the end"
