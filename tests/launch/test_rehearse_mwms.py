"""``hpcai rehearse --backend mwms``: HAL's job script on 2 emulated nodes, srun starting one MWMS worker per node.

No MPI is involved: each worker builds its TF_CONFIG from srun's step variables (node list, tasks per node), the
emulated nodes share 127.0.0.1 (the cluster's environment sets HPCAI_WORKER_ADDRESS) and each worker listens on
its own port. The job must complete, with the workers on different hosts and identical trainable weights.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import HPCAI, run_hpcai

from hpcai_tf.train.backend_mwms import free_port_base
from hpcai_tf.train.metrics_log import read_records


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.timeout(300)
def test_hal_two_nodes_one_mwms_worker_each_by_srun():
    root = Path(tempfile.mkdtemp(prefix="hpcai-test-rehearse-mwms-", dir="/var/tmp"))  # the nodes have their own /tmp
    try:
        made = run_hpcai("data", "gw", "--smoke", "--n", "160", "--out", str(root / "gw.h5"), timeout=120)
        assert made.returncode == 0, made.stderr
        base = free_port_base(2)
        train = [
            "--smoke",
            "--data",
            str(root / "gw.h5"),
            "--epochs",
            "1",
            "--no-tensorboard",
            "--port-base",
            str(base),
        ]
        done = subprocess.run(
            [*HPCAI, "rehearse", "gw", "--site", "hal", "--nodes", "2", "--runtime", "none", "--backend", "mwms",
             "--cluster-dir", str(root / "cluster"), "--timeout", "200", "--", *train],
            capture_output=True, text=True, cwd=root, timeout=280,
        )  # fmt: skip
        out = done.stdout
        assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
        assert "hpcai rehearse: rank 0: host hal-ac922-1\nhpcai rehearse: rank 1: host hal-ac922-2\n" in out
        job_id = re.search(r"hpcai rehearse: job (\d+): COMPLETED \(exit 0:0\)", out)[1]
        records = read_records(root / "cluster" / "shared" / "runs" / f"gw-{job_id}" / "metrics.jsonl")
        provenance, final = records[0], records[-1]
        assert provenance["backend"] == "mwms" and provenance["launcher"] == "srun"
        assert provenance["backend_settings"]["launcher"] == "srun"
        assert provenance["backend_settings"]["workers"] == [f"127.0.0.1:{base}", f"127.0.0.1:{base + 1}"]
        assert final["type"] == "final" and len(set(final["weights_digest_per_rank"])) == 1
        script = (root / "cluster" / "shared" / "jobs" / "gw-rehearsal.sh").read_text()
        assert "srun --mpi=pmix --ntasks-per-node=1 --cpus-per-task=160 --kill-on-bad-exit=1 \\\n" in script
    finally:
        shutil.rmtree(root, ignore_errors=True)
