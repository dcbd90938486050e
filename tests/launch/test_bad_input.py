"""Bad input to `hpcai launch` and `hpcai scale`, tried as a user would: exit 2, one line naming the argument or
file, no traceback, no job script written or replaced (issue #14)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import assert_refused, tree


@pytest.mark.parametrize(
    ("train_args", "named"),
    [
        (["--run-di", "x"], "--run-di"),
        (["--rank", "3"], "--rank"),
        (["--run-dir=x"], "--run-dir"),
        (["--resume"], "--resume"),
        (["--epochs", "abc"], "--epochs"),
        (["--epoch", "2"], "--epoch"),
        (["--help"], "--help"),
        (["extra"], "extra"),
    ],
)
def test_train_arguments_are_checked_when_the_script_is_written(hpcai, tmp_path: Path, train_args, named):
    """Arguments after -- go through the training parser now: no abbreviation of the script's own flags, no
    value the job would refuse hours later in the queue."""
    out = tmp_path / "job.sh"
    result = hpcai("launch", "gw", "--site", "local", "--out", str(out), "--", *train_args)
    assert_refused(result, named)
    assert not out.exists()


def test_scale_checks_train_arguments_before_any_run(hpcai, tmp_path: Path):
    result = hpcai("scale", "gw", "--ranks", "1", "--out", str(tmp_path / "s"), "--", "--rank", "3")
    assert_refused(result, "--rank")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("args", [["--sit", "local"], ["--site", "local", "--node", "local"]])
def test_launch_takes_no_abbreviations(hpcai, args):
    result = hpcai("launch", "gw", *args)
    assert_refused(result, args[-2])


@pytest.mark.parametrize("kind", ["symlink", "fifo", "directory", "/dev/null", "/dev/full", "/proc/self/job.sh"])
def test_out_that_is_not_a_regular_file(hpcai, tmp_path: Path, kind):
    """A symlink, a FIFO, a device or a directory at --out is not replaced by the job script."""
    (tmp_path / "target").write_text("keep\n")
    out = {"symlink": tmp_path / "link", "fifo": tmp_path / "fifo", "directory": tmp_path / "dir"}.get(kind, Path(kind))
    if kind == "symlink":
        out.symlink_to(tmp_path / "target")
    elif kind == "fifo":
        os.mkfifo(out)
    elif kind == "directory":
        out.mkdir()
    before = tree(tmp_path)
    result = hpcai("launch", "gw", "--site", "local", "--out", str(out))
    assert_refused(result, "--out", str(out) if kind.startswith("/") else out.name)
    assert tree(tmp_path) == before


@pytest.mark.parametrize("account", ["proj\n", "proj\nrm -rf /", " proj"])
def test_account_matches_the_whole_string(hpcai, tmp_path: Path, account):
    """A trailing newline does not get past the --account check and into an #SBATCH line."""
    out = tmp_path / "job.sh"
    result = hpcai("launch", "gw", "--site", "local", "--account", account, "--out", str(out))
    assert_refused(result, "--account")
    assert not out.exists()


@pytest.mark.parametrize(
    ("command", "named"),
    [
        (["launch", "gw", "--site", "local", "--backend", "gloo"], "--backend"),
        (["launch", "gw", "--site", "local", "--", "--backend", "mwms"], "--backend"),
        (["scale", "gw", "--ranks", "1", "--backend", "gloo"], "--backend"),
        (["launch", "gw", "--site", "local", "--", "--port-base", "30000"], "--port-base"),  # an MWMS flag
        (["scale", "gw", "--ranks", "1", "--backend", "mwms", "--", "--fp16-allreduce"], "--fp16-allreduce"),
    ],
)
def test_a_backend_the_kit_does_not_have_or_given_twice_is_refused(hpcai, tmp_path: Path, command, named):
    """`--backend` is `hpcai launch`'s and `hpcai scale`'s (horovod or mwms), not a train argument of the job; a
    train flag of the other backend is refused when the script is written."""
    result = hpcai(*command, cwd=tmp_path)
    assert_refused(result, named)
    assert list(tmp_path.iterdir()) == []
