"""What the benchmarks share: the environment of their TensorFlow and MPI processes, result lines, the load.

Every process a benchmark starts gets the kit's settings: quiet TensorFlow, and Open MPI as
:mod:`hpcai_tf.train.mpirun_line` runs it (allowed as root, yielding when idle: without
``OMPI_MCA_mpi_yield_when_idle=1`` two ranks on two cores busy-wait and run at about half speed). A process on
this machine gets them on top of this process's environment (:func:`bench_env`); a container gets them alone, its
image's environment supplying the rest (:func:`container_env`). ``ONE_THREAD`` pins TensorFlow to one intra-op and
one inter-op thread per process, so that N processes on N cores do not oversubscribe them; ``hpcai train``
honours the same two variables.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULT = "RESULT "
ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
SMALL_RESNET = ["--smoke", "--synthetic", "--set", "model.image_size=64", "--batch-per-rank", "16"]
SMALL_RESNET += ["--steps-per-epoch", "12", "--epochs", "3"]
"""``hpcai train resnet50`` arguments of the benchmarks' small-image ResNet-50: 64x64 synthetic images, batch 16
per rank, 3 epochs of 12 steps."""


def kit_settings() -> dict[str, str]:
    """What every benchmark process gets: TensorFlow's C++ side silent but for errors, Open MPI as the kit runs it."""
    from hpcai_tf.train.mpirun_line import OPEN_MPI_AS_ROOT, OPEN_MPI_SHARED_NODE

    return {"TF_CPP_MIN_LOG_LEVEL": "3", **OPEN_MPI_AS_ROOT, **OPEN_MPI_SHARED_NODE}


def bench_env(**extra: str) -> dict[str, str]:
    """A process on this machine: this process's environment, the kit's TensorFlow settings for this Python's
    stack (tf.keras as Keras 2 on a tf-keras stack), :func:`kit_settings`, then ``extra``."""
    from hpcai_tf.train.tf_environment import tensorflow_environment

    return {**os.environ, **tensorflow_environment(), **kit_settings(), **extra}


def container_env(**extra: str) -> dict[str, str]:
    """A container: :func:`kit_settings` and Open MPI's in-container transport, then ``extra``; nothing of this
    process's environment or stack (the image sets its own, e.g. ``TF_USE_LEGACY_KERAS``)."""
    from hpcai_tf.train.mpirun_line import OPEN_MPI_IN_CONTAINER

    return {**kit_settings(), **OPEN_MPI_IN_CONTAINER, **extra}


def hpcai(*args: str, env: dict[str, str] | None = None) -> None:
    """Run ``hpcai ARGS`` (this Python, this checkout) to completion; its output is dropped, a failure raises."""
    subprocess.run(
        [sys.executable, "-m", "hpcai_tf", *args],
        check=True,
        cwd=REPO,
        env=env or bench_env(),
        stdout=subprocess.DEVNULL,
    )


def print_result(value: Any) -> None:
    """A worker's answer to its driver: one ``RESULT <json>`` line on stdout."""
    print(RESULT + json.dumps(value), flush=True)


def results(stdout: str) -> list[Any]:
    """Every ``RESULT`` line's value in a worker's output."""
    return [json.loads(line[len(RESULT) :]) for line in stdout.splitlines() if line.startswith(RESULT)]


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as ``uptime`` prints them."""
    return "load average {:.2f}, {:.2f}, {:.2f}".format(*os.getloadavg())


def after_warm_up(epochs: list[float]) -> float:
    """The median of per-epoch figures after the first epoch (which builds the graph); the first alone if it is all."""
    return statistics.median(epochs[1:] or epochs)


def epoch_throughputs(run_dir: Path) -> list[float]:
    """Global samples/s of every epoch of the run in ``run_dir``, in order."""
    from hpcai_tf.train.metrics_log import METRICS_FILE, read_records

    records = read_records(run_dir / METRICS_FILE)
    return [r["global_samples_per_sec"] for r in records if r.get("type") == "epoch"]


def run_throughput(run_dir: Path) -> float:
    """A run directory's global samples/s: :func:`after_warm_up` of its :func:`epoch_throughputs`."""
    return after_warm_up(epoch_throughputs(run_dir))
