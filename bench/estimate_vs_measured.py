"""The performance model against a measurement: 2-rank efficiency of AI-GW (smoke) on the local site.

    .venv/bin/python bench/estimate_vs_measured.py

Runs ``hpcai scale gw --ranks 1,2`` (real mpirun, real Horovod), then ``hpcai estimate`` from the 1-rank run's
step time and prints the measured and the predicted 2-rank efficiency side by side. The model sees only the
allreduce over shared memory; ranks on one CPU node also share its caches and memory bandwidth, which it does
not model (docs/performance-model.md), so the gap between the two is the figure of interest.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from hpcai_tf.catalog import load_site
from hpcai_tf.estimate import Communication, Workload, predict
from hpcai_tf.model_size import model_size
from hpcai_tf.report import read_run, read_runs, scaling_rows


def main() -> None:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMPI_ALLOW_RUN_AS_ROOT": "1",
           "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OMPI_MCA_mpi_yield_when_idle": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        data = out / "gw.h5"
        hpcai = [sys.executable, "-m", "hpcai_tf"]
        subprocess.run([*hpcai, "data", "gw", "--smoke", "--n", "960", "--out", str(data)], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        subprocess.run([*hpcai, "scale", "gw", "--ranks", "1,2", "--out", str(out), "--", "--smoke", "--data",
                        str(data), "--epochs", "4", "--no-tensorboard"], check=True, env=env, stdout=subprocess.DEVNULL)
        measured = {row.ranks: row for row in scaling_rows(read_runs([out / "gw-1ranks", out / "gw-2ranks"]))}
        one = read_run(out / "gw-1ranks")
    size = model_size("gw", smoke=True)
    site = load_site("local")
    workload = Workload("gw", one.step_time_s, one.batch_per_rank, size.parameters, size.tensors, size.epochs,
                        size.dataset_size)
    predicted = {row.ranks: row for row in predict(workload, site, site.node_type(), [1, 2], Communication())}
    print(f"AI-GW smoke model ({size.parameters:,} parameters), batch {one.batch_per_rank} per rank, local site")
    print(f"  measured:  1 rank {measured[1].throughput:8.1f} samples/s, 2 ranks {measured[2].throughput:8.1f}, "
          f"efficiency {measured[2].efficiency:.3f}")
    print(f"  predicted: 1 rank {predicted[1].throughput:8.1f} samples/s, 2 ranks {predicted[2].throughput:8.1f}, "
          f"efficiency {predicted[2].efficiency:.3f}")
    print(f"  predicted / measured efficiency: {predicted[2].efficiency / measured[2].efficiency:.3f}")


if __name__ == "__main__":
    main()
