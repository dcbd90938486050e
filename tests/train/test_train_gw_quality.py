"""The GW model, trained briefly on a few thousand waveforms, recovers q better than predicting the mean."""

from __future__ import annotations

import time

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_q_is_recovered_better_than_by_the_training_mean(kit, tmp_path):
    data = tmp_path / "gw.h5"
    made = kit.run("data", "gw", "--smoke", "--n", "2000", "--out", str(data), "--workers", "2")
    assert made.returncode == 0, made.stderr
    start = time.time()
    done = kit.run(
        "train", "gw", "--ranks", "2", "--smoke", "--data", str(data), "--epochs", "3",
        "--set", "validation_fraction=0.1", "--set", "evaluate.overlap_waveforms=100",
        "--run-dir", str(tmp_path / "run"), "--no-tensorboard", timeout=560,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    quality = kit.records(tmp_path / "run")[-1]["quality"]
    print(f"\n[gw quality] {time.time() - start:.0f} s of training: {quality}")
    assert quality["waveforms"] == 100
    assert quality["q_mae"] < quality["q_mae_mean_predictor"]
    assert quality["q_rmse"] < quality["q_rmse_mean_predictor"]
