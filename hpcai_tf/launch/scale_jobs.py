"""``hpcai scale --site S --submit``: one ``hpcai launch`` job per rank count, submitted, waited for, reported.

Each rank count becomes whole nodes of the site's node type: up to one node's worth of ranks (its GPUs, or its
cores on a CPU node) runs on one node, more must fill whole nodes. Every job script is rendered (so every count
is checked against the catalog) before the first is submitted; the scripts go to ``OUT/jobs/``, the scheduler's
output files to ``OUT/`` and the runs to ``OUT/runs/<workload>-<job id>``. ``OUT/scale-jobs.json`` lists the
submitted jobs, so ``hpcai report OUT/runs/*`` can be run later if the wait is interrupted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from hpcai_tf.catalog import NodeType, Site
from hpcai_tf.errors import KitError
from hpcai_tf.files import write_atomic
from hpcai_tf.launch.job_script import LaunchRequest, render_job_script
from hpcai_tf.launch.job_state import JobState, wait_for_jobs
from hpcai_tf.launch.submit import submit_job_script

MANIFEST = "scale-jobs.json"


@dataclass(frozen=True)
class ScaleJob:
    """One submitted job of a scaling study."""

    ranks: int
    nodes: int
    ranks_per_node: int
    script: str
    job_id: str
    run_dir: str


def nodes_for(site: Site, node: NodeType, ranks: int, ranks_per_node: int | None = None) -> tuple[int, int]:
    """``(nodes, ranks per node)`` for ``ranks`` on ``node``: one partial node, or whole nodes of the node's devices
    (or of ``ranks_per_node`` ranks each, when given: ``1`` spreads the ranks one per node)."""
    per, unit = (ranks_per_node, "ranks") if ranks_per_node else (node.devices, node.device_kind)
    if ranks <= per:
        return 1, ranks
    if ranks % per:
        raise KitError(
            f"--ranks: {ranks} ranks do not fill whole nodes of type {node.name} ({per} {unit} each); "
            f"expected at most {per} or a multiple of {per}"
        )
    if ranks // per > node.count:
        raise KitError(
            f"--ranks: site {site.id} has {node.count} node{'s' if node.count != 1 else ''} of type {node.name} "
            f"with {per} {unit} each "
            f"(at most {node.count * per} ranks), got {ranks}"
        )
    return ranks // per, per


@dataclass(frozen=True)
class PlannedJob:
    """One rank count's job script, rendered and not yet submitted."""

    ranks: int
    nodes: int
    ranks_per_node: int
    text: str


def plan_scale_jobs(
    base: LaunchRequest,
    counts: list[int],
    out: Path,
    ranks_per_node: int | None = None,
    render: Callable[[LaunchRequest], str] = render_job_script,
) -> list[PlannedJob]:
    """Render one job script per rank count (each count checked against the catalog), its runs under ``out``."""
    node = base.site.node_type(base.node_type)
    planned = []
    for ranks in counts:
        nodes, per = nodes_for(base.site, node, ranks, ranks_per_node)
        request = replace(base, nodes=nodes, ranks_per_node=per, run_root=os.path.abspath(out))
        planned.append(PlannedJob(ranks, nodes, per, render(request)))
    return planned


def submit_scale_jobs(
    base: LaunchRequest,
    counts: list[int],
    out: Path,
    env: dict[str, str] | None = None,
    ranks_per_node: int | None = None,
) -> list[ScaleJob]:
    """Render one job script per rank count (all before any is submitted), submit each from ``out``."""
    planned = plan_scale_jobs(base, counts, out, ranks_per_node)
    return submit_planned(base, planned, out, lambda text, script: submit_job_script(base.site, text, script, env, out))


def submit_planned(
    base: LaunchRequest, planned: list[PlannedJob], out: Path, submit: Callable[[str, Path], str]
) -> list[ScaleJob]:
    """Write each planned script to ``out/jobs/`` and submit it with ``submit(text, script)`` (its job id)."""
    out = Path(os.path.abspath(out))
    jobs: list[ScaleJob] = []
    for job in planned:
        script = out / "jobs" / f"{base.workload}-{job.ranks}ranks.sh"
        write_atomic(script, job.text)
        try:
            job_id = submit(job.text, script)
        except KitError as err:
            done = ", ".join(f"{_ranks(j.ranks)} as job {j.job_id}" for j in jobs) or "none"
            raise KitError(f"{err} ({_ranks(job.ranks)}; already submitted: {done})") from None
        run_dir = out / "runs" / f"{base.workload}-{job_id}"
        jobs.append(ScaleJob(job.ranks, job.nodes, job.ranks_per_node, str(script), job_id, str(run_dir)))
        _write_manifest(out, base, jobs)
    return jobs


def _write_manifest(out: Path, base: LaunchRequest, jobs: list[ScaleJob]) -> None:
    manifest = {"workload": base.workload, "site": base.site.id, "jobs": [asdict(job) for job in jobs]}
    write_atomic(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")


def announce_jobs(jobs: list[ScaleJob]) -> None:
    """One line per submitted job of a study: its ranks and nodes, its id and its run directory."""
    for job in jobs:
        print(f"hpcai scale: {job.ranks} rank(s) on {job.nodes} node(s): job {job.job_id} -> {job.run_dir}", flush=True)


def wait_and_check(site: Site, jobs: list[ScaleJob], poll_s: float, env: dict[str, str] | None = None) -> list[Path]:
    """Wait for every job to end; the run directories, or a one-line error naming each job that did not succeed."""
    by_id = {job.job_id: job for job in jobs}
    kind = site.scheduler.kind

    def report(state: JobState) -> None:
        print(f"hpcai scale: job {state.job_id} ({_ranks(by_id[state.job_id].ranks)}): {state.state}", flush=True)

    final = wait_for_jobs(kind, by_id, poll_s=poll_s, env=env, report=report)
    failed = [
        f"job {job.job_id} ({_ranks(job.ranks)}) ended {final[job.job_id].state} "
        f"(exit {final[job.job_id].exit_code}); see {job.run_dir}/job.log"
        for job in jobs
        if not final[job.job_id].succeeded(kind)
    ]
    if failed:
        raise KitError("scale: " + "; ".join(failed))
    return [Path(job.run_dir) for job in jobs]


def _ranks(count: int) -> str:
    return f"{count} rank" if count == 1 else f"{count} ranks"
