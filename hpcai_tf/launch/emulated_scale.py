"""``hpcai scale --site S --submit --emulate``: a scaling study's batch jobs on an emulated cluster of the site.

The site's job scripts are rendered as ``hpcai scale --submit`` renders them, with the stand-ins of
``hpcai rehearse`` (:mod:`hpcai_tf.launch.rehearsal`: the host's ``hpcai``, ``module load`` as a no-op), every count
before the cluster starts, so a count the site cannot hold is refused before a daemon runs. Each count becomes
whole nodes of ``ranks_per_node`` ranks (default one rank per node, so a 1/2/4-rank study spans 1, 2 and 4 nodes);
the cluster (:mod:`hpcai_tf.launch.emulated_cluster`) has as many nodes as the largest job. The jobs are submitted
with ``sbatch --dependency=singleton`` (they share one job name), so they run one after another: the emulated
nodes share this machine's cores, and two jobs at once would measure each other. The runs go to ``OUT/runs``,
which the nodes see as the site's shared filesystem (``OUT`` must not be under ``/tmp``, which each node replaces).
Job ids continue after the runs already in ``OUT/runs`` (a run directory is named after its job).
The cluster is stopped by PID at the end; its directory is removed when every job succeeded, else kept.
"""

from __future__ import annotations

import os
from pathlib import Path

from hpcai_tf.launch.emulated_cluster import (
    EmulatedCluster,
    check_host_environment,
    check_train_args_visible,
    check_visible_to_nodes,
    default_root,
    settle_root,
    shape_for_site,
)
from hpcai_tf.launch.job_script import LaunchRequest, host_hpcai
from hpcai_tf.launch.rehearsal import rehearsal_script
from hpcai_tf.launch.scale_jobs import announce_jobs, plan_scale_jobs, submit_planned, wait_and_check

DEFAULT_RANKS_PER_NODE = 1
SERIAL = "--dependency=singleton"
"""One job at a time: every job of a study has the same name (``hpcai-<workload>``)."""


def emulated_scale(
    base: LaunchRequest, counts: list[int], out: Path, ranks_per_node: int | None, poll_s: float
) -> list[Path]:
    """Run one job per rank count on an emulated cluster of ``base.site``; the run directories, in count order."""
    out = Path(os.path.abspath(out))
    check_visible_to_nodes(out, "--out", "the runs' directory")
    check_host_environment("scale --emulate")
    check_train_args_visible(base.train_args, "scale --emulate")
    hpcai = host_hpcai()
    planned = plan_scale_jobs(
        base,
        counts,
        out,
        ranks_per_node or DEFAULT_RANKS_PER_NODE,
        lambda request: rehearsal_script(request, Path("/"), hpcai).submitted,  # the runs stay under OUT
    )
    shape = shape_for_site(base.site, max(job.nodes for job in planned), base.node_type)
    cluster = EmulatedCluster(shape, default_root(), first_job_id=next_job_id(out / "runs", base.workload))
    succeeded = False
    try:
        with cluster:
            print(
                f"hpcai scale: emulated cluster {cluster.root}: nodes {', '.join(cluster.node_names)}; "
                f"daemon pids {cluster.pids_text}",
                flush=True,
            )
            submit = lambda text, script: cluster.sbatch(script, SERIAL, field="--emulate", cwd=out)  # noqa: E731
            jobs = submit_planned(base, planned, out, submit)
            announce_jobs(jobs)
            run_dirs = wait_and_check(base.site, jobs, poll_s, env=cluster.env)
        succeeded = True
        return run_dirs
    finally:
        settle_root(cluster.root, not succeeded, "scale")


def next_job_id(runs: Path, workload: str) -> int:
    """One past the highest job id of the runs already under ``runs`` (``<workload>-<id>``): a run directory is
    named after its job, and a fresh cluster would number from 1 again and resume an earlier study's run."""
    tails = [path.name.removeprefix(f"{workload}-") for path in runs.glob(f"{workload}-*")]
    return max((int(tail) for tail in tails if tail.isdigit()), default=0) + 1
