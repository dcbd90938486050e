"""Bad input ends in one line naming the file, never a traceback, under 2 ranks as well as in one process."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def error_lines(done) -> list[str]:
    return [line for line in (done.stdout + done.stderr).splitlines() if "error" in line.lower()]


def assert_one_line_error(done, *expected: str) -> None:
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    lines = error_lines(done)
    assert len(lines) == 1, lines
    assert lines[0].startswith("hpcai: error: ")
    for text in expected:
        assert text in lines[0]


def test_truncated_hdf5_under_two_ranks(kit, gw_smoke_data, tmp_path):
    broken = tmp_path / "truncated.h5"
    data = gw_smoke_data.read_bytes()
    broken.write_bytes(data[: len(data) // 3])
    done = kit.run("train", "gw", "--ranks", "2", "--smoke", "--data", str(broken), "--run-dir", str(tmp_path / "r"))
    assert_one_line_error(done, str(broken), "truncated or corrupt HDF5")


def test_wrong_shape_hdf5(kit, gw_smoke_data, tmp_path):
    wrong = tmp_path / "wrong.h5"
    with h5py.File(wrong, "w") as h5:
        h5["waveforms"] = np.zeros((10, 1024, 3), np.float32)
        h5["labels"] = np.zeros((10, 3), np.float32)
    done = kit.run("train", "gw", "--smoke", "--data", str(wrong), "--run-dir", str(tmp_path / "r"))
    assert_one_line_error(done, str(wrong), "'waveforms' has shape (10, 1024, 3)")


def test_corrupt_tfrecord_shard_under_two_ranks(kit, tmp_path):
    data = tmp_path / "imagenet"
    made = kit.run("data", "imagenet", "--synthetic", "--smoke", "--out", str(data), "--workers", "1")
    assert made.returncode == 0, made.stderr
    shard = data / "train-00001-of-00004"
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    shard.write_bytes(bytes(raw))
    done = kit.run(
        "train", "resnet50", "--ranks", "2", "--smoke", "--data", str(data), "--run-dir", str(tmp_path / "r")
    )
    assert_one_line_error(done, str(shard), "corrupt or truncated TFRecord")


def test_launcher_tasks_that_horovod_cannot_see(kit, gw_smoke_data, tmp_path):
    """An image MPI that does not speak the launcher's PMI: each task comes up as a singleton rank 0."""
    done = kit.run("train", "gw", "--smoke", "--data", str(gw_smoke_data), "--run-dir", str(tmp_path / "r"),
                     PMI_SIZE="2", PMI_RANK="1")  # fmt: skip
    assert_one_line_error(done, "launcher started 2 tasks", "Horovod sees 1 rank", "2 rank-0 processes")


def test_config_errors_are_reported_once_before_mpirun(kit, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\nlayers = 3\n")
    done = kit.run("train", "gw", "--ranks", "2", "--smoke", "--config", str(bad), timeout=60)
    assert_one_line_error(done, str(bad), "unknown key 'model.layers'")
    assert "mpirun" not in done.stdout


def test_missing_data_without_smoke(kit, tmp_path):
    done = kit.run("train", "des", "--run-dir", str(tmp_path / "r"), timeout=120)
    assert_one_line_error(done, "des needs --data")
    assert kit.last_line(done.stderr).startswith("hpcai: error:")
