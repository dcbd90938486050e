"""The kit's one mpirun command line and its --oversubscribe rule, as each of its users gets it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from hpcai_tf.catalog import load_site
from hpcai_tf.image.verify import mpirun
from hpcai_tf.launch.job_script import LaunchRequest, plan_job
from hpcai_tf.train.mpirun_line import in_allocation, mpirun_line, oversubscribes
from hpcai_tf.train.mpirun_spawn import mpirun_command

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("ranks", "cores", "allocated", "expected"),
    [(2, 2, False, False), (3, 2, False, True), (3, 2, True, False), (64, 2, True, False), (1, 1, False, False)],
)
def test_oversubscribe_only_for_more_ranks_than_cores_outside_an_allocation(ranks, cores, allocated, expected):
    assert oversubscribes(ranks, cores, allocated) is expected
    assert ("--oversubscribe" in mpirun_line(ranks, cores=cores, allocated=allocated).placement) is expected


def test_an_allocation_is_a_batch_jobs_id_in_the_environment():
    assert in_allocation({"SLURM_JOB_ID": "3"}) and in_allocation({"LSB_JOBID": "3"})
    assert not in_allocation({"SLURM_NTASKS": "4", "PATH": "/bin"})


def test_the_line_of_hpcai_train_ranks():
    """Quiet, and every kit variable of the environment forwarded; more ranks than cores on a workstation."""
    env = {"PATH": "/bin", "TF_NUM_INTRAOP_THREADS": "1", "SECRET": "x"}
    assert mpirun_command(4, ["python", "-m", "hpcai_tf"], env, mpirun="/usr/bin/mpirun", cores=2) == [
        "/usr/bin/mpirun", "-np", "4", "--bind-to", "none", "--map-by", "slot", "-q", "--oversubscribe",
        "-x", "PATH", "-x", "TF_NUM_INTRAOP_THREADS", "python", "-m", "hpcai_tf",
    ]  # fmt: skip


def test_the_line_of_a_slurm_job_script_never_oversubscribes():
    """In the batch job, 8 ranks on a node whatever the cores of the machine that plans the script."""
    job = plan_job(LaunchRequest(workload="gw", site=load_site("bridges-ai"), nodes=2, image="/images/hpcai.sif"))
    assert job.command.splitlines()[0] == "mpirun -np 16 --bind-to none --map-by slot \\"


def test_the_line_of_the_image_checks():
    """Two ranks in one container: oversubscribed on a one-core host, not in a job Apptainer passes in."""
    assert mpirun(2, ["python", "x"], cores=1) == [
        "mpirun", "-np", "2", "--bind-to", "none", "--map-by", "slot", "--oversubscribe", "python", "x"
    ]  # fmt: skip
    assert "--oversubscribe" not in mpirun(2, ["python", "x"], cores=1, allocated=True)
    assert "--oversubscribe" not in mpirun(2, ["python", "x"], cores=2)


def _string_constants(path: Path) -> list[str]:
    return [n.value for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Constant) and n.value in
            ("-np", "--oversubscribe", "-bind-to", "--bind-to")]  # fmt: skip


def test_no_second_mpirun_line_is_built_in_the_kit_or_the_benchmarks():
    """Only hpcai_tf/train/mpirun_line.py spells mpirun's placement options."""
    builders = [
        path.relative_to(REPO).as_posix()
        for path in sorted([*(REPO / "hpcai_tf").rglob("*.py"), *(REPO / "bench").glob("*.py")])
        if _string_constants(path)
    ]
    assert builders == ["hpcai_tf/train/mpirun_line.py"]
