"""``hpcai calibrate --image SIF``: every measurement inside the site's image, with its Python and its mpirun.

The SIF and the Apptainer harness are this session's (``local_sif``, ``harness``). The calibration is the same
small one as tests/scaling/test_calibrate.py's host run (AI-GW smoke, 2 epochs, 3 message sizes); here the
provenance must name the image, and a site whose pins the image does not hold is refused before anything runs.
"""

from __future__ import annotations

import json
import sys

import pytest

from hpcai_tf.catalog import load_site

pytestmark = [pytest.mark.singularity, pytest.mark.slow]

HPCAI = [sys.executable, "-m", "hpcai_tf"]


@pytest.mark.timeout(900)
def test_calibrate_inside_the_local_sif_and_estimate_reads_it(harness, local_sif, sh, tmp_path):
    env = harness.env()
    data = tmp_path / "gw.h5"
    assert sh([*HPCAI, "data", "gw", "--smoke", "--n", "320", "--out", data], env=env).returncode == 0
    out = tmp_path / "calibration"
    train = ("--smoke", "--data", "gw.h5", "--epochs", "2", "--no-tensorboard")  # relative: the image sees the cwd
    result = sh(
        [*HPCAI, "calibrate", "gw", "--site", "local", "--image", local_sif.path, "--out", out,
         "--message-sizes", "4096,1048576,16777216", "--", *train],
        env=env, cwd=tmp_path, timeout=840,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    written = json.loads((out / "local.json").read_text())
    image = written["provenance"]["image"]
    assert image["path"] == str(local_sif.path.resolve()) and image["site"] == "local", image
    assert image["bytes"] == local_sif.path.stat().st_size
    assert written["provenance"]["stack"]["tensorflow"] == load_site("local").stack.tensorflow
    entry = written["workloads"]["gw"]
    assert (
        entry["gradient_tensors"] == 72 and min(entry["step_time_epochs_s"]) > 0 and entry["gradient_allreduce_s"] > 0
    )
    assert [p["bytes"] for p in written["link"]["points"]] == [4096, 1048576, 16777216]
    estimate = sh(
        [*HPCAI, "estimate", "gw", "--site", "local", "--gpus", "1,2", "--smoke", "--calibration", out / "local.json"],
        env=env,
    )
    assert estimate.returncode == 0, estimate.stderr
    assert "| contention |" in estimate.stdout and "| measured |" in estimate.stdout


def test_calibrate_refuses_an_image_without_the_sites_pins(harness, local_sif, sh, tmp_path):
    """local-tf215 pins TensorFlow 2.15.1; the local SIF holds 2.21.0: one line, nothing measured or written."""
    result = sh(
        [*HPCAI, "calibrate", "gw", "--site", "local-tf215", "--image", local_sif.path, "--out", tmp_path / "out",
         "--", "--smoke"],
        env=harness.env(),
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        f"hpcai: error: --site local-tf215: the site pins tensorflow-cpu 2.15.1, the image {local_sif.path} has "
        "2.21.0; pass the site's own image (or calibrate another site)"
    )
    assert list(tmp_path.iterdir()) == []
