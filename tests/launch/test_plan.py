"""What Python decides for a job (partition, time, ranks, CPUs, GPUs) and the requests it refuses.

Refusals run the real CLI in a subprocess: exit status 2, one line on stderr naming the flag, no traceback,
and no file at ``--out``.
"""

from __future__ import annotations

import pytest

from hpcai_tf.catalog import load_site
from hpcai_tf.launch.job_script import LaunchRequest, plan_job


def plan(site_id: str, **values):
    values.setdefault("nodes", 1)
    values.setdefault("image", "/images/hpcai.sif")
    if site_id == "summit":
        values.setdefault("account", "CSC123")
    return plan_job(LaunchRequest(workload="gw", site=load_site(site_id), **values))


@pytest.mark.parametrize(
    ("nodes", "partition"),
    [(1, "gpux1"), (2, "gpux2"), (3, "gpux3"), (4, "gpux4"), (5, "gpux8"), (8, "gpux8"), (9, "gpux12"),
     (12, "gpux12"), (13, "gpux16"), (16, "gpux16")],
)  # fmt: skip
def test_hal_partition_by_job_size(nodes, partition):
    """HAL's partition follows the catalog's table of job sizes."""
    assert plan("hal", nodes=nodes).partition == partition


@pytest.mark.parametrize(
    ("nodes", "time", "scheduler_time"),
    [(45, "2:00", "2:00"), (46, "6:00", "6:00"), (92, "12:00", "12:00"), (922, "24:00", "24:00")],
)
def test_summit_bins_allow_their_time(nodes, time, scheduler_time):
    """Summit's queue bins: bigger jobs may run longer; LSF's -W reads H:MM."""
    job = plan("summit", nodes=nodes, time=time)
    assert (job.partition, job.time) == ("batch", scheduler_time)


def test_slurm_time_is_hours_minutes_seconds():
    """Slurm would read --time=2:00 as 2 minutes: the script says 2:00:00."""
    assert plan("hal", time="2:00").time == "2:00:00"
    assert plan("local", time="0:10", runtime="none").time == "0:10:00"


@pytest.mark.parametrize(
    ("site_id", "node_type", "ranks", "cpus", "gres"),
    [
        ("hal", None, 4, 40, "gpu:v100:4"),
        ("bridges-ai", None, 8, 10, "gpu:volta16:8"),
        ("bridges-ai", "dgx2", 16, 6, "gpu:volta32:16"),
        ("local", None, 2, 1, None),
    ],
)
def test_defaults_from_the_node_type(site_id, node_type, ranks, cpus, gres):
    """One rank per GPU (per core on CPU nodes), CPUs per task from the hardware threads, GPUs as GRES."""
    job = plan(site_id, node_type=node_type, runtime="none" if site_id == "local" else None)
    assert (job.ranks_per_node, job.cpus_per_task, job.gres) == (ranks, cpus, gres)


def test_fewer_ranks_get_more_cpus_and_fewer_gpus():
    job = plan("hal", ranks_per_node=2)
    assert (job.ranks_per_node, job.cpus_per_task, job.gres) == (2, 80, "gpu:v100:2")


REFUSALS = [
    (["--site", "hal", "--nodes", "0"], "--nodes: expected at least 1, got 0"),
    (["--site", "hal", "--nodes", "17"], "--nodes: site hal has 16 nodes of type ac922, got 17"),
    (["--site", "hal", "--nodes", "two"], "--nodes: expected a whole number, got 'two'"),
    (["--site", "hal", "--ranks-per-node", "5"],
     "--ranks-per-node: node type ac922 has 4 GPUs (one per rank); expected 1..4, got 5"),
    (["--site", "local", "--ranks-per-node", "3"],
     "--ranks-per-node: node type cpu has 2 cores; expected 1..2, got 3"),
    (["--site", "bridges-ai", "--node-type", "dgx2", "--nodes", "2"],
     "--nodes: site bridges-ai has 1 node of type dgx2, got 2"),
    (["--site", "bridges-ai", "--node-type", "dgx3"],
     "site bridges-ai: unknown node type 'dgx3'; expected one of: apollo6500, dgx2"),
    (["--site", "hal", "--time", "12:01", "--nodes", "4"],
     "--time: 12:01 exceeds the 12:00 limit of partition gpux4 for 4 nodes on site hal"),
    (["--site", "hal", "--time", "90"], "--time: expected a wall time H:MM greater than 0:00 (e.g. 0:30 or 12:00), got '90'"),
    (["--site", "hal", "--time", "0:00"],
     "--time: expected a wall time H:MM greater than 0:00 (e.g. 0:30 or 12:00), got '0:00'"),
    (["--site", "summit"], "--account: site summit requires an account (project) for every job"),
    (["--site", "summit", "--account", "CSC123; rm -rf ~"],
     "--account: expected an account or project name (letters, digits, '_', '.', '-'), got 'CSC123; rm -rf ~'"),
    (["--site", "hal", "--runtime", "docker"], "--runtime: expected one of singularity, apptainer, none, got 'docker'"),
    (["--site", "hal", "--launcher", "jsrun"],
     "--launcher: site hal runs slurm, which starts ranks with mpirun or srun; got 'jsrun'"),
    (["--site", "summit", "--account", "A", "--launcher", "mpirun"],
     "--launcher: site summit runs lsf, which starts ranks with jsrun; got 'mpirun'"),
    (["--site", "hal", "--jsrun-layout", "node"], "--jsrun-layout: only for jsrun; site hal launches with srun"),
    (["--site", "summit", "--account", "A", "--jsrun-layout", "rack"],
     "--jsrun-layout: expected one of gpu, node, got 'rack'"),
    (["--site", "bridges-ai", "--cuda-aware-mpi"],
     "--cuda-aware-mpi: asks jsrun's Spectrum MPI for CUDA-aware MPI (--smpiargs); site bridges-ai launches with mpirun"),
    (["--site", "local", "--time", "0:05", "--signal-lead", "300"],
     "--signal-lead: 300 s is not shorter than the wall time 0:05; expected a lead that leaves time to train"),
    (["--site", "local", "--signal-lead", "10"], "--signal-lead: expected at least 60 seconds, got 10"),
    (["--site", "local", "--", "--smoke", "--run-dir", "/tmp/elsewhere"],
     "train argument --run-dir: set by the job script (the run directory is named after the job and the launcher "
     "starts the ranks); leave it out"),
    (["--site", "local", "--", "--ranks=4"],
     "train argument --ranks: set by the job script (the run directory is named after the job and the launcher "
     "starts the ranks); leave it out"),
    (["--site", "atlantis"], None),  # the catalog's own message
]  # fmt: skip


@pytest.mark.parametrize(("args", "message"), REFUSALS)
def test_refused_before_anything_is_written(hpcai, tmp_path, args, message):
    """A request the site cannot satisfy: exit 2, one line naming the flag, no traceback, no file."""
    out = tmp_path / "job.sh"
    cut = args.index("--") if "--" in args else len(args)
    result = hpcai("launch", "gw", *args[:cut], "--out", str(out), *args[cut:])
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0] == f"hpcai: error: {message}" if message else lines[0].startswith("hpcai: error: unknown site")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_unknown_workload_is_refused(hpcai):
    result = hpcai("launch", "mnist", "--site", "hal")
    assert (result.returncode, result.stderr) == (
        2,
        "hpcai: error: WORKLOAD: expected one of resnet50, gw, des, got 'mnist'\n",
    )


def test_submit_without_the_submit_command(hpcai, tmp_path):
    """--submit where the site's submit command is not installed: refused, the script was still written."""
    out = tmp_path / "hal.sh"
    result = hpcai("launch", "gw", "--site", "hal", "--image", "/x.sif", "--out", str(out), "--submit",
                   env={"PATH": "/nonexistent"})  # fmt: skip
    assert result.returncode == 2
    assert result.stderr == "hpcai: error: --submit: site hal submits with 'swbatch', which is not on PATH\n"
