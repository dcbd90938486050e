"""``--ranks N``: the mpirun command line, its environment, and the arguments every rank gets."""

from __future__ import annotations

from pathlib import Path

from hpcai_tf.cli import build_parser
from hpcai_tf.commands.train import rank_arguments
from hpcai_tf.train.mpirun_spawn import mpirun_command, mpirun_environment


def test_mpirun_command_binds_nothing_and_forwards_variables():
    env = {"PATH": "/bin", "HOROVOD_FUSION_THRESHOLD": "0", "NCCL_DEBUG": "INFO", "SECRET": "x"}
    command = mpirun_command(2, ["python", "-m", "hpcai_tf"], env, mpirun="mpirun", cores=2)
    assert command[:8] == ["mpirun", "-np", "2", "--bind-to", "none", "--map-by", "slot", "-q"]
    assert "--oversubscribe" not in command
    pairs = {command[i + 1] for i, word in enumerate(command) if word == "-x"}
    assert pairs == {"PATH", "HOROVOD_FUSION_THRESHOLD", "NCCL_DEBUG"}
    assert command[-3:] == ["python", "-m", "hpcai_tf"]


def test_oversubscribe_only_for_more_ranks_than_cores_outside_an_allocation():
    assert "--oversubscribe" in mpirun_command(4, ["x"], {}, cores=2)
    assert "--oversubscribe" not in mpirun_command(4, ["x"], {"SLURM_JOB_ID": "3"}, cores=2)


def test_mpirun_environment_yields_when_idle():
    env = mpirun_environment({"PATH": "/bin"}, {"EXTRA": "1"})
    assert env["OMPI_MCA_mpi_yield_when_idle"] == "1"
    assert env["EXTRA"] == "1" and env["PATH"] == "/bin"
    assert mpirun_environment({"OMPI_MCA_mpi_yield_when_idle": "0"}, {})["OMPI_MCA_mpi_yield_when_idle"] == "0"


def test_rank_arguments_repeat_the_flags_without_ranks(tmp_path):
    args = build_parser().parse_args(
        ["train", "gw", "--ranks", "2", "--smoke", "--epochs", "3", "--set", "model.channels=8", "--data",
         "rel.h5", "--deterministic", "--timeline", "tl.json", "--resume"]
    )  # fmt: skip
    argv = rank_arguments(args, tmp_path)
    assert argv[:4] == ["train", "gw", "--run-dir", str(tmp_path)]
    assert "--ranks" not in argv
    for flag in ("--smoke", "--deterministic", "--resume"):
        assert flag in argv
    assert argv[argv.index("--epochs") + 1] == "3"
    assert argv[argv.index("--set") + 1] == "model.channels=8"
    assert argv[argv.index("--data") + 1] == str(Path("rel.h5").absolute())
    assert argv[argv.index("--timeline") + 1] == str(Path("tl.json").absolute())
