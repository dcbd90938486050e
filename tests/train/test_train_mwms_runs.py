"""``--backend mwms`` (TensorFlow's MultiWorkerMirroredStrategy) at 2 ranks under a real mpirun, on the current stack.

Runs are shared between assertions and kept small (about 4 minutes for the module at low load). AI-GW: ``hpcai
scale --ranks 1,2 --backend mwms`` writes the report, and its 2-rank run, deterministic, is the reference that a run
stopped by SIGUSR1 on one worker and resumed must match bitwise; a worker killed mid-epoch ends the job within 60 s
with one line. AI-DES (its first two stages: the model recompiled at the stage change) and ResNet-50 (BatchNorm
statistics, which the strategy keeps per worker) each train once: both workers end with identical trainable weights.
"""

from __future__ import annotations

import json
import re
import signal
import time

import pytest

from hpcai_tf.train.backend_mwms import free_port_base
from hpcai_tf.train.checkpoint import load_checkpoint
from hpcai_tf.train.signals import EXIT_PREEMPTED
from hpcai_tf.train.tf_environment import tensorflow_environment

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

MWMS = ["--backend", "mwms"]
ENV = tensorflow_environment("mwms")
"""What a user's run gets (the tests' default environment is the Horovod backend's): C++ ERROR lines hidden."""
GW = ["--smoke", "--deterministic", "--no-tensorboard", "--epochs", "3"]


@pytest.fixture(scope="module")
def gw_data(kit, tmp_path_factory):
    """320 smoke waveforms: 4 steps of 32 per rank at 2 ranks."""
    data = tmp_path_factory.mktemp("gw-data") / "gw.h5"
    made = kit.run("data", "gw", "--smoke", "--n", "320", "--out", str(data), timeout=300)
    assert made.returncode == 0, made.stderr[-2000:]
    return data


@pytest.fixture(scope="module")
def gw_scale(kit, gw_data, tmp_path_factory):
    """``hpcai scale gw --ranks 1,2 --backend mwms``: its output directory (runs gw-1ranks, gw-2ranks, report)."""
    out = tmp_path_factory.mktemp("gw-scale") / "scale"
    start = time.time()
    done = kit.run(
        "scale", "gw", "--ranks", "1,2", "--backend", "mwms", "--out", str(out),
        "--", *GW, "--data", str(gw_data), "--port-base", str(free_port_base(2)), timeout=580, **ENV,
    )  # fmt: skip
    print(f"\n[duration] scale gw --ranks 1,2 --backend mwms: {time.time() - start:.1f} s")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def test_scale_reports_mwms_runs_like_horovod_runs(gw_scale):
    rows = [
        line.split("|")[1:-1] for line in (gw_scale / "report.md").read_text().splitlines() if line.startswith("| ")
    ]
    header, body = [c.strip() for c in rows[0]], [[c.strip() for c in row] for row in rows[1:]]
    assert header[:8] == ["site", "image", "backend", "ranks", "runs", "samples/s", "speedup", "efficiency"]
    assert [(row[2], row[3]) for row in body] == [("mwms", "1"), ("mwms", "2")]
    assert float(body[0][6]) == 1.0 and float(body[1][6]) > 0
    assert (gw_scale / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_two_workers_train_gw_with_identical_weights_and_no_horovod(kit, gw_scale):
    found = kit.records(gw_scale / "gw-2ranks")
    assert [r["type"] for r in found] == ["provenance"] + ["epoch"] * 3 + ["final"]
    provenance = found[0]
    assert provenance["backend"] == "mwms" and provenance["horovod"] is None and provenance["ranks"] == 2
    settings = provenance["backend_settings"]
    assert settings["collective_timeout_s"] == 300.0  # the kit's, read back from the strategy
    assert settings["launcher"] == "mpirun (Open MPI)"
    base = int(settings["workers"][0].rsplit(":", 1)[1])
    assert settings["workers"] == [f"127.0.0.1:{base}", f"127.0.0.1:{base + 1}"]
    assert json.loads(provenance["env"]["TF_CONFIG"])["task"] == {"type": "worker", "index": 0}
    epochs = found[1:-1]
    assert epochs[-1]["loss"] < epochs[0]["loss"]
    assert all(e["ranks"] == 2 and e["steps"] == 4 and "val_loss" in e["metrics"] for e in epochs)
    final = found[-1]
    assert final["weights_agree"] and len(set(final["weights_digest_per_rank"])) == 1
    assert 0.0 < final["quality"]["value"] <= 1.0
    one = kit.records(gw_scale / "gw-1ranks")
    assert one[0]["backend"] == "mwms" and one[0]["backend_settings"]["workers"] is None


def test_sigusr1_on_one_worker_stops_both_and_the_resume_is_bitwise(kit, gw_data, gw_scale, tmp_path):
    run_dir = tmp_path / "run"
    # Checks every 3 of the 4 steps (at 3 and 4): numerics do not change.
    common = ["train", "gw", "--ranks", "2", *MWMS, *GW, "--data", str(gw_data), "--run-dir", str(run_dir),
              "--set", "preemption_check_steps=3", "--port-base", str(free_port_base(2))]  # fmt: skip
    process = kit.start(*common, log=tmp_path / "first.log", **ENV)
    try:
        kit.signal_after_first_checkpoint(process, run_dir, 1, signal.SIGUSR1)  # worker 1 only: they must agree
        assert process.wait(timeout=120) == EXIT_PREEMPTED, (tmp_path / "first.log").read_text()[-2000:]
    finally:
        if process.poll() is None:
            process.kill()
    stop = kit.records(run_dir)[-1]
    assert stop["type"] == "preempted" and stop["reason"] == "SIGUSR1" and stop["signalled_ranks"] == [1]
    state = load_checkpoint(run_dir / "checkpoint.h5").state
    assert (state["epoch"], state["step"]) == (stop["completed_epochs"], stop["step"])
    resumed = kit.run(*common, "--resume", **ENV)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    final = kit.final(run_dir)
    assert final["weights_digest_per_rank"] == kit.final(gw_scale / "gw-2ranks")["weights_digest_per_rank"]


def test_a_worker_killed_mid_epoch_ends_the_job_within_60_s_with_one_line(kit, gw_data, tmp_path):
    run_dir = tmp_path / "run"
    args = ["train", "gw", "--ranks", "2", *MWMS, "--smoke", "--data", str(gw_data), "--run-dir", str(run_dir),
            "--epochs", "50", "--steps-per-epoch", "2", "--no-tensorboard", "--port-base", str(free_port_base(2))]  # fmt: skip
    log = tmp_path / "run.log"
    process = kit.start(*args, log=log, **ENV)
    try:
        killed_at = kit.signal_after_first_checkpoint(process, run_dir, 1, signal.SIGKILL)
        status = process.wait(timeout=60)
        print(f"\n[duration] job ended {time.time() - killed_at:.1f} s after SIGKILL of worker 1 ({status})")
    finally:
        if process.poll() is None:
            process.kill()
    assert status != 0
    errors = [line for line in log.read_text().splitlines() if re.search(r"error|Traceback|^[EWF]0000 ", line, re.I)]
    assert errors == [f"hpcai: error: a rank was killed (SIGKILL); mpirun ended the job (status {status})"]
    assert load_checkpoint(run_dir / "checkpoint.h5").state["epoch"] >= 1


@pytest.mark.parametrize(
    ("workload", "extra", "epochs"),
    [
        # the first two stages ('head': the base frozen, then 'from-40'), one epoch of 2 steps each, 96 galaxies
        ("des", ["--epochs", "2", "--steps-per-epoch", "2", "--set", "data.samples=96"], 2),
        # one epoch of 2 steps at 32x32 (the smoke size): BatchNorm statistics averaged before the checkpoint
        ("resnet50", ["--epochs", "1", "--steps-per-epoch", "2"], 1),
    ],
)
def test_image_workloads_train_with_identical_weights(kit, tmp_path, workload, extra, epochs):
    run_dir = tmp_path / "run"
    start = time.time()
    done = kit.run(
        "train", workload, "--ranks", "2", *MWMS, "--smoke", "--no-tensorboard", *extra,
        "--run-dir", str(run_dir), "--port-base", str(free_port_base(2)), timeout=580, **ENV,
    )  # fmt: skip
    print(f"\n[duration] {workload} --smoke --ranks 2 --backend mwms: {time.time() - start:.1f} s")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    found = kit.records(run_dir)
    assert [r["type"] for r in found] == ["provenance"] + ["epoch"] * epochs + ["final"]
    assert found[0]["backend"] == "mwms"
    final = found[-1]
    assert final["weights_agree"] and len(set(final["weights_digest_per_rank"])) == 1
    assert final["quality"]["images"] >= 2
    if workload == "des":
        assert [e["stage"] for e in found[1:-1]] == ["head", "from-40"]
    # the checkpoint holds the averaged BatchNorm statistics the workers agree on
    assert load_checkpoint(run_dir / "checkpoint.h5").state["finished"]
