"""Fixtures for the training tests: ``kit`` runs ``hpcai`` as a user would (in a subprocess, under a real
mpirun for ``--ranks 2``, with timeouts), reads metrics and finds the ranks of a running job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from hpcai_tf.train.tf_environment import prepare_tensorflow, tensorflow_environment

prepare_tensorflow()  # for the tests that import TensorFlow in this process: the stack's Keras, quiet C++ logs

REPO = Path(__file__).resolve().parents[2]
HPCAI = [sys.executable, "-m", "hpcai_tf"]


def hpcai_env(**extra: str) -> dict[str, str]:
    """The environment of a test run: the kit's TensorFlow settings (the stack's Keras, quiet C++ logs), Open MPI
    allowed as root and yielding when idle."""
    env = dict(os.environ)
    env.update(
        {
            **tensorflow_environment(),
            "OMPI_MCA_mpi_yield_when_idle": "1",
            "OMPI_ALLOW_RUN_AS_ROOT": "1",
            "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
            "PYTHONUNBUFFERED": "1",
            "HPCAI_PROVENANCE": env.get("HPCAI_PROVENANCE", "/nonexistent/provenance.json"),
        }
    )
    env.update(extra)
    return env


def run_hpcai(*args: str, timeout: float = 300, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    """Run ``hpcai ARGS`` to completion (killed after ``timeout`` s) and return it with its output."""
    return subprocess.run(
        [*HPCAI, *args],
        cwd=cwd or REPO,
        env=hpcai_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_hpcai(*args: str, cwd: Path | None = None, log: Path, **env: str) -> subprocess.Popen:
    """Start ``hpcai ARGS`` in the background, output to ``log``."""
    handle = open(log, "w")  # the child keeps it open; closed when the test process ends
    return subprocess.Popen(
        [*HPCAI, *args],
        cwd=cwd or REPO,
        env=hpcai_env(**env),
        stdout=handle,
        stderr=subprocess.STDOUT,
        text=True,
    )


def records(run_dir: Path) -> list[dict]:
    """The records of a run's metrics.jsonl."""
    from hpcai_tf.train.metrics_log import read_records

    return read_records(run_dir / "metrics.jsonl")


def wait_for(predicate, timeout: float, what: str, process: subprocess.Popen | None = None) -> None:
    """Poll ``predicate`` until true; fail after ``timeout`` s or if ``process`` ended first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if process is not None and process.poll() is not None:
            pytest.fail(f"the run ended (status {process.returncode}) before {what}")
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def rank_processes(parent: subprocess.Popen) -> dict[int, object]:
    """{rank: psutil.Process} of the ranks that ``parent`` (hpcai --ranks N) started through mpirun."""
    import psutil

    ranks = {}
    for child in psutil.Process(parent.pid).children(recursive=True):
        try:
            rank = child.environ().get("OMPI_COMM_WORLD_RANK")
            if rank is not None and "hpcai_tf" in " ".join(child.cmdline()):
                ranks[int(rank)] = child
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return ranks


def final_record(run_dir: Path) -> dict:
    """The last record of a run, which must be its ``final`` one."""
    final = records(run_dir)[-1]
    assert final["type"] == "final", final
    return final


def signal_after_first_checkpoint(process: subprocess.Popen, run_dir: Path, rank: int, signum: int) -> float:
    """Wait (up to 300 s) for the run's first checkpoint, then send ``signum`` to ``rank`` alone; when it was sent."""
    wait_for(lambda: (run_dir / "checkpoint.h5").exists(), 300, "the first checkpoint", process)
    rank_processes(process)[rank].send_signal(signum)
    return time.time()


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def json_line(text: str) -> dict:
    return json.loads(last_line(text))


@pytest.fixture(scope="session")
def kit() -> SimpleNamespace:
    """The helpers above, for tests (``--import-mode=importlib`` lets tests import no sibling module)."""
    return SimpleNamespace(
        hpcai=HPCAI,
        run=run_hpcai,
        env=hpcai_env,
        start=start_hpcai,
        records=records,
        wait_for=wait_for,
        rank_processes=rank_processes,
        final=final_record,
        signal_after_first_checkpoint=signal_after_first_checkpoint,
        last_line=last_line,
        json_line=json_line,
    )


@pytest.fixture(scope="session")
def gw_smoke_data(tmp_path_factory) -> Path:
    """A smoke-size GW file (640 waveforms of 1024 samples), generated once by `hpcai data gw`."""
    out = tmp_path_factory.mktemp("gw-data") / "gw-smoke.h5"
    done = run_hpcai("data", "gw", "--smoke", "--out", str(out), "--workers", "2", timeout=300)
    assert done.returncode == 0, done.stderr
    return out
