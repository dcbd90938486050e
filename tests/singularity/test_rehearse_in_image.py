"""``hpcai rehearse --runtime singularity --image SIF``: a site's job script across 2 emulated nodes, each rank
started by the site's launcher inside the local SIF on its own node (the hybrid MPI model across nodes).

The SIF and the Apptainer harness are this session's (``local_sif``, ``harness``: nothing is built again). HAL
starts its ranks with ``srun --mpi=pmix``, Bridges-AI with ``mpirun``; each node's ``/tmp`` (where the PMIx
rendezvous lives) is its own, and the harness binds it into the container on that node. The site's script is run
as ``hpcai launch --runtime singularity --image SIF`` renders it: only ``module load`` and nothing else differs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from emulated_testing import run_stopping_cluster

from hpcai_tf.train.metrics_log import read_records

pytestmark = [pytest.mark.singularity, pytest.mark.slurm, pytest.mark.slow]

HPCAI = [sys.executable, "-m", "hpcai_tf"]


@pytest.fixture(scope="module")
def work() -> Iterator[Path]:
    """A directory under /var/tmp (each emulated node has its own /tmp) with small AI-GW data."""
    root = Path(tempfile.mkdtemp(prefix="hpcai-test-rehearse-image-", dir="/var/tmp"))
    try:
        made = subprocess.run(
            [*HPCAI, "data", "gw", "--smoke", "--n", "160", "--out", str(root / "gw.h5")],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def image_digests() -> dict[str, str]:
    return {}


@pytest.mark.timeout(600)
@pytest.mark.parametrize(("site", "launcher"), [("hal", "srun"), ("bridges-ai", "mpirun")])
def test_two_nodes_one_rank_each_in_the_sif(harness, local_sif, work, image_digests, site, launcher):
    """2 nodes, one rank each, in the SIF (the provenance says so), hosts differ, identical digests, COMPLETED."""
    cluster_dir = work / site
    # The harness binds the kit, the working directory and /tmp into the container; the data lies beside the
    # cluster, and HPCAI_TEST_SIF may name a SIF outside the kit.
    env = harness.env(HPCAI_APPTAINER_BIND=f"{work}:{local_sif.path.parent}")
    train = ("--smoke", "--data", str(work / "gw.h5"), "--epochs", "2", "--deterministic", "--no-tensorboard")
    result = run_stopping_cluster(
        "rehearse", "gw", "--site", site, "--nodes", "2", "--runtime", "singularity", "--image",
        str(local_sif.path), "--cluster-dir", str(cluster_dir), "--timeout", "400", "--", *train,
        env=env, cwd=work, timeout=560,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-3000:]
    assert "hpcai rehearse: swaps: module load (no environment modules here)\n" in out
    assert "+: module load singularity\n" in out and "\n-  singularity exec" not in out
    node = {"hal": "ac922", "bridges-ai": "apollo6500"}[site]
    hosts = [f"{site}-{node}-1", f"{site}-{node}-2"]
    assert f"hpcai rehearse: rank 0: host {hosts[0]}\nhpcai rehearse: rank 1: host {hosts[1]}\n" in out
    job_id = re.search(r"hpcai rehearse: job (\d+): COMPLETED \(exit 0:0\)", out)[1]
    script = (cluster_dir / "shared" / "jobs" / "gw-rehearsal.sh").read_text()
    container = rf"  singularity exec --nv {re.escape(str(local_sif.path))} \\\n"
    assert re.search(rf"^{launcher} .*\n(  -x .*\n)?{container}", script, re.M), script  # mpirun: -x between
    records = read_records(cluster_dir / "shared" / "runs" / f"gw-{job_id}" / "metrics.jsonl")
    first, final = records[0], records[-1]
    assert first["hostnames"] == hosts and first["ranks"] == 2
    assert first["image"] is not None and first["image"]["site"] == "local", "the ranks did not run in the image"
    digests = final["weights_digest_per_rank"]
    assert final["type"] == "final" and len(digests) == 2 and len(set(digests)) == 1, final
    assert set(image_digests.values()) <= {digests[0]}, image_digests  # deterministic: one digest in the image
    image_digests[site] = digests[0]
    pids = [int(p) for p in re.search(r"daemon pids (.*)", out)[1].replace("=", " ").split()[1::2]]
    assert len(pids) == 4 and not [pid for pid in pids if Path(f"/proc/{pid}").exists()], pids
    ended = re.search(r"job \d+: COMPLETED .*", out)[0]
    print(f"\n{site} ({launcher}) in {local_sif.path.name}: {ended}")
