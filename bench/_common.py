"""What the benchmarks share: the environment of their TensorFlow and MPI processes, result lines, the load.

Every process a benchmark starts gets the environment of STACK.md: quiet TensorFlow, Open MPI allowed as root
and yielding when idle (without ``OMPI_MCA_mpi_yield_when_idle=1`` two ranks on two cores busy-wait and run at
about half speed). ``ONE_THREAD`` pins TensorFlow to one intra-op and one inter-op thread per process, so that
N processes on N cores do not oversubscribe them; ``hpcai train`` honours the same two variables.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULT = "RESULT "
ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}


def bench_env(**extra: str) -> dict[str, str]:
    """This process's environment plus the kit's TensorFlow settings (tf.keras as Keras 2 on a tf-keras stack),
    quieter still, and Open MPI as STACK.md runs it, then ``extra``."""
    from hpcai_tf.train.tf_environment import tensorflow_environment

    env = {
        **os.environ,
        **tensorflow_environment(),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "OMPI_ALLOW_RUN_AS_ROOT": "1",
        "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
        "OMPI_MCA_mpi_yield_when_idle": "1",
    }
    env.update(extra)
    return env


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
