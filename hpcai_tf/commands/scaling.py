"""``hpcai scale``, ``hpcai report``, ``hpcai estimate``, ``hpcai cost``: scaling studies and their model."""

from __future__ import annotations

import argparse
import math
import re
import subprocess
import sys
from pathlib import Path

from hpcai_tf.commands.launch import add_job_options, launch_request
from hpcai_tf.errors import KitError
from hpcai_tf.train.metrics_log import METRICS_FILE

JOB_ONLY = ("node_type", "runtime", "time", "account", "image", "launcher", "jsrun_layout", "cuda_aware_mpi", "no_wait")
"""``hpcai scale`` options that only mean something for batch jobs."""


def _counts(text: str) -> list[int]:
    parts = text.split(",")
    if not all(re.fullmatch(r"[0-9]+", part) for part in parts):
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers such as 1,2,4, got {text!r}")
    counts = [int(part) for part in parts]
    if any(c < 1 for c in counts):
        raise argparse.ArgumentTypeError(f"expected positive whole numbers, got {text!r}")
    return counts


def _number(kind: type, minimum: float, inclusive: bool = False):
    """An argparse type: a finite ``kind`` above ``minimum`` (or equal to it with ``inclusive``)."""
    expected = f"a finite number {'>=' if inclusive else '>'} {minimum:g}"
    if kind is int:
        expected = f"a whole number {'>=' if inclusive else '>'} {minimum:g}"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


POSITIVE = _number(float, 0)
POSITIVE_INT = _number(int, 0)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``scale``, ``report``, ``estimate`` and ``cost``."""
    scale = sub.add_parser(
        "scale",
        help="train a workload at several rank counts and report its scaling",
        description="Run `hpcai train WORKLOAD --ranks N` for each N (mpirun on this machine), or with --site S "
        "--submit one `hpcai launch` job per N on the site's scheduler (waiting for them all), then write the "
        "scaling report of the runs. Arguments after `--` go to `hpcai train`.",
        usage="hpcai scale WORKLOAD --ranks N,N... [--out DIR] [--site S --submit [JOB OPTIONS]] [-- TRAIN_ARGS ...]",
    )
    scale.add_argument("workload", help="resnet50, gw or des")
    scale.add_argument("--ranks", type=_counts, required=True, help="rank counts, e.g. 1,2")
    scale.add_argument("--out", type=Path, default=Path("runs/scale"), help="directory for runs and report")
    jobs = scale.add_argument_group("batch jobs (with --site S --submit)")
    jobs.add_argument("--site", help="site id from the catalog whose scheduler runs the jobs")
    jobs.add_argument("--submit", action="store_true", help="submit one job per rank count, wait, then report")
    jobs.add_argument("--poll", type=float, default=10.0, metavar="SECONDS", help="how often to read job states")
    jobs.add_argument("--no-wait", action="store_true", help="submit and stop; run `hpcai report` later")
    add_job_options(jobs)
    scale.set_defaults(func=_scale, passthrough_to="hpcai train")

    report = sub.add_parser(
        "report",
        help="speedup and efficiency tables and plots from run directories",
        description=f"Read each run's {METRICS_FILE} and write report.md, report.csv and scaling.png: global "
        "throughput, speedup, parallel efficiency, time per epoch and projected time-to-train per rank count, "
        "grouped by site and image.",
    )
    report.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="run directories (or metrics files)")
    report.add_argument("--out", type=Path, help="directory for report.md, report.csv, scaling.png (default: none)")
    report.set_defaults(func=_report)

    estimate = sub.add_parser(
        "estimate",
        help="predict data-parallel scaling on a site from a per-device step time",
        description="A performance model of Horovod data-parallel training (docs/performance-model.md): ring or "
        "hierarchical allreduce over the site's links, tensor fusion, overlap with the backward pass.",
    )
    estimate.add_argument("workload", help="resnet50, gw or des")
    estimate.add_argument("--site", required=True, help="site id from the catalog")
    estimate.add_argument("--node-type", help="node type (default: the site's default)")
    estimate.add_argument("--gpus", type=_counts, required=True, help="device counts, e.g. 1,8,64")
    source = estimate.add_mutually_exclusive_group(required=True)
    source.add_argument("--from-run", type=Path, help="a 1-rank run directory: its measured step time and batch")
    source.add_argument("--step-time", type=POSITIVE, help="per-device compute seconds per step (e.g. on a V100)")
    estimate.add_argument("--batch", type=POSITIVE_INT, help="batch per device that --step-time was measured at")
    estimate.add_argument("--smoke", action="store_true", help="size the model of the smoke preset")
    estimate.add_argument(
        "--params", type=POSITIVE_INT, help="gradient size in parameters (default: built from the model)"
    )
    estimate.add_argument("--tensors", type=POSITIVE_INT, help="gradient tensors (default: from the model)")
    estimate.add_argument("--algorithm", choices=["ring", "hierarchical"], default="ring")
    estimate.add_argument(
        "--fusion-mb",
        type=_number(float, 0, inclusive=True),
        default=64.0,
        help="tensor fusion threshold, MiB (0: off)",
    )
    estimate.add_argument(
        "--overlap",
        type=_number(float, 0, inclusive=True),
        default=1.0,
        help="share of the backward pass that hides comms",
    )
    estimate.add_argument("--fp16-allreduce", action="store_true", help="fp16 gradient compression")
    estimate.add_argument("--price", type=POSITIVE, help="USD per device-hour (default: the catalog's, if any)")
    estimate.add_argument("--out", type=Path, help="directory for estimate.md, estimate.csv, estimate.png")
    estimate.set_defaults(func=_estimate)

    cost = sub.add_parser(
        "cost",
        help="cloud-equivalent cost of runs: device-hours times a price per device-hour",
        description="For each run: its device-hours and cost, and the projected cost of the full training "
        "(time-to-train x devices x price). The price comes from --price or the site's catalog entry.",
    )
    cost.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")
    cost.add_argument("--price", type=POSITIVE, help="USD per device-hour")
    cost.add_argument("--site", help="site whose catalog price to use (default: the runs' site)")
    cost.set_defaults(func=_cost)


def _scale(args: argparse.Namespace) -> int:
    from hpcai_tf.scaling.report import markdown_table, read_runs, scaling_rows

    if args.submit or args.site:
        run_dirs = _scale_jobs(args)
        if run_dirs is None:
            return 0
    else:
        given = [name for name in JOB_ONLY if getattr(args, name) not in (None, False)]
        if given:
            raise KitError(f"--{given[0].replace('_', '-')}: only for batch jobs (--site S --submit)")
        run_dirs = _scale_here(args)
    rows = scaling_rows(read_runs(run_dirs))
    _write_report(rows, args.out, f"{args.workload}: measured scaling", "report")
    print(markdown_table(rows), end="")
    return 0


def _scale_jobs(args: argparse.Namespace) -> list[Path] | None:
    """Submit one job per rank count; the run directories once all have ended (None with --no-wait)."""
    from hpcai_tf.launch.scale_jobs import submit_scale_jobs, wait_and_check

    if not (args.submit and args.site):
        raise KitError("--site and --submit: give both to run the counts as batch jobs (neither: mpirun here)")
    if not math.isfinite(args.poll) or args.poll <= 0:
        raise KitError(f"--poll: expected a positive number of seconds, got {args.poll}")
    base = launch_request(args, nodes=1, ranks_per_node=None, run_root=None)
    jobs = submit_scale_jobs(base, args.ranks, args.out)
    for job in jobs:
        print(f"hpcai scale: {job.ranks} rank(s) on {job.nodes} node(s): job {job.job_id} -> {job.run_dir}", flush=True)
    if args.no_wait:
        print(f"hpcai scale: not waiting; when the jobs have ended: hpcai report {args.out}/runs/* --out {args.out}")
        return None
    return wait_and_check(base.site, jobs, args.poll)


def _scale_here(args: argparse.Namespace) -> list[Path]:
    """``hpcai train --ranks N`` with mpirun on this machine, one count after another."""
    from hpcai_tf.commands.train import check_train_arguments

    check_train_arguments(args.workload, args.passthrough)
    run_dirs = []
    for ranks in args.ranks:
        run_dir = args.out / f"{args.workload}-{ranks}ranks"
        command = [
            sys.executable,
            "-m",
            "hpcai_tf",
            "train",
            args.workload,
            "--ranks",
            str(ranks),
            "--run-dir",
            str(run_dir),
            *args.passthrough,
        ]
        print(f"hpcai scale: {ranks} rank(s) -> {run_dir}", flush=True)
        if subprocess.run(command, check=False).returncode != 0:
            raise KitError(f"scale: the {ranks}-rank run failed; see {run_dir}")
        run_dirs.append(run_dir)
    return run_dirs


def _write_report(rows, out: Path | None, title: str, stem: str, workers: str = "workers") -> None:
    from hpcai_tf.files import check_targets, write_atomic
    from hpcai_tf.scaling.report import csv_table, markdown_table, plot_scaling

    if out is None:
        return
    plot = out / ("scaling.png" if stem == "report" else f"{stem}.png")
    check_targets([out / f"{stem}.md", out / f"{stem}.csv", plot])
    write_atomic(out / f"{stem}.md", f"# {title}\n\n" + markdown_table(rows))
    write_atomic(out / f"{stem}.csv", csv_table(rows))
    plot_scaling(rows, plot, title, workers)


def _report(args: argparse.Namespace) -> int:
    from hpcai_tf.scaling.report import markdown_table, read_runs, scaling_rows

    runs = read_runs(args.runs)
    rows = scaling_rows(runs)
    _write_report(rows, args.out, f"{runs[0].workload}: measured scaling", "report")
    print(markdown_table(rows), end="")
    return 0


def _estimate(args: argparse.Namespace) -> int:
    from hpcai_tf.catalog import load_site
    from hpcai_tf.scaling.estimate import Communication, Workload, predict
    from hpcai_tf.scaling.report import read_run

    site = load_site(args.site)
    node = site.node_type(args.node_type)
    if args.from_run:
        run = read_run(args.from_run)
        if run.workload != args.workload:
            raise KitError(f"--from-run: {run.path} is a {run.workload} run, not {args.workload}")
        if run.ranks != 1:
            raise KitError(f"--from-run: expected a 1-rank run (the per-device step time), got {run.ranks} ranks")
        step, batch = run.step_time_s, run.batch_per_rank
        epochs, dataset = run.epochs_to_train, run.dataset_size
    else:
        if not args.batch:
            raise KitError("--batch: required with --step-time (the batch per device it was measured at)")
        from hpcai_tf.scaling.model_size import training_length

        step, batch = args.step_time, args.batch
        epochs, dataset = training_length(args.workload)
    if args.params and args.tensors:
        params, tensors = args.params, args.tensors
    else:
        from hpcai_tf.scaling.model_size import model_size

        size = model_size(args.workload, smoke=args.smoke)
        params, tensors = args.params or size.parameters, args.tensors or size.tensors
    if step <= 0 or not 0 <= args.overlap <= 1 or not 0 <= args.fusion_mb <= 1 << 20:
        raise KitError("estimate: expected --step-time > 0, 0 <= --overlap <= 1 and 0 <= --fusion-mb <= 1048576")
    workload = Workload(args.workload, step, batch, params, tensors, epochs, dataset)
    comm = Communication(
        algorithm=args.algorithm,
        fusion_bytes=int(args.fusion_mb * 1024 * 1024),
        overlap=args.overlap,
        fp16=args.fp16_allreduce,
    )
    rows = predict(workload, site, node, args.gpus, comm)
    price = args.price or node.cloud_price_per_device_hour
    print(
        f"# {args.workload} on {site.id} ({node.name}): {params:,} parameters in {tensors} tensors, "
        f"{step * 1000:.1f} ms/step at batch {batch} per device, {comm.algorithm} allreduce"
    )
    from hpcai_tf.scaling.report import markdown_table

    print(markdown_table(rows), end="")
    if price:
        print(f"\ncloud-equivalent cost of the full training at USD {price:.2f} per device-hour:")
        for row in rows:
            usd = row.time_to_train_h * row.devices * price
            print(f"  {row.devices:>5} devices: {row.time_to_train_h:9.2f} h  USD {usd:,.0f}")
    _write_report(rows, args.out, f"{args.workload} on {site.id}: predicted scaling", "estimate", "devices")
    return 0


def _cost(args: argparse.Namespace) -> int:
    from hpcai_tf.catalog import load_site
    from hpcai_tf.scaling.cost import run_costs

    for line in run_costs(args.runs, args.price, load_site(args.site) if args.site else None, load_site):
        print(line)
    return 0
