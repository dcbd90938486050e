"""Learning rate: scaled by workers, warmed up from the single-worker LR, then the schedule."""

from __future__ import annotations

import pytest

from hpcai_tf.train.schedules import lr_at_epoch, scaled_lr

PER_WORKER = {
    "lr": 1e-3,
    "lr_reference_batch": 0,
    "warmup_epochs": 2,
    "schedule": "constant",
    "decay_epochs": [],
    "decay_factor": 0.1,
}
GOYAL = {"lr": 0.1, "lr_reference_batch": 256, "warmup_epochs": 5, "schedule": "step",
         "decay_epochs": [30, 60, 80], "decay_factor": 0.1}  # fmt: skip


def test_scaling_per_worker_and_per_256_images():
    assert scaled_lr(PER_WORKER, batch_per_rank=64, ranks=4) == pytest.approx(4e-3)
    assert scaled_lr(GOYAL, batch_per_rank=32, ranks=256) == pytest.approx(3.2)  # Goyal: 8k batch, LR 3.2


def test_warmup_starts_at_single_worker_lr_and_reaches_scaled_lr():
    def lr(epoch):
        return lr_at_epoch(epoch, PER_WORKER, batch_per_rank=64, ranks=4, total_epochs=10)

    assert lr(0.0) == pytest.approx(1e-3)
    assert lr(1.0) == pytest.approx(2.5e-3)
    assert lr(2.0) == pytest.approx(4e-3)
    assert lr(9.5) == pytest.approx(4e-3)


def test_step_schedule_of_goyal():
    lr = lambda epoch: lr_at_epoch(epoch, GOYAL, batch_per_rank=32, ranks=8, total_epochs=90)  # noqa: E731
    assert lr(10) == pytest.approx(0.1)
    assert lr(30) == pytest.approx(0.01)
    assert lr(61) == pytest.approx(0.001)
    assert lr(85) == pytest.approx(0.0001)


def test_cosine_decays_to_zero():
    cosine = {**PER_WORKER, "schedule": "cosine"}
    lr = lambda epoch: lr_at_epoch(epoch, cosine, batch_per_rank=1, ranks=1, total_epochs=10)  # noqa: E731
    assert lr(2) == pytest.approx(1e-3)
    assert lr(6) == pytest.approx(0.5e-3)
    assert lr(10) == pytest.approx(0.0, abs=1e-12)
