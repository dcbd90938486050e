"""A smoke run stays short whatever the data option: ResNet-50 on synthetic batches included."""

from __future__ import annotations

import pytest

from hpcai_tf.train.config import resolve_config

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_every_smoke_config_has_a_small_epoch():
    """Under --smoke the data each workload reads or makes is a few hundred samples, synthetic epochs too."""
    for workload in ("gw", "des", "resnet50"):
        config = resolve_config(workload, smoke=True)
        assert config["data"]["samples"] <= 1000, workload
    resnet = resolve_config("resnet50", smoke=True)
    assert resnet["data"]["synthetic_samples"] == 128
    assert resolve_config("resnet50")["data"]["synthetic_samples"] == 1_281_167  # an ImageNet epoch otherwise


def test_resnet50_smoke_on_synthetic_batches_runs_eight_steps_per_epoch(kit, tmp_path):
    """128 synthetic images in batches of 16 on one rank: 8 steps an epoch, not the 80,072 of a full ImageNet."""
    run_dir = tmp_path / "run"
    args = ["train", "resnet50", "--smoke", "--synthetic", "--epochs", "1", "--no-tensorboard"]
    done = kit.run(*args, "--run-dir", str(run_dir), timeout=280)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    epochs = [r for r in kit.records(run_dir) if r["type"] == "epoch"]
    assert [(e["epoch"], e["steps"], e["batch_per_rank"]) for e in epochs] == [(1, 8, 16)]
