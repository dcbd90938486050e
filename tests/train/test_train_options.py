"""``hpcai train``'s flags, declared once in ``hpcai_tf.train.options``: the parser, the options, the arguments
every rank gets and the launch-time check all follow the one declaration."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcai_tf.cli import build_parser
from hpcai_tf.commands.train import check_train_arguments, rank_arguments
from hpcai_tf.errors import KitError
from hpcai_tf.launch.job_script import SET_BY_SCRIPT
from hpcai_tf.train.options import JOB_SCRIPT_FLAGS, TrainOptions, train_flags, train_options

ARGV = ["train", "gw", "--ranks", "2", "--config", "c.toml", "--smoke", "--data", "d.h5", "--epochs", "3",
        "--lr", "0.5", "--seed", "7", "--set", "a=1", "--set", "b=2", "--resume", "--no-tensorboard",
        "--stop-after-epoch", "1"]  # fmt: skip


def test_a_command_line_becomes_its_options():
    options = train_options(build_parser().parse_args(ARGV))
    assert options == TrainOptions(
        workload="gw",
        ranks=2,
        config_file="c.toml",
        smoke=True,
        data="d.h5",
        epochs=3,
        lr=0.5,
        seed=7,
        sets=["a=1", "b=2"],
        resume=True,
        stop_after_epoch=1,
        tensorboard=False,
    )
    assert options.overrides == {"epochs": 3, "optimizer.lr": 0.5, "seed": 7}


def test_defaults_are_the_fields_defaults():
    assert train_options(build_parser().parse_args(["train", "des"])) == TrainOptions(workload="des")


def test_every_rank_parses_back_to_the_same_options(tmp_path):
    """What --ranks hands on, parsed again, is the same request but for --ranks and an absolute --run-dir."""
    args = build_parser().parse_args(ARGV)
    again = train_options(build_parser().parse_args(rank_arguments(args, tmp_path)))
    assert again == TrainOptions(
        **{**vars(train_options(args)), "ranks": None, "run_dir": str(tmp_path), "data": str(Path("d.h5").absolute())}
    )


def test_every_flag_is_one_field_and_one_argparse_option():
    parser = build_parser()._subparsers._group_actions[0].choices["train"]
    by_flag = {action.option_strings[0]: action.dest for action in parser._actions if action.option_strings}
    flags = {each.name: field.name for field, each in train_flags()}
    assert by_flag == {"-h": "help", **flags}


def test_the_job_script_sets_run_dir_ranks_and_resume():
    """The launch-time checks refuse exactly the flags declared as the job script's."""
    assert sorted(JOB_SCRIPT_FLAGS) == ["--backend", "--ranks", "--resume", "--run-dir"]
    assert SET_BY_SCRIPT == JOB_SCRIPT_FLAGS
    for name in JOB_SCRIPT_FLAGS:
        value = {"--resume": [], "--backend": ["mwms"]}.get(name, ["2"])
        written = "give --backend to hpcai launch or hpcai scale" if name == "--backend" else "set by the job script"
        with pytest.raises(KitError, match=f"train argument {name}: {written}"):
            check_train_arguments("gw", [name, *value])
    check_train_arguments("gw", ["--smoke", "--no-tensorboard", "--set", "a=1"])
