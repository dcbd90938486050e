"""``hpcai launch``: the job script a site's scheduler wants, around its image and one ``hpcai train`` run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hpcai_tf.errors import KitError
from hpcai_tf.train import WORKLOADS


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``launch``."""
    launch = sub.add_parser(
        "launch",
        help="write (and submit) a site's job script for a workload",
        description="Write the job script a site's scheduler wants (Slurm sbatch or LSF bsub with jsrun) around "
        "the site's image and `hpcai train WORKLOAD`, from the site catalog and launch/*.sh.j2. Arguments after "
        "`--` go to `hpcai train`, each quoted. A request the site cannot satisfy is refused before anything is "
        "written.",
        usage="hpcai launch WORKLOAD --site S [options] [-- TRAIN_ARGS ...]",
    )
    launch.add_argument("workload", metavar="WORKLOAD", help=f"workload to train ({', '.join(WORKLOADS)})")
    launch.add_argument("--site", required=True, help="site id from the catalog (containers/sites/<id>.toml)")
    launch.add_argument("--nodes", default="1", metavar="N", help="number of nodes (default: 1)")
    launch.add_argument(
        "--ranks-per-node", metavar="R", help="ranks per node (default: the node's GPUs; on CPU nodes its cores)"
    )
    launch.add_argument(
        "--run-root",
        metavar="DIR",
        help="runs go to DIR/runs/<workload>-<jobid> (default: the directory the job is submitted from)",
    )
    add_backend_option(launch)
    add_job_options(launch)
    launch.add_argument("--out", type=Path, metavar="FILE", help="write the script here (default: standard output)")
    launch.add_argument("--submit", action="store_true", help="submit the script and print the job id")
    launch.set_defaults(func=_launch, passthrough_to="hpcai train")


def add_backend_option(parser: argparse.ArgumentParser) -> None:
    """``--backend``, which ``hpcai launch`` and ``hpcai scale`` pass to every rank's ``hpcai train``."""
    parser.add_argument(
        "--backend",
        metavar="{horovod,mwms}",
        help="data-parallel backend of hpcai train (default: the site's training.backend, else horovod)",
    )


def add_job_options(parser: argparse.ArgumentParser) -> None:
    """The options of a job script that ``hpcai launch`` and ``hpcai scale --submit`` share."""
    parser.add_argument("--node-type", metavar="T", help="node type from the site's catalog (default: the site's)")
    parser.add_argument(
        "--runtime",
        metavar="{singularity,apptainer,none}",
        help="container runtime (default: the site's); 'none' runs this environment's hpcai on the host",
    )
    parser.add_argument("--time", metavar="H:MM", help="wall time (default: the site's scheduler.default_time)")
    parser.add_argument("--account", metavar="A", help="account or project charged (required on some sites)")
    parser.add_argument("--image", metavar="PATH", help="image file (default: the site's hpcai-<site>-<digest>.sif)")
    parser.add_argument(
        "--launcher", metavar="{mpirun,srun,jsrun}", help="how ranks start (default: the site's scheduler.launcher)"
    )
    parser.add_argument(
        "--jsrun-layout",
        metavar="{gpu,node}",
        help="jsrun only: one resource set per GPU (default) or one per node holding all its GPUs",
    )
    parser.add_argument(
        "--cuda-aware-mpi", action="store_true", help="jsrun only: CUDA-aware Spectrum MPI (--smpiargs=-gpu)"
    )
    parser.add_argument(
        "--signal-lead",
        default="300",
        metavar="SECONDS",
        help="ask the job to checkpoint this long before its time limit (default: 300)",
    )


def launch_request(args: argparse.Namespace, nodes: int, ranks_per_node: int | None, run_root: str | None):
    """The :class:`LaunchRequest` of the parsed job options (see :func:`add_job_options`)."""
    from hpcai_tf.catalog import load_site
    from hpcai_tf.launch.job_script import LaunchRequest
    from hpcai_tf.launch.jsrun import LAYOUTS

    site = load_site(args.site)
    if args.passthrough and args.workload in WORKLOADS:
        from hpcai_tf.commands.train import check_train_arguments
        from hpcai_tf.launch.job_script import site_backend

        check_train_arguments(args.workload, args.passthrough, args.backend or site_backend(site))
    if args.jsrun_layout is not None and args.jsrun_layout not in LAYOUTS:
        raise KitError(f"--jsrun-layout: expected one of {', '.join(LAYOUTS)}, got {args.jsrun_layout!r}")
    return LaunchRequest(
        workload=args.workload,
        site=site,
        nodes=nodes,
        ranks_per_node=ranks_per_node,
        node_type=args.node_type,
        runtime=args.runtime,
        time=args.time,
        account=args.account,
        image=args.image,
        run_root=run_root,
        launcher=args.launcher,
        jsrun_layout=args.jsrun_layout,
        cuda_aware_mpi=args.cuda_aware_mpi,
        signal_lead=_count(args.signal_lead, "--signal-lead"),  # type: ignore[arg-type]
        train_args=tuple(args.passthrough),
        backend=args.backend,
    )


def _count(value: str | None, flag: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise KitError(f"{flag}: expected a whole number, got {value!r}") from None


def _launch(args: argparse.Namespace) -> int:
    from hpcai_tf.files import write_atomic
    from hpcai_tf.launch.job_script import render_job_script
    from hpcai_tf.launch.submit import submit_job_script

    request = launch_request(
        args,
        nodes=_count(args.nodes, "--nodes"),  # type: ignore[arg-type]
        ranks_per_node=_count(args.ranks_per_node, "--ranks-per-node"),
        run_root=args.run_root,
    )
    site = request.site
    text = render_job_script(request)
    if args.out:
        try:
            write_atomic(args.out, text)
        except KitError as err:
            raise KitError(f"--out: {err}") from None
    if args.submit:
        print(submit_job_script(site, text, args.out))
    elif args.out:
        print(args.out)
    else:
        sys.stdout.write(text)
    return 0
