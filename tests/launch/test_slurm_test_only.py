"""The HAL and Bridges-AI scripts, checked by a real slurmctld (``sbatch --test-only``) against their catalog shape.

The test cluster (tests/slurm_testing.py) carries each Slurm GPU site's partitions and node types as powered-down cloud
nodes with the catalog's threads and GPU generic resources. ``--test-only`` makes slurmctld parse every
``#SBATCH`` line and find when and where the job would start; nothing runs. This checks the directives against
the catalog's description of the sites, as Slurm 22.05 reads them, not against the sites themselves.
"""

from __future__ import annotations

import pytest

from hpcai_tf.catalog import load_site
from hpcai_tf.launch.job_script import LaunchRequest, render_job_script

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.timeout(120)]

FITS = [
    ("hal", 1, None, "gpux1"),
    ("hal", 2, None, "gpux2"),
    ("hal", 8, None, "gpux8"),
    ("hal", 16, None, "gpux16"),
    ("bridges-ai", 1, None, "GPU-AI"),
    ("bridges-ai", 9, None, "GPU-AI"),
    ("bridges-ai", 1, "dgx2", "GPU-AI"),
]


def _script(site_id: str, nodes: int, node_type: str | None, tmp_path) -> str:
    request = LaunchRequest(
        workload="gw", site=load_site(site_id), nodes=nodes, node_type=node_type, image="/images/hpcai.sif"
    )
    path = tmp_path / f"{site_id}-{nodes}.sh"
    path.write_text(render_job_script(request))
    return str(path)


@pytest.mark.parametrize(("site_id", "nodes", "node_type", "partition"), FITS)
def test_slurm_accepts_the_script(slurm_cluster, tmp_path, site_id, nodes, node_type, partition):
    """slurmctld would start the job in the catalog's partition on the right number of nodes."""
    result = slurm_cluster.run("sbatch", "--test-only", _script(site_id, nodes, node_type, tmp_path), check=False)
    assert result.returncode == 0, result.stderr
    assert f"in partition {partition}" in result.stderr
    assert "to start at" in result.stderr


def test_slurm_refuses_what_the_site_lacks(slurm_cluster, tmp_path):
    """The check can fail: one GPU more than a HAL node has, or a 2-node job in the 1-node partition."""
    script = _script("hal", 1, None, tmp_path)
    with open(script) as handle:
        text = handle.read()
    too_many_gpus = tmp_path / "gpus.sh"
    too_many_gpus.write_text(text.replace("--gres=gpu:v100:4", "--gres=gpu:v100:5"))
    wrong_partition = tmp_path / "partition.sh"
    wrong_partition.write_text(text.replace("--nodes=1", "--nodes=2"))
    for path in (too_many_gpus, wrong_partition):
        result = slurm_cluster.run("sbatch", "--test-only", str(path), check=False)
        assert result.returncode != 0, path.name
        assert "allocation failure" in result.stderr
