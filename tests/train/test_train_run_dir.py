"""Run directories: a fresh one per run, --resume finds the newest unfinished run, no silent overwrite."""

from __future__ import annotations

import os

import pytest

from hpcai_tf.errors import KitError
from hpcai_tf.train.run_dir import choose_run_dir, latest_unfinished_run


def _run(root, name, *, checkpoint: bool, final: bool, mtime: int):
    path = root / name
    path.mkdir(parents=True)
    (path / "metrics.jsonl").write_text('{"type": "provenance"}\n' + ('{"type": "final"}\n' if final else ""))
    if checkpoint:
        (path / "checkpoint.h5").write_bytes(b"x")
        os.utime(path / "checkpoint.h5", (mtime, mtime))
    return path


def test_resume_without_run_dir_takes_the_newest_unfinished_run(tmp_path):
    _run(tmp_path, "gw-1", checkpoint=True, final=False, mtime=1000)
    newest = _run(tmp_path, "gw-2", checkpoint=True, final=False, mtime=2000)
    _run(tmp_path, "gw-3", checkpoint=True, final=True, mtime=3000)
    _run(tmp_path, "gw-4", checkpoint=False, final=False, mtime=4000)
    _run(tmp_path, "des-1", checkpoint=True, final=False, mtime=5000)
    assert latest_unfinished_run("gw", tmp_path) == newest
    assert latest_unfinished_run("resnet50", tmp_path) is None


def test_an_existing_run_needs_resume(tmp_path):
    run = _run(tmp_path, "gw-1", checkpoint=True, final=False, mtime=1000)
    with pytest.raises(KitError, match="already holds a run; pass --resume"):
        choose_run_dir("gw", str(run), resume=False)
    assert choose_run_dir("gw", str(run), resume=True) == run.absolute()
    fresh = choose_run_dir("gw", str(tmp_path / "new" / "deep"), resume=False)
    assert fresh.is_dir()


def test_default_run_dir_is_per_workload_and_time(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = choose_run_dir("gw", None, resume=False)
    second = choose_run_dir("gw", None, resume=False)
    assert first.parent == second.parent == (tmp_path / "runs")
    assert first.name.startswith("gw-") and first != second


def test_a_second_rank0_in_one_run_dir_is_a_one_line_error(tmp_path):
    """Two lone rank-0 processes (launcher variables stripped) cannot share a run directory."""
    import os

    import pytest

    from hpcai_tf.errors import KitError
    from hpcai_tf.train.run_dir import hold_run_dir

    fd = hold_run_dir(tmp_path)
    try:
        with pytest.raises(KitError, match="two rank-0 processes in one run directory"):
            hold_run_dir(tmp_path)
    finally:
        os.close(fd)
    os.close(hold_run_dir(tmp_path))  # free again once the holder is gone
