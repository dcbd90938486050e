"""Bad training input, tried as a user would: exit 2, one line naming the file, no traceback, and no run
directory, lock file or TensorBoard events left behind (issue #14)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import assert_refused, tree


@pytest.mark.parametrize("run_dir", ["runs/new/deep", "existing"])
def test_corrupt_data_file_leaves_nothing_behind(hpcai, tmp_path: Path, run_dir):
    """A corrupt HDF5 file fails before the first epoch: the run directory made for it is gone again, an
    existing one holds only what it held (no lock file, no metrics, no TensorBoard events)."""
    (tmp_path / "bad.h5").write_bytes(b"\x89HDF\r\n" + bytes(range(256)) * 20)
    (tmp_path / "existing").mkdir()
    (tmp_path / "existing" / "notes.txt").write_text("mine\n")
    before = tree(tmp_path)
    result = hpcai("train", "gw", "--smoke", "--data", "bad.h5", "--run-dir", run_dir, cwd=tmp_path, timeout=300)
    assert_refused(result, "bad.h5")
    assert tree(tmp_path) == before


def test_metrics_file_that_is_not_utf8(hpcai, tmp_path: Path):
    """--resume reads the run's metrics file: invalid UTF-8 there names the file."""
    run = tmp_path / "runs" / "gw-1"
    run.mkdir(parents=True)
    (run / "checkpoint.h5").write_bytes(b"")
    (run / "metrics.jsonl").write_bytes(b'{"type": "provenance", "x": "\xff"}\n')
    before = tree(tmp_path)
    result = hpcai("train", "gw", "--smoke", "--resume", cwd=tmp_path, timeout=300)
    assert_refused(result, "metrics.jsonl", "UTF-8")
    assert tree(tmp_path) == before


def test_config_file_that_is_not_utf8(hpcai, tmp_path: Path):
    """A training config with invalid UTF-8: one line naming the file, nothing written."""
    config = tmp_path / "bad.toml"
    config.write_bytes(b'epochs = "\xff\xfe"\n')
    before = tree(tmp_path)
    result = hpcai("train", "gw", "--smoke", "--config", str(config), cwd=tmp_path, timeout=300)
    assert_refused(result, "bad.toml", "UTF-8")
    assert tree(tmp_path) == before


@pytest.mark.parametrize("args", [["--epochs", "abc"], ["--run-di", "x"], ["--epoch", "2"]])
def test_train_arguments_take_no_abbreviations(hpcai, tmp_path: Path, args):
    """Usage errors are one line, and `--run-di`/`--epoch` are not taken for `--run-dir`/`--epochs`."""
    result = hpcai("train", "gw", "--smoke", *args, cwd=tmp_path)
    assert_refused(result, args[0])
    assert list(tmp_path.iterdir()) == []
