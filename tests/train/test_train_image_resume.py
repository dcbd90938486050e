"""AI-DES and ResNet-50 stopped and resumed under a real mpirun with 2 ranks: bitwise under --deterministic.

Per workload one deterministic uninterrupted run (the reference) generates the data; the interrupted runs train on
it with the same settings and must end with bitwise the same trainable weights on both ranks. AI-DES stops after
its first epoch, the last of its first stage ('head': the base frozen), so the resume starts the next stage
('from-40'); a SIGUSR1 stops it in the middle of that stage, where Keras's Dropout (a stateful generator) made
the resumed weights differ: that test fails without the step-seeded Dropout of --deterministic (measured; the
stage-boundary resume passed with either, as every stage traces anew). ResNet-50 stops after an epoch. Small
settings keep each test to a few minutes.
"""

from __future__ import annotations

import shutil
import signal
import time

import numpy as np
import pytest

from hpcai_tf.train.checkpoint import load_checkpoint
from hpcai_tf.train.signals import EXIT_PREEMPTED

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

RANKS = ["--ranks", "2"]
DETERMINISTIC = ["--smoke", "--deterministic", "--no-tensorboard"]
# 96 galaxies (80 for training: 5 steps of 8 per rank), the first two stages (one epoch each); the ranks check for
# a preemption every 2 steps (at 2, 4 and 5; numerics do not change)
DES = ["--epochs", "2", "--set", "data.samples=96", "--set", "preemption_check_steps=2"]
# 2 epochs of 2 steps of 16 per rank (each process spends about a minute building and tracing ResNet-50)
RESNET = ["--epochs", "2", "--steps-per-epoch", "2"]


def final_record(kit, run_dir):
    final = kit.records(run_dir)[-1]
    assert final["type"] == "final", final
    return final


def reference_run(kit, tmp_path_factory, workload, extra):
    run_dir = tmp_path_factory.mktemp(f"{workload}-reference") / "run"
    start = time.time()
    done = kit.run("train", workload, *RANKS, *DETERMINISTIC, *extra, "--run-dir", str(run_dir), timeout=580)
    print(f"\n[duration] {workload} reference (--smoke --ranks 2 --deterministic): {time.time() - start:.1f} s")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    final = final_record(kit, run_dir)
    assert final["weights_agree"] and len(final["weights_digest_per_rank"]) == 2
    return run_dir


@pytest.fixture(scope="module")
def des_reference(kit, tmp_path_factory):
    return reference_run(kit, tmp_path_factory, "des", DES)


@pytest.fixture(scope="module")
def resnet_reference(kit, tmp_path_factory):
    return reference_run(kit, tmp_path_factory, "resnet50", RESNET)


def trainable_changed(before, after, names):
    """Whether training changed every one of ``names`` (checkpoint model arrays by variable name)."""
    return all(not np.array_equal(before.model[name], after.model[name]) for name in names)


def stop_after_epoch_and_resume(kit, tmp_path, workload, extra, reference, epoch):
    data = str(reference / "data" / ("des-smoke" if workload == "des" else "imagenet-smoke"))
    run_dir = tmp_path / "run"
    common = ["train", workload, *RANKS, *DETERMINISTIC, *extra, "--data", data, "--run-dir", str(run_dir)]
    start = time.time()
    stopped = kit.run(*common, "--stop-after-epoch", str(epoch), timeout=400)
    assert stopped.returncode == EXIT_PREEMPTED, stopped.stdout[-2000:] + stopped.stderr[-2000:]
    stop = kit.records(run_dir)[-1]
    assert stop["type"] == "preempted" and stop["reason"] == "stop-after-epoch" and stop["completed_epochs"] == epoch
    at_stop = tmp_path / "at-stop.h5"
    shutil.copy(run_dir / "checkpoint.h5", at_stop)
    resumed = kit.run(*common, "--resume", timeout=400)
    print(f"\n[duration] {workload} stopped after epoch {epoch} and resumed: {time.time() - start:.1f} s")
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    records = kit.records(run_dir)
    assert [r["type"] for r in records].count("provenance") == 2
    assert next(r for r in records[1:] if r["type"] == "provenance")["resumed_from"] == {"epoch": epoch, "step": 0}
    final = final_record(kit, run_dir)
    assert final["weights_agree"]
    assert final["weights_digest_per_rank"] == final_record(kit, reference)["weights_digest_per_rank"]
    return load_checkpoint(at_stop), load_checkpoint(run_dir / "checkpoint.h5"), records


def test_des_resumed_across_a_stage_boundary_ends_bitwise_identical(kit, des_reference, tmp_path):
    reference_epochs = [r for r in kit.records(des_reference) if r["type"] == "epoch"]
    assert [e["stage"] for e in reference_epochs] == ["head", "from-40"]
    at_stop, final, records = stop_after_epoch_and_resume(kit, tmp_path, "des", DES, des_reference, epoch=1)
    # the checkpoint of the stop is at the boundary: 'head' done, 'from-40' next, not begun
    assert (at_stop.state["epoch"], at_stop.state["step"], at_stop.state["stage"]) == (1, 0, 1)
    assert at_stop.state["epoch_in_stage"] == 0
    assert [r["stage"] for r in records if r["type"] == "epoch"] == ["head", "from-40"]
    # the resumed stage trained what it unfroze, and the head (behind the Dropout) went on training
    assert trainable_changed(at_stop, final, ["head_dense1/kernel:0", "head_dense2/kernel:0"])
    unfrozen = [name for name in final.model if name.startswith("block") and "kernel" in name]
    assert unfrozen and any(not np.array_equal(at_stop.model[n], final.model[n]) for n in unfrozen)
    reference = load_checkpoint(des_reference / "checkpoint.h5")
    assert sorted(final.model) == sorted(reference.model)
    assert all(np.array_equal(final.model[n], reference.model[n]) for n in reference.model)


def test_des_sigusr1_mid_stage_and_resume_is_bitwise(kit, des_reference, tmp_path):
    data = str(des_reference / "data" / "des-smoke")
    run_dir = tmp_path / "run"
    common = ["train", "des", *RANKS, *DETERMINISTIC, *DES, "--data", data, "--run-dir", str(run_dir)]
    start = time.time()
    process = kit.start(*common, log=tmp_path / "first.log")
    try:
        kit.wait_for(lambda: (run_dir / "checkpoint.h5").exists(), 400, "the first checkpoint", process)
        kit.rank_processes(process)[1].send_signal(signal.SIGUSR1)  # rank 1 only: the ranks must agree
        assert process.wait(timeout=200) == EXIT_PREEMPTED, (tmp_path / "first.log").read_text()[-2000:]
    finally:
        if process.poll() is None:
            process.kill()
    stop = kit.records(run_dir)[-1]
    assert stop["type"] == "preempted" and stop["reason"] == "SIGUSR1" and stop["signalled_ranks"] == [1]
    # sent when epoch 1's checkpoint appears, it reaches the ranks while they re-trace for stage 'from-40', long
    # before the check after its step 2 (or 4): the stop is in the middle of epoch 2, the optimizer's slots saved
    state = load_checkpoint(run_dir / "checkpoint.h5").state
    assert (state["epoch"], state["stage"], state["epoch_in_stage"]) == (1, 1, 0) and state["step"] in (2, 4)
    assert stop["step"] == state["step"]
    resumed = kit.run(*common, "--resume", timeout=400)
    print(f"\n[duration] des SIGUSR1 at epoch 2 step {state['step']}, resumed: {time.time() - start:.1f} s")
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert kit.records(run_dir)[-2]["resumed_mid_epoch"]
    final = final_record(kit, run_dir)
    assert final["weights_digest_per_rank"] == final_record(kit, des_reference)["weights_digest_per_rank"]


def test_resnet50_stopped_after_an_epoch_and_resumed_ends_bitwise_identical(kit, resnet_reference, tmp_path):
    at_stop, final, _ = stop_after_epoch_and_resume(kit, tmp_path, "resnet50", RESNET, resnet_reference, epoch=1)
    assert (at_stop.state["epoch"], at_stop.state["step"]) == (1, 0)
    kernels = [name for name in final.model if name.endswith("kernel:0")]
    assert kernels and any(not np.array_equal(at_stop.model[n], final.model[n]) for n in kernels)
