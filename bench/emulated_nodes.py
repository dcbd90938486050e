"""Two ranks on one emulated node against two ranks on two emulated nodes (TCP over loopback between them).

    .venv/bin/python bench/emulated_nodes.py

A 2-node emulated cluster shaped after Bridges-AI (:mod:`hpcai_tf.launch.emulated_cluster`, as ``hpcai rehearse``
starts it) runs the site's job script with rehearse's stand-ins (the host's ``hpcai``) and ``mpirun``: once with
``--nodes 1 --ranks-per-node 2``, where Open MPI joins the two ranks through shared memory, and once with
``--nodes 2 --ranks-per-node 1``, where each rank is on its own node (hostname, ``/tmp``, ``/dev/shm``) and Open
MPI can only reach the other over TCP on loopback (``btl_tcp_if_include=lo``). Both sides run on the same two cores,
so the ratio is the cost of crossing a node here (TCP through the kernel against shared memory), not of a real
network. Workloads: AI-GW (smoke model, 960 waveforms, 4 epochs) and the benchmarks' small-image ResNet-50
(``_common.SMALL_RESNET``); one intra-op and one inter-op thread per rank. A job's samples/s is the median of its
epochs after the first (the first builds the graph); the sides alternate over ``ROUNDS`` rounds and each side's
best round counts. Prints samples/s of each side and the ratio two nodes / one node.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from _common import ONE_THREAD, REPO, SMALL_RESNET, bench_env, hpcai, load_average, run_throughput

sys.path.insert(0, str(REPO))

from hpcai_tf.catalog import load_site
from hpcai_tf.files import write_atomic
from hpcai_tf.launch.emulated_cluster import EmulatedCluster, default_root, settle_root, shape_for_site
from hpcai_tf.launch.job_script import LaunchRequest, host_hpcai
from hpcai_tf.launch.job_state import wait_for_jobs
from hpcai_tf.launch.rehearsal import rehearsal_script

SITE = "bridges-ai"
ROUNDS = 2
WAVEFORMS = 960
SIDES = {"one node": (1, 2), "two nodes": (2, 1)}
"""Each side's (nodes, ranks per node)."""


def workloads(data: Path) -> dict[str, list[str]]:
    return {"gw": ["--smoke", "--data", str(data), "--epochs", "4"], "resnet50": SMALL_RESNET}


def run_job(cluster: EmulatedCluster, workload: str, args: list[str], nodes: int, per_node: int, name: str) -> Path:
    """The site's script for one side, submitted and waited for; its run directory (or exit on failure)."""
    request = LaunchRequest(
        workload,
        load_site(SITE),
        nodes,
        ranks_per_node=per_node,
        launcher="mpirun",
        train_args=(*args, "--no-tensorboard"),
    )
    script = cluster.shared / "jobs" / f"{name}.sh"
    write_atomic(script, rehearsal_script(request, cluster.shared, host_hpcai()).submitted)
    job_id = cluster.sbatch(script, field="bench")
    state = wait_for_jobs("slurm", [job_id], poll_s=1.0, env=cluster.env)[job_id]
    run_dir = cluster.shared / "runs" / f"{workload}-{job_id}"
    if not state.succeeded("slurm"):
        log = (run_dir / "job.log").read_text(errors="replace")[-3000:] if (run_dir / "job.log").exists() else ""
        sys.exit(f"bench: job {job_id} ({name}) ended {state.state} (exit {state.exit_code}):\n{log}")
    return run_dir


def main() -> None:
    os.environ.update(bench_env(**ONE_THREAD))  # the jobs inherit sbatch's environment
    print(f"{SITE}, 2 emulated nodes, mpirun, 1+1 threads per rank; {load_average()} at the start", flush=True)
    best: dict[tuple[str, str], float] = {}
    cluster = EmulatedCluster(shape_for_site(load_site(SITE), 2), default_root())
    done = False
    try:
        with cluster:
            data = cluster.shared / "gw.h5"
            hpcai("data", "gw", "--smoke", "--n", str(WAVEFORMS), "--out", str(data))
            for round_ in range(ROUNDS):
                for workload, args in workloads(data).items():
                    for side in SIDES if round_ % 2 == 0 else reversed(SIDES):
                        nodes, per_node = SIDES[side]
                        name = f"{workload}-{side.replace(' ', '-')}-{round_}"
                        value = run_throughput(run_job(cluster, workload, args, nodes, per_node, name))
                        best[(workload, side)] = max(best.get((workload, side), 0.0), value)
                        print(f"round {round_ + 1}: {workload} 2 ranks on {side}: {value:.1f} samples/s", flush=True)
        done = True
    finally:
        settle_root(cluster.root, not done, "bench")
    print()
    print("| workload | 2 ranks on one node (samples/s) | 2 ranks on two nodes (samples/s) | two nodes / one node |")
    print("|---|---|---|---|")
    for workload in workloads(Path()):
        one, two = best[(workload, "one node")], best[(workload, "two nodes")]
        print(f"| {workload} | {one:.1f} | {two:.1f} | {two / one:.3f} |")
    for workload in workloads(Path()):
        ratio = best[(workload, "two nodes")] / best[(workload, "one node")]
        print(f"RATIO {workload}: 2 ranks on two emulated nodes / on one node = {ratio:.3f}")
    print(f"{load_average()} at the end")


if __name__ == "__main__":
    main()
