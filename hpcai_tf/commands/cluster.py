"""``hpcai cluster``: an emulated Slurm cluster of a site on this machine, running until it is interrupted.

The cluster ``hpcai rehearse`` starts for one job (:mod:`hpcai_tf.launch.emulated_cluster`), started on its own for
jobs submitted by hand: it prints the environment that reaches it (``SLURM_CONF``, loopback-only Open MPI) as one
``export`` line, then waits. Ctrl-C or SIGTERM stops it by PID (jobs cancelled, nodes' leftovers killed, then
the daemons); a daemon that exits on its own ends the command with an error. The directory stays (its
``shared/`` holds the jobs' files); ``hpcai clean`` removes it once nothing runs there.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from hpcai_tf.commands.launch import _count
from hpcai_tf.errors import KitError

POLL_S = 1.0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``cluster``."""
    cluster = sub.add_parser(
        "cluster",
        help="start an emulated multi-node Slurm cluster of a site here, until interrupted",
        description="Start the emulated cluster `hpcai rehearse` uses (one slurmd per node, each with its own "
        "hostname, /tmp and /dev/shm, on loopback), shaped after a Slurm site, print the environment that "
        "reaches it as an export line, and run until Ctrl-C or SIGTERM, which stop every daemon by PID.",
        usage="hpcai cluster --site S [--nodes N] [--node-type T] [--cluster-dir DIR]",
    )
    cluster.add_argument("--site", required=True, help="a Slurm site id from the catalog")
    cluster.add_argument("--nodes", default="2", metavar="N", help="emulated nodes (default: 2)")
    cluster.add_argument("--node-type", metavar="T", help="node type from the site's catalog (default: the site's)")
    cluster.add_argument(
        "--cluster-dir",
        type=Path,
        metavar="DIR",
        help="the cluster's files, not under /tmp (default: a new directory under /var/tmp)",
    )
    cluster.set_defaults(func=_cluster)


def _cluster(args: argparse.Namespace) -> int:
    from hpcai_tf.catalog import load_site
    from hpcai_tf.commands.rehearse import refuse_non_slurm
    from hpcai_tf.launch.emulated_cluster import EmulatedCluster, check_root, default_root, shape_for_site

    site = load_site(args.site)
    refuse_non_slurm(site)
    nodes = _count(args.nodes, "--nodes")
    shape = shape_for_site(site, nodes, args.node_type)  # type: ignore[arg-type]
    root = check_root(args.cluster_dir, "--cluster-dir") if args.cluster_dir else default_root()
    cluster = EmulatedCluster(shape, root)
    try:
        with cluster:
            print(
                f"hpcai cluster: {len(cluster.node_names)} nodes of {shape.site_id} ({', '.join(cluster.node_names)}) "
                f"in {cluster.root}; daemon pids {cluster.pids_text}"
            )
            print("export " + " ".join(f"{name}={shlex.quote(value)}" for name, value in cluster.own_env.items()))
            print(f"hpcai cluster: submit from {cluster.shared} (the nodes' shared directory); Ctrl-C stops it")
            sys.stdout.flush()
            while True:
                if dead := cluster.dead_daemons():
                    raise KitError(f"cluster: {', '.join(dead)} exited; logs under {cluster.root / 'log'}")
                time.sleep(POLL_S)
    except KeyboardInterrupt:
        print(f"hpcai cluster: stopped; its directory stays: {cluster.root} (`hpcai clean` removes it)", flush=True)
        return 0
