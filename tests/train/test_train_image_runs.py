"""AI-DES and ResNet-50 smoke runs under a real mpirun with 2 ranks, each generating its own small data."""

from __future__ import annotations

import time

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.mark.parametrize(
    ("workload", "epochs", "quality", "metric"),
    [("des", 3, "accuracy", "accuracy"), ("resnet50", 3, "top1", "top5")],
)
def test_smoke_run_writes_metrics_and_its_loss_falls(kit, tmp_path, workload, epochs, quality, metric):
    run_dir = tmp_path / "run"
    start = time.time()
    done = kit.run("train", workload, "--smoke", "--ranks", "2", "--run-dir", str(run_dir), timeout=580)
    print(f"\n[duration] {workload} --smoke --ranks 2: {time.time() - start:.1f} s")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    found = kit.records(run_dir)
    assert [r["type"] for r in found] == ["provenance"] + ["epoch"] * epochs + ["final"]
    assert found[0]["workload"] == workload and found[0]["ranks"] == 2
    epochs_seen = found[1:-1]
    assert epochs_seen[-1]["loss"] < epochs_seen[0]["loss"]
    assert all(metric in e["metrics"] and f"val_{metric}" in e["metrics"] for e in epochs_seen)
    final = found[-1]
    assert final["weights_agree"] and final["quality"]["name"] == quality
    # The accuracy is a count of correctly classified validation images over the images seen on both ranks.
    quality = final["quality"]
    images = quality["images"]
    assert images >= 2 * epochs_seen[-1]["batch_per_rank"]
    assert quality["value"] * images == pytest.approx(round(quality["value"] * images), abs=1e-6)
    if workload == "resnet50":
        assert quality["top5"] * images == pytest.approx(round(quality["top5"] * images), abs=1e-6)
        assert quality["top5"] >= quality["value"]
    assert (run_dir / "checkpoint.h5").exists() and any((run_dir / "tensorboard").iterdir())
    if workload == "des":
        assert [e["stage"] for e in epochs_seen] == ["head", "from-40", "from-2"]
