"""``hpcai rehearse``: a site's real job script, run end to end on an emulated multi-node cluster here.

The site's script is rendered as ``hpcai launch`` renders it; its stand-ins (:mod:`hpcai_tf.launch.rehearsal`)
are printed as a unified diff; the cluster (:mod:`hpcai_tf.launch.emulated_cluster`) is shaped after the site,
the script submitted with ``sbatch`` (the stand-in of a site wrapper such as ``swbatch``), and the job waited
for. The ranks run the host's ``hpcai`` (``--runtime none``) or, with ``--runtime singularity --image SIF``, the
image on every node. The report says per rank its host (the run's provenance record), whether every rank ended
with the same trainable weights (its final record) and the job's end state; with ``--preempt`` also where the
run stopped on USR1 and where the requeued job resumed. A node whose slurmd exits is named in one line as soon
as the job has left its nodes. The cluster is stopped by PID at the end, also on failure or interrupt; a
directory it made itself is removed after a success (``--keep`` keeps it) and stays after a failure for
inspection (the job's log is ``shared/runs/<run>/job.log``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from hpcai_tf.commands.launch import _count, add_backend_option, add_job_options, launch_request
from hpcai_tf.errors import KitError
from hpcai_tf.train import WORKLOADS

if TYPE_CHECKING:
    from hpcai_tf.catalog import Site

DEFAULT_TIMEOUT_S = 900
POLL_S = 1.0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``rehearse``."""
    rehearse = sub.add_parser(
        "rehearse",
        help="run a site's job script on an emulated multi-node Slurm cluster on this machine",
        description="Render a Slurm site's job script, swap what cannot run here for its stand-ins (printed as a "
        "diff), start an emulated cluster shaped after the site (one slurmd per node, each with its own hostname, "
        "/tmp and /dev/shm), submit the script, wait, and report each rank's host, whether the ranks' final "
        "weights agree and the job's end state. Arguments after `--` go to `hpcai train`.",
        usage="hpcai rehearse WORKLOAD --site S [--nodes N] [--runtime none] [options] [-- TRAIN_ARGS ...]",
    )
    rehearse.add_argument("workload", metavar="WORKLOAD", help=f"workload to train ({', '.join(WORKLOADS)})")
    rehearse.add_argument("--site", required=True, help="a Slurm site id from the catalog")
    rehearse.add_argument("--nodes", default="2", metavar="N", help="emulated nodes of the job (default: 2)")
    rehearse.add_argument(
        "--ranks-per-node", metavar="R", help="ranks per node (default: 1 on several nodes, else the site's)"
    )
    rehearse.add_argument(
        "--run-root",
        metavar="DIR",
        help="the run root on the site's shared filesystem; rehearsed under the cluster's shared directory",
    )
    add_backend_option(rehearse)
    add_job_options(rehearse)
    rehearse.add_argument(
        "--cluster-dir",
        type=Path,
        metavar="DIR",
        help="the emulated cluster's files, not under /tmp (default: a new directory under /var/tmp)",
    )
    rehearse.add_argument(
        "--keep",
        action="store_true",
        help="keep the cluster's new directory after a successful rehearsal (one that fails is always kept)",
    )
    rehearse.add_argument(
        "--preempt",
        action="store_true",
        help="once training has started, send USR1 to the batch shell, as the site's --signal=B:USR1 does before "
        "the time limit: the ranks must checkpoint, the job requeue and resume across the nodes, and complete",
    )
    rehearse.add_argument(
        "--timeout",
        default=str(DEFAULT_TIMEOUT_S),
        metavar="SECONDS",
        help=f"give up on the job after this long (default: {DEFAULT_TIMEOUT_S})",
    )
    rehearse.set_defaults(func=_rehearse, passthrough_to="hpcai train")


def refuse_non_slurm(site: Site) -> None:
    """One line for a site this machine cannot emulate (no LSF here)."""
    from hpcai_tf.catalog import load_catalog

    if site.scheduler.kind != "slurm":
        slurm = ", ".join(s.id for s in load_catalog() if s.scheduler.kind == "slurm")
        raise KitError(
            f"--site: site {site.id} runs {site.scheduler.kind} with {site.scheduler.launcher}, which cannot run "
            f"here; rehearse emulates Slurm sites only ({slurm})"
        )


def _rehearse(args: argparse.Namespace) -> int:
    from hpcai_tf.catalog import load_site
    from hpcai_tf.launch.emulated_cluster import (
        EmulatedCluster,
        check_host_environment,
        check_root,
        check_train_args_visible,
        default_root,
        settle_root,
        shape_for_site,
    )
    from hpcai_tf.launch.job_script import host_hpcai
    from hpcai_tf.launch.rehearsal import in_image, rehearsal_request, rehearsal_script

    refuse_non_slurm(load_site(args.site))
    nodes = _count(args.nodes, "--nodes")
    timeout = _count(args.timeout, "--timeout")
    if timeout is None or timeout < 10:
        raise KitError(f"--timeout: expected at least 10 seconds, got {args.timeout!r}")
    ranks = _count(args.ranks_per_node, "--ranks-per-node")
    if ranks is None and nodes is not None and nodes > 1:
        ranks = 1
    request = launch_request(args, nodes=nodes, ranks_per_node=ranks, run_root=args.run_root)  # type: ignore[arg-type]
    root = check_root(args.cluster_dir, "--cluster-dir") if args.cluster_dir else None
    hpcai = None if in_image(request) else host_hpcai()
    rehearsal_script(request, Path("/shared"), hpcai)  # every refusal before a file is written or a daemon starts
    if in_image(request):
        check_image(request.runtime, request.image)  # type: ignore[arg-type]
    else:
        check_host_environment("rehearse")
    check_train_args_visible(request.train_args, "rehearse")
    shape = shape_for_site(request.site, request.nodes, request.node_type)
    cluster = EmulatedCluster(shape, root or default_root())
    status = 1
    try:
        rehearsal = rehearsal_script(request, cluster.shared, hpcai)
        print(f"hpcai rehearse: swaps: {'; '.join(rehearsal.swaps)}")
        sys.stdout.write(rehearsal.diff)
        sys.stdout.flush()
        with cluster:
            print(
                f"hpcai rehearse: cluster {cluster.root}: nodes {', '.join(cluster.node_names)}; "
                f"daemon pids {cluster.pids_text}",
                flush=True,
            )
            moved = rehearsal_request(request, cluster.shared, hpcai).run_root  # where the submitted script's runs go
            run_root = Path(moved) if moved else None
            status = run_rehearsal(cluster, rehearsal.submitted, request.workload, timeout, run_root, args.preempt)
        return status
    finally:
        if root is None:
            settle_root(cluster.root, args.keep or status != 0, "rehearse", " (--keep keeps it)")


def check_image(runtime: str, image: str) -> None:
    """In an image: the runtime on PATH, and the image a file every emulated node can see."""
    import shutil

    from hpcai_tf.launch.emulated_cluster import check_visible_to_nodes

    if shutil.which(runtime) is None:
        raise KitError(
            f"--runtime: {runtime} is not on PATH (on a machine without it, scripts/apptainer-harness.sh prepare, "
            "then the PATH that `scripts/apptainer-harness.sh env` prints)"
        )
    if not Path(image).is_file():
        raise KitError(f"--image: no image file {image}; expected a SIF every emulated node can read")
    check_visible_to_nodes(Path(image), "--image")


def run_rehearsal(
    cluster, script_text: str, workload: str, timeout: float, run_root: Path | None = None, preempt: bool = False
) -> int:
    """Submit, wait (noticing a lost node; with ``preempt``, signalling the job once training has started), then
    report; the exit status of ``hpcai rehearse``. Runs go to ``run_root/runs`` (default: the shared directory)."""
    from hpcai_tf.files import write_atomic
    from hpcai_tf.launch.job_state import query_state
    from hpcai_tf.train.metrics_log import METRICS_FILE

    shared = cluster.shared
    script = shared / "jobs" / f"{workload}-rehearsal.sh"
    write_atomic(script, script_text)
    job_id = cluster.sbatch(script, field="rehearse")
    run_dir = (run_root or shared) / "runs" / f"{workload}-{job_id}"
    print(f"hpcai rehearse: job {job_id} submitted; its log: {run_dir / 'job.log'}", flush=True)
    started = time.monotonic()
    lost: list[str] = []
    signalled = False
    state = query_state("slurm", job_id, cluster.env)
    while not state.ended("slurm"):
        if time.monotonic() - started > timeout:
            fields = _job_fields(cluster, job_id)
            raise KitError(
                f"rehearse: job {job_id} not ended after {timeout:.0f} s (--timeout); last {state.state} "
                f"(reason {fields.get('Reason', 'unknown')}); logs under {cluster.root / 'log'}"
            )
        lost = lost or cluster.lost_nodes()
        if preempt and not signalled and state.state == "RUNNING" and _training_started(run_dir / METRICS_FILE):
            signalled = preempt_job(cluster, job_id)
        time.sleep(POLL_S)
        state = query_state("slurm", job_id, cluster.env)
        if lost and state.state != "RUNNING":
            break  # Slurm has reacted to the lost node: the job ended, or it was requeued (and waits for nodes)
    elapsed = time.monotonic() - started
    print(f"hpcai rehearse: job {job_id}: {state.state} (exit {state.exit_code}) after {elapsed:.0f} s", flush=True)
    lost = lost or cluster.lost_nodes()
    if lost:
        if state.ended("slurm"):
            how = f"the job ended {state.state} (exit {state.exit_code})"
        else:
            if _restarts(_job_fields(cluster, job_id)):
                how = f"Slurm requeued the job (to wait for nodes), now {state.state}"
            else:
                how = f"the job's script exited (exit {state.exit_code}), now {state.state}"
        print(
            f"hpcai: error: rehearse: node {', '.join(lost)} lost during job {job_id} (its slurmd exited); "
            f"{how}; see {run_dir / 'job.log'}",
            file=sys.stderr,
        )
        return 1
    restarts = _restarts(_job_fields(cluster, job_id)) if preempt else None
    return report_run(run_dir, job_id, state.state, state.exit_code, restarts=restarts)


def _job_fields(cluster, job_id: str) -> dict[str, str]:
    """``scontrol show job -o JOB`` on the emulated cluster, as fields (empty once Slurm has forgotten the job)."""
    from hpcai_tf.launch.job_state import scontrol_fields

    return scontrol_fields(cluster.run("scontrol", "show", "job", "-o", job_id, check=False).stdout)


def _restarts(fields: dict[str, str]) -> int:
    """How often Slurm has requeued the job (its ``Restarts`` field; 0 when absent)."""
    return int(fields.get("Restarts") or 0)


def _training_started(metrics: Path) -> bool:
    """The run has written its first record: its ranks have set up Horovod and their preemption handlers."""
    try:
        return metrics.stat().st_size > 0
    except OSError:
        return False


def preempt_job(cluster, job_id: str) -> bool:
    """USR1 to the job's batch shell (``scancel --signal=USR1 --batch``), as Slurm's ``--signal=B:USR1@N`` sends it."""
    sent = cluster.run("scancel", "--signal=USR1", "--batch", job_id, check=False)
    if sent.returncode != 0:
        return False  # not yet (or no longer) running its batch step: tried again at the next poll
    print(f"hpcai rehearse: job {job_id}: training started; USR1 sent to its batch shell (preemption)", flush=True)
    return True


def report_run(run_dir: Path, job_id: str, state: str, exit_code: str, restarts: int | None = None) -> int:
    """Per rank its host, whether the ranks' final weights agree; 0 if the job completed with agreeing weights.

    With ``restarts`` (a preempted rehearsal: the job's ``Restarts``), also the preemption and the resume, which
    must both be in the run's records: a ``preempted`` record, then a run that resumed from its checkpoint."""
    from hpcai_tf.train.metrics_log import METRICS_FILE, read_records

    metrics = run_dir / METRICS_FILE
    records = read_records(metrics) if metrics.exists() else []
    provenance = next((r for r in reversed(records) if r.get("type") == "provenance"), None)
    final = records[-1] if records and records[-1].get("type") == "final" else None
    for rank, host in enumerate(provenance.get("hostnames", []) if provenance else []):
        print(f"hpcai rehearse: rank {rank}: host {host}")
    resumed = True
    if restarts is not None:
        resumed = report_preemption(records, restarts)
    if final is not None:
        digests = final.get("weights_digest_per_rank", [])
        agree = bool(final.get("weights_agree")) and len(set(digests)) == 1
        shown = digests[0][:16] if agree and digests else ", ".join(d[:16] for d in digests)
        print(f"hpcai rehearse: trainable weights {'identical on every rank' if agree else 'DIFFER'}: {shown}")
    else:
        agree = False
    if state == "COMPLETED" and final is not None and agree and resumed:
        return 0
    why = (
        "no final record"
        if final is None
        else "the ranks' weights differ"
        if not agree
        else "it did not checkpoint, requeue and resume on the preemption signal"
        if not resumed
        else "the job failed"
    )
    print(
        f"hpcai: error: rehearse: job {job_id} ended {state} (exit {exit_code}), {why}; see {run_dir / 'job.log'}",
        file=sys.stderr,
    )
    return 1


def report_preemption(records: list[dict], restarts: int) -> bool:
    """Print where the run stopped and where the requeued job resumed; True if it did both."""
    types = [record.get("type") for record in records]
    if "preempted" not in types:
        print(f"hpcai rehearse: no preemption in the run's records (job restarts: {restarts})")
        return False
    stop = records[types.index("preempted")]
    after = [r for r in records[types.index("preempted") + 1 :] if r.get("type") == "provenance"]
    ranks = ", ".join(str(rank) for rank in stop.get("signalled_ranks", [])) or "none"
    print(
        f"hpcai rehearse: preempted ({stop.get('reason')} on ranks {ranks}) after {stop.get('completed_epochs')} "
        f"epoch(s) and {stop.get('step')} step(s), checkpointed; job restarts: {restarts}"
    )
    origin = after[0].get("resumed_from") if after else None
    if not origin or restarts < 1:
        print("hpcai rehearse: the requeued job did not resume from the checkpoint")
        return False
    hosts = ", ".join(after[0].get("hostnames", []))
    print(f"hpcai rehearse: resumed after {origin.get('epoch')} epoch(s) and {origin.get('step')} step(s) on {hosts}")
    return True
