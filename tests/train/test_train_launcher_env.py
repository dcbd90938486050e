"""Which launcher started a task, from per-task variables only, and the hybrid-MPI error."""

from __future__ import annotations

from hpcai_tf.train.launcher_env import detect_launcher, hybrid_mpi_mismatch, launcher_rank


def test_plain_process_and_slurm_batch_script_are_not_launched_tasks():
    assert detect_launcher({}) is None
    batch_script = {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4", "SLURM_PROCID": "0", "SLURM_NNODES": "1"}
    assert detect_launcher(batch_script) is None


def test_per_task_variables_of_each_launcher():
    assert detect_launcher({"OMPI_COMM_WORLD_SIZE": "4"}).tasks == 4
    assert detect_launcher({"JSM_NAMESPACE_SIZE": "6"}).launcher == "jsrun"
    assert detect_launcher({"PMI_SIZE": "2"}).tasks == 2
    srun = {"SLURM_STEP_NUM_TASKS": "8", "SLURM_PROCID": "3", "SLURM_STEP_ID": "0", "SLURM_NTASKS": "8"}
    claim = detect_launcher(srun)
    assert (claim.launcher, claim.tasks) == ("srun", 8)
    assert launcher_rank(srun) == 3
    assert detect_launcher({**srun, "SLURM_STEP_ID": "batch"}) is None
    assert detect_launcher({**srun, "SLURM_STEP_ID": "4294967294"}) is None  # the batch step's numeric id
    pmix_only = detect_launcher({"PMIX_RANK": "1"})
    assert pmix_only.tasks is None and pmix_only.variable == "PMIX_RANK"


def test_hybrid_mismatch_message():
    claim = detect_launcher({"OMPI_COMM_WORLD_SIZE": "4"})
    message = hybrid_mpi_mismatch(claim, 1)
    assert message.startswith("launcher started 4 tasks")
    assert "Horovod sees 1 rank" in message and "4 rank-0 processes" in message
    assert "\n" not in message
    assert hybrid_mpi_mismatch(claim, 4) is None
    assert hybrid_mpi_mismatch(None, 1) is None
    assert hybrid_mpi_mismatch(detect_launcher({"PMIX_RANK": "0"}), 1) is None  # size unknown: no claim


def test_launcher_rank():
    assert launcher_rank({}) == 0
    assert launcher_rank({"OMPI_COMM_WORLD_RANK": "1"}) == 1
    assert launcher_rank({"PMI_RANK": "5"}) == 5
