"""AI-GW under a real mpirun with 2 ranks: smoke run, bitwise resume, preemption by signal, a killed rank.

One deterministic smoke run (the reference) is shared: the other runs train on its data with the same settings
and must end with bitwise the same trainable weights, however they were interrupted.
"""

from __future__ import annotations

import signal
import time

import pytest

from hpcai_tf.train.checkpoint import load_checkpoint
from hpcai_tf.train.signals import EXIT_PREEMPTED

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

RANKS = ["--ranks", "2"]
DETERMINISTIC = ["--smoke", "--deterministic", "--no-tensorboard"]


def final_record(kit, run_dir):
    final = kit.records(run_dir)[-1]
    assert final["type"] == "final", final
    return final


@pytest.fixture(scope="module")
def reference(kit, tmp_path_factory):
    """The GW smoke run, deterministic, uninterrupted: it generates its own data."""
    run_dir = tmp_path_factory.mktemp("gw-reference") / "run"
    start = time.time()
    done = kit.run("train", "gw", *RANKS, *DETERMINISTIC, "--run-dir", str(run_dir), timeout=400)
    seconds = time.time() - start
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    print(f"\n[duration] gw --smoke --ranks 2 --deterministic: {seconds:.1f} s")
    return run_dir


def test_smoke_run_writes_metrics_and_its_loss_falls(kit, reference):
    found = kit.records(reference)
    assert [r["type"] for r in found] == ["provenance"] + ["epoch"] * 4 + ["final"]
    provenance = found[0]
    assert provenance["workload"] == "gw" and provenance["ranks"] == 2
    assert provenance["config"]["epochs"] == 4 and provenance["config"]["dataset_size"] == 1_500_000
    assert provenance["horovod"] == "0.28.1" and provenance["tensorflow"].startswith("2.")
    assert provenance["mpi"].startswith("Open MPI")
    assert provenance["env"]["HOROVOD_FUSION_THRESHOLD"] == "0"  # --deterministic
    assert provenance["image"] is None and len(provenance["hostnames"]) == 2
    epochs = found[1:-1]
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4]
    assert epochs[-1]["loss"] < epochs[0]["loss"]
    for epoch in epochs:
        assert epoch["ranks"] == 2 and epoch["steps"] == 8 and epoch["batch_per_rank"] == 32
        assert epoch["global_samples_per_sec"] == pytest.approx(2 * epoch["samples_per_sec_per_rank"])
        assert {"q_mae", "val_loss", "val_q_mae"} <= set(epoch["metrics"])
    final = found[-1]
    assert final["status"] == "completed" and final["weights_agree"]
    assert len(final["weights_digest_per_rank"]) == 2
    assert final["quality"]["name"] == "mean_overlap" and 0.0 < final["quality"]["value"] <= 1.0
    assert load_checkpoint(reference / "checkpoint.h5").state["finished"]


def test_stopped_after_an_epoch_and_resumed_ends_bitwise_identical(kit, reference, tmp_path):
    data = str(reference / "data" / "gw-smoke.h5")
    run_dir = str(tmp_path / "run")
    common = ["train", "gw", *RANKS, *DETERMINISTIC, "--data", data, "--run-dir", run_dir]
    timeline = tmp_path / "timeline.json"
    # --resume without a checkpoint starts fresh: a job script runs the same command first and when requeued
    stopped = kit.run(*common, "--resume", "--stop-after-epoch", "2", "--timeline", str(timeline))
    assert stopped.returncode == EXIT_PREEMPTED, stopped.stderr[-2000:]
    assert kit.records(tmp_path / "run")[-1]["type"] == "preempted"
    assert '"ALLREDUCE"' in timeline.read_text()  # Horovod's timeline (it does not change numerics)
    assert load_checkpoint(tmp_path / "run" / "checkpoint.h5").state["epoch"] == 2
    resumed = kit.run(*common, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    kinds = [r["type"] for r in kit.records(tmp_path / "run")]
    assert kinds == ["provenance", "epoch", "epoch", "preempted", "provenance", "epoch", "epoch", "final"]
    assert kit.records(tmp_path / "run")[0]["resumed_from"] is None
    assert kit.records(tmp_path / "run")[4]["resumed_from"] == {"epoch": 2, "step": 0}
    final = final_record(kit, tmp_path / "run")
    assert final["weights_agree"]
    assert final["weights_digest_per_rank"] == final_record(kit, reference)["weights_digest_per_rank"]


def test_sigusr1_on_one_rank_stops_all_at_a_batch_boundary_and_resume_is_bitwise(kit, reference, tmp_path):
    data = str(reference / "data" / "gw-smoke.h5")
    run_dir = tmp_path / "run"
    # Checks every 3 of the 8 steps (at 3, 6 and 8): a signal mostly lands mid-epoch; numerics do not change.
    common = ["train", "gw", *RANKS, *DETERMINISTIC, "--data", data, "--run-dir", str(run_dir),
              "--set", "preemption_check_steps=3"]  # fmt: skip
    process = kit.start(*common, log=tmp_path / "first.log")
    try:
        kit.wait_for(lambda: (run_dir / "checkpoint.h5").exists(), 300, "the first checkpoint", process)
        kit.rank_processes(process)[1].send_signal(signal.SIGUSR1)  # rank 1 only: the ranks must agree
        assert process.wait(timeout=120) == EXIT_PREEMPTED, (tmp_path / "first.log").read_text()[-2000:]
    finally:
        if process.poll() is None:
            process.kill()
    stop = kit.records(run_dir)[-1]
    assert stop["type"] == "preempted" and stop["reason"] == "SIGUSR1" and stop["signalled_ranks"] == [1]
    assert stop["step"] in (0, 3, 6)  # a check after step 3 or 6, or after the last (the epoch completes)
    state = load_checkpoint(run_dir / "checkpoint.h5").state
    assert (state["epoch"], state["step"]) == (stop["completed_epochs"], stop["step"])
    resumed = kit.run(*common, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    final = final_record(kit, run_dir)
    assert final["weights_digest_per_rank"] == final_record(kit, reference)["weights_digest_per_rank"]


def test_sigkill_of_rank_1_ends_the_job_and_the_checkpoint_stays_loadable(kit, reference, tmp_path):
    data = str(reference / "data" / "gw-smoke.h5")
    run_dir = tmp_path / "run"
    # Short epochs, so that a checkpoint comes soon; the GPU-oriented flags ride along (bfloat16 on CPUs).
    args = ["train", "gw", *RANKS, "--smoke", "--data", data, "--run-dir", str(run_dir), "--epochs", "50",
            "--steps-per-epoch", "2", "--mixed-precision", "--fp16-allreduce"]  # fmt: skip
    process = kit.start(*args, log=tmp_path / "run.log")
    try:
        kit.wait_for(lambda: (run_dir / "checkpoint.h5").exists(), 300, "the first checkpoint", process)
        kit.rank_processes(process)[1].kill()
        killed_at = time.time()
        status = process.wait(timeout=60)
        print(f"\n[duration] job ended {time.time() - killed_at:.1f} s after SIGKILL of rank 1 ({status})")
    finally:
        if process.poll() is None:
            process.kill()
    assert status != 0
    checkpoint = load_checkpoint(run_dir / "checkpoint.h5")
    assert checkpoint.state["epoch"] >= 1 and checkpoint.state["steps_per_epoch"] == 2
    assert checkpoint.config["run"]["mixed_precision"] and checkpoint.config["run"]["fp16_allreduce"]
    assert kit.records(run_dir)[-1]["type"] == "epoch"  # the file stays parseable


def test_evaluate_reproduces_the_final_quality(kit, reference):
    evaluated = kit.run("evaluate", "gw", "--checkpoint", str(reference / "checkpoint.h5"), timeout=200)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    result = kit.json_line(evaluated.stdout)
    final = final_record(kit, reference)["quality"]
    assert result["epoch"] == 4
    assert result["quality"]["waveforms"] == final["waveforms"]
    assert result["quality"]["value"] == pytest.approx(final["value"], abs=1e-4)
    assert result["quality"]["q_mae"] == pytest.approx(final["q_mae"], rel=1e-4)


def test_a_signal_at_the_last_step_of_the_last_epoch_finishes_the_run(kit, reference, tmp_path):
    """SIGUSR1 during the last epoch, seen only at its last step (checks every 1000 steps): the work is done, so the
    run finishes with its final record and exit 0, not a stop whose checkpoint --resume would only call complete."""
    run_dir = tmp_path / "run"
    argv = ["train", "gw", *DETERMINISTIC, "--epochs", "2", "--steps-per-epoch", "40", "--run-dir", str(run_dir)]
    argv += ["--data", str(reference / "data" / "gw-smoke.h5"), "--set", "preemption_check_steps=1000"]

    def epochs_recorded() -> int:
        metrics = run_dir / "metrics.jsonl"
        return sum(r["type"] == "epoch" for r in kit.records(run_dir)) if metrics.exists() else 0

    process = kit.start(*argv, log=tmp_path / "run.log")
    try:
        kit.wait_for(lambda: epochs_recorded() == 1, 300, "epoch 1's record", process)
        time.sleep(1.0)  # past epoch 1's own check; epoch 2's 40 steps take several seconds more
        process.send_signal(signal.SIGUSR1)
        assert process.wait(timeout=300) == 0, (tmp_path / "run.log").read_text()[-2000:]
    finally:
        if process.poll() is None:
            process.kill()
    log = (tmp_path / "run.log").read_text()
    assert "a stop signal came at the last step of the last epoch: the run is complete, finishing it" in log, log
    assert [r["type"] for r in kit.records(run_dir)] == ["provenance", "epoch", "epoch", "final"]
    assert load_checkpoint(run_dir / "checkpoint.h5").state["finished"]


def test_resuming_a_finished_run_does_nothing(kit, reference):
    before = (reference / "metrics.jsonl").read_text()
    again = kit.run("train", "gw", "--smoke", "--run-dir", str(reference), "--resume", timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "already complete" in again.stdout
    assert (reference / "metrics.jsonl").read_text() == before
