"""``hpcai scale``, ``hpcai report``, ``hpcai estimate``, ``hpcai cost``: scaling studies and their model."""

from __future__ import annotations

import argparse
import math
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hpcai_tf.commands.launch import _count, add_backend_option, add_job_options, launch_request
from hpcai_tf.errors import KitError
from hpcai_tf.train.metrics_log import METRICS_FILE

if TYPE_CHECKING:
    from hpcai_tf.catalog import Site

JOB_ONLY = (
    "node_type", "runtime", "time", "account", "image", "launcher", "jsrun_layout", "cuda_aware_mpi", "no_wait",
    "ranks_per_node", "emulate",
)  # fmt: skip
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
        "scaling report of the runs. --backend mwms trains with TensorFlow's MultiWorkerMirroredStrategy instead of "
        "Horovod. Arguments after `--` go to `hpcai train`.",
        usage="hpcai scale WORKLOAD --ranks N,N... [--out DIR] [--site S --submit [JOB OPTIONS]] [-- TRAIN_ARGS ...]",
    )
    scale.add_argument("workload", help="resnet50, gw or des")
    scale.add_argument("--ranks", type=_counts, required=True, help="rank counts, e.g. 1,2")
    scale.add_argument("--out", type=Path, default=Path("runs/scale"), help="directory for runs and report")
    add_backend_option(scale)
    jobs = scale.add_argument_group("batch jobs (with --site S --submit)")
    jobs.add_argument("--site", help="site id from the catalog whose scheduler runs the jobs")
    jobs.add_argument("--submit", action="store_true", help="submit one job per rank count, wait, then report")
    jobs.add_argument("--poll", type=float, default=10.0, metavar="SECONDS", help="how often to read job states")
    jobs.add_argument("--no-wait", action="store_true", help="submit and stop; run `hpcai report` later")
    jobs.add_argument(
        "--ranks-per-node",
        metavar="R",
        help="ranks per node, each count whole nodes of R (default: a node's GPUs, or its cores; 1 with --emulate)",
    )
    jobs.add_argument(
        "--emulate",
        action="store_true",
        help="run the jobs on an emulated cluster of the site here, as `hpcai rehearse` does (the host's hpcai; "
        "one job at a time; a Slurm site)",
    )
    add_job_options(jobs)
    scale.set_defaults(func=_scale, passthrough_to="hpcai train")

    report = sub.add_parser(
        "report",
        help="speedup and efficiency tables and plots from run directories",
        description=f"Read each run's {METRICS_FILE} and write report.md, report.csv and scaling.png: global "
        "throughput, speedup, parallel efficiency, time per epoch and projected time-to-train per rank count, "
        "grouped by site, image and backend.",
    )
    report.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="run directories (or metrics files)")
    report.add_argument("--out", type=Path, help="directory for report.md, report.csv, scaling.png (default: none)")
    report.set_defaults(func=_report)

    estimate = sub.add_parser(
        "estimate",
        help="predict data-parallel scaling on a site from a per-device step time, a calibration or a curve",
        description="A performance model of Horovod data-parallel training (docs/performance-model.md): ring or "
        "hierarchical allreduce over the site's links, tensor fusion, overlap with the backward pass, the "
        "reduction's cost, a per-step overhead, contention on a busy node and the slowest rank. It uses the "
        "site's calibration (hpcai calibrate) when one exists, and says where each figure comes from.",
    )
    estimate.add_argument("workload", help="resnet50, gw or des")
    estimate.add_argument("--site", required=True, help="site id from the catalog")
    estimate.add_argument("--node-type", help="node type (default: the site's default)")
    estimate.add_argument("--gpus", type=_counts, help="device counts, e.g. 1,8,64 (not with --fit/--fit-csv)")
    source = estimate.add_mutually_exclusive_group()
    source.add_argument("--from-run", type=Path, help="a 1-rank run directory: its measured step time and batch")
    source.add_argument("--step-time", type=POSITIVE, help="per-device compute seconds per step (e.g. on a V100)")
    source.add_argument(
        "--fit",
        type=Path,
        nargs="+",
        metavar="RUN_DIR",
        help="runs at 2+ counts: fit on the smallest, predict the rest",
    )
    source.add_argument(
        "--fit-csv", type=Path, metavar="FILE", help="a measured curve (columns devices,samples_per_s; needs --batch)"
    )
    estimate.add_argument("--batch", type=POSITIVE_INT, help="batch per device of --step-time or --fit-csv")
    estimate.add_argument(
        "--against",
        type=Path,
        nargs="+",
        metavar="RUN_DIR",
        help="measured runs to print and plot beside the prediction at their rank counts (instead of --gpus)",
    )
    estimate.add_argument(
        "--calibration",
        type=Path,
        help="a calibration file (default: runs/calibration/SITE.json when it exists and has the workload)",
    )
    estimate.add_argument("--no-calibration", action="store_true", help="the catalog's figures only")
    estimate.add_argument("--smoke", action="store_true", help="size the model of the smoke preset")
    estimate.add_argument(
        "--params", type=POSITIVE_INT, help="gradient size in parameters (default: built from the model)"
    )
    estimate.add_argument("--tensors", type=POSITIVE_INT, help="gradient tensors (default: from the model)")
    estimate.add_argument("--algorithm", choices=["ring", "hierarchical"], default="ring")
    estimate.add_argument(
        "--fusion-mb",
        type=_number(float, 0, inclusive=True),
        default=128.0,
        help="tensor fusion threshold, MiB (0: off; Horovod's default is 128)",
    )
    estimate.add_argument(
        "--overlap",
        type=_number(float, 0, inclusive=True),
        help="the allreduce's speed beside the backward pass, a share of its speed alone (default: calibrated, "
        "else 1 on GPUs, 0 on CPU)",
    )
    estimate.add_argument("--fp16-allreduce", action="store_true", help="fp16 gradient compression")
    estimate.add_argument("--price", type=POSITIVE, help="USD per device-hour (default: the catalog's, if any)")
    estimate.add_argument("--out", type=Path, help="directory for estimate.md, estimate.csv, estimate.png")
    estimate.set_defaults(func=_estimate)

    calibrate = sub.add_parser(
        "calibrate",
        help="measure a site's node: compute alone and shared, Horovod collectives; fit the model's terms",
        description="On this node, with this Python's stack (which must be the site's) or inside the site's "
        "image (--image SIF): `hpcai train WORKLOAD --ranks 1` alone and RANKS copies at once, when each "
        "gradient becomes ready in a 1-rank step, then Horovod all-gathers and allreduces and the workload's "
        "backward pass beside its allreduces under mpirun; fits latency, bandwidth, the reduction's cost, the "
        "per-step overhead and the allreduce's speed beside the backward pass, and writes SITE.json "
        "(docs/performance-model.md). Arguments after `--` go to each `hpcai train` (2 or more epochs; the first "
        "warms up).",
        usage="hpcai calibrate WORKLOAD --site S [--ranks N] [--image SIF | --across-nodes] [--out DIR] "
        "[-- TRAIN_ARGS ...]",
    )
    calibrate.add_argument("workload", help="resnet50, gw or des")
    calibrate.add_argument("--site", required=True, help="site id from the catalog")
    calibrate.add_argument("--ranks", type=POSITIVE_INT, default=2, help="ranks of the shared node and the probe")
    calibrate.add_argument("--out", type=Path, help="directory for SITE.json (default: runs/calibration)")
    where = calibrate.add_mutually_exclusive_group()
    where.add_argument(
        "--image",
        type=Path,
        metavar="SIF",
        help="run every measurement inside this SIF (apptainer or singularity on PATH), with its Python and mpirun",
    )
    calibrate.add_argument(
        "--message-sizes", type=_counts, help="probe message sizes in bytes (default: 4 KiB to 256 MiB)"
    )
    where.add_argument(
        "--across-nodes",
        action="store_true",
        help="also time the collectives between two emulated nodes of this host (srun --mpi=pmix, TCP over "
        "loopback) and fit the site's link across nodes from them (host Python only)",
    )
    calibrate.set_defaults(func=_calibrate, passthrough_to="hpcai train")

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
    from hpcai_tf.launch.scale_jobs import announce_jobs, submit_scale_jobs, wait_and_check

    if not (args.submit and args.site):
        raise KitError("--site and --submit: give both to run the counts as batch jobs (neither: mpirun here)")
    if not math.isfinite(args.poll) or args.poll <= 0:
        raise KitError(f"--poll: expected a positive number of seconds, got {args.poll}")
    base = launch_request(args, nodes=1, ranks_per_node=None, run_root=None)
    per = _count(args.ranks_per_node, "--ranks-per-node")
    if per is not None and per < 1:
        raise KitError(f"--ranks-per-node: expected at least 1, got {per}")
    if args.emulate:
        from hpcai_tf.commands.rehearse import refuse_non_slurm
        from hpcai_tf.launch.emulated_scale import emulated_scale

        if args.no_wait:
            raise KitError("--no-wait: the emulated cluster stops when hpcai scale ends; expected it without --emulate")
        refuse_non_slurm(base.site)
        return emulated_scale(base, args.ranks, args.out, per, args.poll)
    jobs = submit_scale_jobs(base, args.ranks, args.out, ranks_per_node=per)
    announce_jobs(jobs)
    if args.no_wait:
        print(f"hpcai scale: not waiting; when the jobs have ended: hpcai report {args.out}/runs/* --out {args.out}")
        return None
    return wait_and_check(base.site, jobs, args.poll)


def _scale_here(args: argparse.Namespace) -> list[Path]:
    """``hpcai train --ranks N`` with mpirun on this machine, one count after another."""
    from hpcai_tf.commands.train import check_train_arguments
    from hpcai_tf.train.options import DEFAULT_BACKEND

    check_train_arguments(args.workload, args.passthrough, args.backend or DEFAULT_BACKEND)
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
            *(["--backend", args.backend] if args.backend else []),
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


def _calibration_terms(args: argparse.Namespace, site, node, comm):
    """The model's terms: the site's calibration for the workload when there is one, else the catalog's."""
    from hpcai_tf.scaling.calibration import default_path, read_calibration
    from hpcai_tf.scaling.estimate import calibrated_terms, nominal_terms

    nominal = nominal_terms(site, node, comm)
    if args.no_calibration:
        return nominal, None
    path = args.calibration or default_path(site.id)
    if args.calibration is None and not path.is_file():
        return nominal, None
    calibration = read_calibration(path, site)
    if args.calibration is None and args.workload not in calibration.workloads:
        return nominal, None
    if node.name != calibration.provenance.get("node_type", node.name):
        raise KitError(f"{path}: measured on node type {calibration.provenance['node_type']}, not {node.name}")
    return calibrated_terms(nominal, calibration, args.workload), calibration


def _estimate(args: argparse.Namespace) -> int:
    from hpcai_tf.catalog import load_site
    from hpcai_tf.scaling.estimate import Communication, Workload, predict
    from hpcai_tf.scaling.report import markdown_table, read_run

    site = load_site(args.site)
    node = site.node_type(args.node_type)
    fitting = bool(args.fit or args.fit_csv)
    if fitting and (args.gpus or args.against):
        raise KitError("--gpus/--against: not with --fit/--fit-csv (the curve's own device counts are predicted)")
    against = [read_run(path) for path in args.against or []]
    if against:
        if args.gpus:
            raise KitError("--gpus: not with --against (the runs' rank counts are predicted)")
        if any(run.workload != args.workload for run in against):
            raise KitError(f"--against: every run must be a {args.workload} run")
        counts = [run.ranks for run in against]
        if len(set(counts)) != len(counts):
            raise KitError(f"--against: two runs at the same rank count ({sorted(counts)}); give one per count")
        args.gpus = sorted(counts)
    if not fitting and not args.gpus:
        raise KitError("--gpus: give the device counts to predict, e.g. --gpus 1,8,64")
    if args.no_calibration and args.calibration:
        raise KitError("--calibration: not with --no-calibration")
    if not 0 <= (args.overlap if args.overlap is not None else 0) <= 1 or not 0 <= args.fusion_mb <= 1 << 20:
        raise KitError("estimate: expected 0 <= --overlap <= 1 and 0 <= --fusion-mb <= 1048576")
    comm = Communication(
        algorithm=args.algorithm,
        fusion_bytes=int(args.fusion_mb * 1024 * 1024),
        overlap=args.overlap,
        fp16=args.fp16_allreduce,
    )
    terms, calibration = _calibration_terms(args, site, node, comm)
    from hpcai_tf.scaling.model_size import training_length

    epochs, dataset = training_length(args.workload)
    curve: list[tuple[int, float]] = []
    if args.from_run:
        run = read_run(args.from_run)
        if run.workload != args.workload:
            raise KitError(f"--from-run: {run.path} is a {run.workload} run, not {args.workload}")
        if run.ranks != 1:
            raise KitError(f"--from-run: expected a 1-rank run (the per-device step time), got {run.ranks} ranks")
        step, batch, step_source = run.step_time_s, run.batch_per_rank, f"measured: {run.path.parent.name}"
        epochs, dataset = run.epochs_to_train, run.dataset_size
    elif args.step_time:
        if not args.batch:
            raise KitError("--batch: required with --step-time (the batch per device it was measured at)")
        step, batch, step_source = args.step_time, args.batch, "supplied: --step-time"
    elif args.fit:
        runs = [read_run(path) for path in args.fit]
        for run in runs:
            if run.workload != args.workload:
                raise KitError(f"--fit: {run.path} is a {run.workload} run, not {args.workload}")
        counts = [run.ranks for run in runs]
        if len(set(counts)) != len(counts):
            raise KitError(f"--fit: two runs at the same rank count ({sorted(counts)}); give one run per count")
        batches = {run.batch_per_rank for run in runs}
        if len(batches) != 1:
            raise KitError(f"--fit: the runs have different batches per rank ({sorted(batches)})")
        curve = sorted((run.ranks, run.throughput) for run in runs)
        batch = batches.pop()
        step, step_source = batch * curve[0][0] / curve[0][1], f"measured: the {curve[0][0]}-rank run"
        epochs, dataset = runs[0].epochs_to_train, runs[0].dataset_size
    elif args.fit_csv:
        from hpcai_tf.scaling.curve_fit import read_curve_csv

        if not args.batch:
            raise KitError("--batch: required with --fit-csv (the batch per device of the measured curve)")
        curve, batch = read_curve_csv(args.fit_csv), args.batch
        if len(curve) < 2:
            raise KitError(f"{args.fit_csv}: expected two or more device counts, got {len(curve)}")
        step, step_source = batch * curve[0][0] / curve[0][1], f"measured: {args.fit_csv.name}, {curve[0][0]} device(s)"
    elif calibration is not None:
        entry = calibration.workloads[args.workload]
        step, batch = entry.step_time_s, entry.batch_per_device
        step_source = f"measured: {Path(calibration.path).name}, alone on the node"
    else:
        raise KitError("estimate: give --from-run, --step-time, --fit or --fit-csv (or calibrate the site first)")
    if args.params and args.tensors:
        params, tensors = args.params, args.tensors
    else:
        from hpcai_tf.scaling.model_size import model_size

        size = model_size(args.workload, smoke=args.smoke)
        params, tensors = args.params or size.parameters, args.tensors or size.tensors
    workload = Workload(args.workload, step, batch, params, tensors, epochs, dataset)
    print(
        f"# {args.workload} on {site.id} ({node.name}): {params:,} parameters in {tensors} tensors, "
        f"{step * 1000:.1f} ms/step at batch {batch} per device ({step_source}), {comm.algorithm} allreduce"
    )
    print("\n| term | value | source | from |\n|---|---|---|---|")
    for name, value, origin, note in terms.rows():
        print(f"| {name} | {value} | {origin} | {note} |")
    print()
    if curve:
        return _fit(args, curve, batch, workload, site, node, comm, terms)
    rows = predict(workload, site, node, args.gpus, comm, terms)
    if against:
        return _against(args, against, rows, site)
    price = args.price or node.cloud_price_per_device_hour
    print(markdown_table(rows), end="")
    if price:
        print(f"\ncloud-equivalent cost of the full training at USD {price:.2f} per device-hour:")
        for row in rows:
            usd = row.time_to_train_h * row.devices * price
            print(f"  {row.devices:>5} devices: {row.time_to_train_h:9.2f} h  USD {usd:,.0f}")
    _write_report(rows, args.out, f"{args.workload} on {site.id}: predicted scaling", "estimate", "devices")
    return 0


def _fit(args, curve, batch, workload, site, node, comm, terms) -> int:
    """``--fit``/``--fit-csv``: the fitted terms, measured beside predicted, and a plot of both."""
    from hpcai_tf.scaling.curve_fit import fit_curve
    from hpcai_tf.scaling.report import markdown_table

    fit = fit_curve(curve, batch, workload, site, node, comm, terms)
    fitted = [p.devices for p in fit.points if p.fitted]
    print(
        f"fitted on {', '.join(map(str, fitted))} device(s): synchronisation {fit.sync_per_doubling:.4f} of a step "
        f"per doubling, {fit.exposed_share:.3f} of the modelled allreduce exposed"
    )
    print(markdown_table(fit.points), end="")
    predicted = [p for p in fit.points if not p.fitted]
    if predicted:
        worst = max(predicted, key=lambda p: abs(p.error))
        print(f"\nlargest error of the predicted counts: {worst.error:+.1%} at {worst.devices} devices")
    title = f"{args.workload} on {site.id}: measured and fitted"
    _write_beside(fit.points, args.out, title, "model (fitted on the smallest counts)")
    return 0


def _against(args: argparse.Namespace, runs, rows, site) -> int:
    """``--against``: measured runs beside the prediction at their rank counts, in one table and one plot."""
    from hpcai_tf.scaling.curve_fit import CurvePoint
    from hpcai_tf.scaling.report import markdown_table

    measured = {run.ranks: run.throughput for run in runs}
    points = [CurvePoint(row.devices, measured[row.devices], row.throughput, False) for row in rows]
    print(markdown_table(points), end="")
    base = points[0]
    for point in points[1:]:
        eff_measured = point.measured / base.measured * base.devices / point.devices
        eff_predicted = point.predicted / base.predicted * base.devices / point.devices
        print(
            f"efficiency at {point.devices} against {base.devices}: measured {eff_measured:.3f}, "
            f"predicted {eff_predicted:.3f} ({eff_predicted / eff_measured - 1:+.1%})"
        )
    _write_beside(points, args.out, f"{args.workload} on {site.id}: measured and predicted", "model")
    return 0


def _write_beside(points, out: Path | None, title: str, model: str) -> None:
    """estimate.md, estimate.csv and estimate.png of measured beside predicted under ``out`` (if given)."""
    if out is None:
        return
    from hpcai_tf.files import check_targets, write_atomic
    from hpcai_tf.scaling.curve_fit import plot_lines
    from hpcai_tf.scaling.report import csv_table, markdown_table, plot_scaling

    check_targets([out / "estimate.md", out / "estimate.csv", out / "estimate.png"])
    write_atomic(out / "estimate.md", f"# {title}\n\n" + markdown_table(points))
    write_atomic(out / "estimate.csv", csv_table(points))
    plot_scaling(plot_lines(points, model), out / "estimate.png", title, "devices")


def _epochs_range(steps: list[float]) -> str:
    """Per-epoch step times as "a to b ms over n epochs": how much the node drifted while it was measured."""
    return f"{min(steps) * 1e3:.1f} to {max(steps) * 1e3:.1f} ms over {len(steps)} epoch(s)"


def _calibrate(args: argparse.Namespace) -> int:
    from hpcai_tf.catalog import load_site
    from hpcai_tf.commands.train import check_train_arguments
    from hpcai_tf.files import check_targets, write_atomic
    from hpcai_tf.image.singularity import find_runtime
    from hpcai_tf.scaling.calibrate import DEFAULT_SIZES, Place, calibrate
    from hpcai_tf.scaling.calibration import default_path

    check_train_arguments(args.workload, args.passthrough)
    site = load_site(args.site)
    target = (args.out / f"{site.id}.json") if args.out else default_path(site.id)
    check_targets([target])
    pair = emulated_pair(site) if args.across_nodes else None
    place = Place()
    if args.image is not None:
        if not args.image.is_file():
            raise KitError(f"--image: expected a SIF file, got {args.image} (no such file)")
        place = Place(find_runtime(), args.image)
    calibration = calibrate(
        site,
        args.workload,
        list(args.passthrough or []),
        ranks=args.ranks,
        previous=target,
        sizes=args.message_sizes or DEFAULT_SIZES,
        place=place,
        across_nodes=pair,
    )
    write_atomic(target, calibration.to_json())
    link, entry = calibration.link, calibration.workloads[args.workload]
    print(
        f"calibrate: {site.id} link within a node: latency {link.latency_s * 1e6:.1f} us, bandwidth "
        f"{link.bandwidth / 1e9:.3f} GB/s, reduction {link.reduction_s_per_byte * 1e9:.3f} ns/byte "
        f"(worst fit residual {link.worst_residual:.0%})"
    )
    across = calibration.link_across_nodes
    if across is not None:
        print(
            f"calibrate: {site.id} link across 2 emulated nodes: latency {across.latency_s * 1e6:.1f} us, "
            f"bandwidth {across.bandwidth / 1e9:.3f} GB/s (worst fit residual {across.worst_residual:.0%})"
        )
    print(
        f"calibrate: {args.workload}: step {entry.step_time_s * 1e3:.1f} ms alone "
        f"({_epochs_range(entry.step_time_epochs_s)}), {entry.shared_step_time_s * 1e3:.1f} ms with {args.ranks} "
        f"at once ({_epochs_range(entry.shared_step_time_epochs_s)}); gradients "
        f"({entry.gradient_tensors} tensors, {entry.gradient_bytes:,} bytes) allreduced in "
        f"{entry.gradient_allreduce_s * 1e3:.2f} ms, {entry.step_overhead_s * 1e3:.2f} ms of it overhead"
    )
    shares = [share for _, share in entry.gradient_ready]
    print(
        f"calibrate: {args.workload}: gradients ready from {min(shares):.2f} to {max(shares):.2f} of a step; "
        f"forward and backward pass {entry.probe_step_s * 1e3:.1f} ms on {args.ranks} ranks, "
        f"{entry.probe_step_with_allreduce_s * 1e3:.1f} ms with the allreduces: they run at "
        f"{entry.beside_rate:.2f} of their speed beside it"
    )
    print(f"calibrate: wrote {target}")
    return 0


def emulated_pair(site: Site):
    """For ``hpcai calibrate --across-nodes``: a function that runs a probe's argv with one rank on each of two
    emulated nodes of this host (:func:`~hpcai_tf.launch.emulated_cluster.link_probe_shape`, started for it in
    ``/var/tmp``, stopped by PID and removed after) under ``srun --mpi=pmix``. Between them Open MPI talks TCP
    over loopback, so a site whose link across nodes is anything else is refused here, before anything runs."""
    import shutil

    from hpcai_tf.launch.emulated_cluster import (
        LINK_PROBE_PARTITION,
        EmulatedCluster,
        check_host_environment,
        default_root,
        link_probe_shape,
        require_slurm,
    )

    inter = site.interconnect.inter_node.name
    if "loopback" not in inter.lower():
        raise KitError(
            f"--across-nodes: emulated nodes of this host talk TCP over loopback, not site {site.id}'s {inter}; "
            "expected a site whose link across nodes is loopback (local)"
        )
    require_slurm(site, "--across-nodes")
    check_host_environment("--across-nodes")

    def run(program: Sequence[str]) -> subprocess.CompletedProcess:
        root = default_root()
        try:
            with EmulatedCluster(link_probe_shape(site, 2), root) as cluster:
                srun = ["srun", "-p", LINK_PROBE_PARTITION, "-N2", "--ntasks-per-node=1", "--mpi=pmix"]
                return cluster.run(*srun, *program, check=False, timeout=900)
        finally:
            shutil.rmtree(root, ignore_errors=True)

    return run


def _cost(args: argparse.Namespace) -> int:
    from hpcai_tf.catalog import load_site
    from hpcai_tf.scaling.cost import run_costs

    for line in run_costs(args.runs, args.price, load_site(args.site) if args.site else None, load_site):
        print(line)
    return 0
