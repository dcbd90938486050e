"""``hpcai data``: the commands as a user runs them, in processes and under mpirun."""

from __future__ import annotations

import json

import pytest

from hpcai_tf.train.data.gw_file import open_gw_file
from hpcai_tf.train.data.tfrecords import list_shards

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_gw_data_split_between_two_mpi_ranks(kit, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "gw.h5"
    command = ["mpirun", "-np", "2", "--bind-to", "none", sys.executable, "-m", "hpcai_tf", "data", "gw",
               "--smoke", "--n", "300", "--noise", "20", "--out", str(out)]  # fmt: skip
    done = subprocess.run(command, env=kit.env(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("wrote 300 waveforms") == 1  # rank 0 reports
    data = open_gw_file(out)
    assert data.n == 300 and data.generation.noise_snr == 20.0 and data.has_clean
    assert not (tmp_path / "gw.h5.parts").exists()


def test_des_data_command_in_worker_processes(kit, tmp_path):
    out = tmp_path / "des"
    args = ["--n", "12", "--size", "48", "--shards", "2", "--workers", "2", "--out", str(out)]
    done = kit.run("data", "des", *args)
    assert done.returncode == 0, done.stderr[-2000:]
    info = json.loads((out / "dataset.json").read_text())
    assert sum(info["counts"].values()) == 12 and info["spec"]["image_size"] == 48
    assert len(list_shards(out, "train")) == 2
    again = kit.run("data", "des", "--n", "12", "--out", str(out))
    assert again.returncode == 2 and "already holds a finished data set" in again.stderr
