"""``hpcai train``, ``hpcai data`` and ``hpcai evaluate``: the workloads inside an image.

TensorFlow, Horovod, lalsuite and GalSim are imported inside the handlers, so ``hpcai --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path

from hpcai_tf.errors import KitError
from hpcai_tf.train import WORKLOADS
from hpcai_tf.train.metrics_log import METRICS_FILE
from hpcai_tf.train.options import (
    add_train_flags,
    forwarded_arguments,
    set_by_job_script,
    train_flags,
    train_options,
)
from hpcai_tf.train.signals import EXIT_PREEMPTED


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_train(subparsers)
    _register_data(subparsers)
    _register_evaluate(subparsers)


# ------------------------------------------------------------------------------------------------- train
def _register_train(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a workload data-parallel with Horovod or TensorFlow's MultiWorkerMirroredStrategy",
        description=(
            "Train WORKLOAD (resnet50, gw, des) data-parallel with Horovod (--backend horovod, the default) or "
            "TensorFlow's MultiWorkerMirroredStrategy (--backend mwms). With --ranks N this starts "
            f"mpirun -np N itself; under mpirun, srun or jsrun each task joins the job. Writes {METRICS_FILE}, "
            "checkpoint.h5 and TensorBoard logs to the run directory. A preempted run (SIGUSR1/SIGTERM) "
            f"checkpoints and exits {EXIT_PREEMPTED}; rerun it with --resume."
        ),
    )
    parser.add_argument("workload", choices=WORKLOADS)
    add_train_flags(parser)
    parser.set_defaults(func=train_command)


class _TrainArgumentParser(argparse.ArgumentParser):
    """The ``hpcai train`` parser as a checker: what it would refuse in the job is a KitError now."""

    def __init__(self, *args, **kwargs):
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        raise KitError(f"train arguments after --: {message}")

    def print_help(self, file=None) -> None:
        raise KitError("train arguments after --: -h/--help prints help; run `hpcai train --help` instead")


def check_train_arguments(workload: str, argv: list[str], backend: str | None = None) -> None:
    """Parse ``hpcai train WORKLOAD ARGV`` with the training parser itself, so that a job fails when its
    script is written, not hours later in the queue; a KitError names the argument and what was expected.

    The flags of :data:`~hpcai_tf.train.options.JOB_SCRIPT_FLAGS` are the launcher's (the job resumes in its own
    run directory); with ``backend``, a flag of the other backend is refused too.
    """
    import dataclasses

    from hpcai_tf.train.options import check_backend_options

    parser = _TrainArgumentParser(prog="hpcai")
    _register_train(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", workload, *argv])
    given = {arg.split("=", 1)[0] for arg in argv}
    for _, each in train_flags():
        if each.set_by_job_script and each.name in given:
            raise KitError(set_by_job_script(each.name))
    if backend is not None:
        check_backend_options(dataclasses.replace(train_options(args), backend=backend))


def rank_arguments(args: argparse.Namespace, run_dir: Path) -> list[str]:
    """The ``hpcai train`` arguments of every rank: the same flags, an absolute run directory, no --ranks."""
    return ["train", args.workload, "--run-dir", str(run_dir), *forwarded_arguments(args)]


def _quiet_tensorflow(backend: str = "horovod") -> None:
    """Before TensorFlow is imported: tf.keras as the stack wants it, C++ INFO and WARNING lines hidden (ERROR
    lines too under --backend mwms), unless the user set the variables; see hpcai_tf.train.tf_environment. Ranks
    started with --ranks inherit it."""
    from hpcai_tf.train.tf_environment import prepare_tensorflow

    prepare_tensorflow(backend=backend)


def train_command(args: argparse.Namespace) -> int:
    from hpcai_tf.train.launcher_env import detect_launcher
    from hpcai_tf.train.options import check_backend_options

    _quiet_tensorflow(args.backend)
    check_backend_options(train_options(args))

    claim = detect_launcher()
    joins = claim is not None and (args.ranks is None or claim.tasks is None or claim.tasks > 1)
    if args.ranks is not None and args.ranks < 1:
        raise KitError(f"--ranks must be >= 1, got {args.ranks}")
    if joins and args.ranks is not None and claim.tasks is not None and args.ranks != claim.tasks:
        raise KitError(
            f"--ranks {args.ranks}, but {claim.launcher} started {claim.tasks} tasks ({claim.variable}); "
            "under a launcher drop --ranks"
        )
    if not joins and args.ranks is not None and args.ranks > 1:
        return _start_mpirun(args)
    return _run_this_rank(args)


def _start_mpirun(args: argparse.Namespace) -> int:
    from hpcai_tf.train.loop import PROGRESS_BAR_ENV, run_config
    from hpcai_tf.train.mpirun_spawn import (
        find_mpirun,
        mpirun_command,
        mpirun_environment,
        rank_entry_argv,
        run_mpirun,
    )
    from hpcai_tf.train.run_dir import abandon_run_dir, before_run_dir, make_run_dir, plan_run_dir

    options = train_options(args)
    run_config(options)  # a bad config is reported once, here, not by every rank
    run_dir = plan_run_dir(args.workload, args.run_dir, args.resume)
    progress = {PROGRESS_BAR_ENV: "1" if sys.stdout.isatty() else "0"}
    env = mpirun_environment(os.environ, {"PYTHONUNBUFFERED": "1", **progress})
    mpirun = find_mpirun(env)
    before = before_run_dir(run_dir)
    run_dir = make_run_dir(run_dir)
    command = mpirun_command(args.ranks, [*rank_entry_argv(), *rank_arguments(args, run_dir)], env, mpirun=mpirun)
    print(f"hpcai: {' '.join(command[:9])} ... ({args.ranks} ranks, run directory {run_dir})", flush=True)
    status = run_mpirun(command, env)
    if status not in (0, EXIT_PREEMPTED) and not (run_dir / METRICS_FILE).exists():
        abandon_run_dir(run_dir, before)  # the ranks refused or failed before recording anything: leave nothing
    if status > 128 and status != 128 + signal.SIGINT:  # a rank killed by a signal cannot say so itself
        name = _signal_name(status - 128)
        print(f"hpcai: error: a rank was killed ({name}); mpirun ended the job (status {status})", file=sys.stderr)
    return status


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _current_rank() -> tuple[int, int]:
    """(rank, size) of this process: the backend's once started, else the launcher's claim."""
    from hpcai_tf.train.distributed import current_ranks

    ranks = current_ranks()
    if ranks is not None:
        return ranks.rank, ranks.size
    from hpcai_tf.train.launcher_env import detect_launcher, launcher_rank

    claim = detect_launcher()
    return launcher_rank(), (claim.tasks or 1) if claim else 1


def _lost_worker(err: BaseException) -> str | None:
    """The backend's one line for an error that means another worker is gone."""
    from hpcai_tf.train.distributed import current_ranks

    ranks = current_ranks()
    return ranks.backend.lost_worker(err) if ranks is not None and ranks.backend is not None else None


def _run_this_rank(args: argparse.Namespace) -> int:
    from hpcai_tf.train.distributed import AgreedError
    from hpcai_tf.train.tf_environment import import_tensorflow

    options = train_options(args)
    try:
        if options.backend == "mwms":  # TF_CONFIG before TensorFlow starts; a launcher that names no workers: refused
            from hpcai_tf.train.backend_mwms import plan_workers
            from hpcai_tf.train.tf_config import DEFAULT_PORT_BASE

            plan_workers(os.environ, options.port_base or DEFAULT_PORT_BASE)
        import_tensorflow()  # first, so that what TensorFlow's libraries print while loading is filtered
        from hpcai_tf.train.loop import run_rank

        return run_rank(options)
    except AgreedError as err:
        if _current_rank()[0] != 0:
            return err.exit_code  # rank 0 prints the error every rank agreed on
        raise
    except KitError as err:
        rank, size = _current_rank()
        if size > 1:  # an error on this rank alone: end it now, so that mpirun ends the others (no MPI_Finalize)
            print(f"hpcai: error: {err}" + (f" (rank {rank})" if rank else ""), file=sys.stderr, flush=True)
            os._exit(err.exit_code)
        raise
    except Exception as err:
        lost = _lost_worker(err)
        if lost is not None:  # one line (or none), not TensorFlow's traceback of the collective that failed
            if lost:
                print(f"hpcai: error: {lost}", file=sys.stderr, flush=True)
            os._exit(1)
        if _current_rank()[1] > 1:
            traceback.print_exc()
            sys.stderr.flush()
            os._exit(1)
        raise


# -------------------------------------------------------------------------------------------------- data
def _register_data(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="generate or convert training data")
    kinds = parser.add_subparsers(dest="data_kind", metavar="KIND", required=True)

    gw = kinds.add_parser("gw", help="binary black hole h22 waveforms from lalsuite (IMRPhenomXAS) into HDF5")
    gw.add_argument("--n", type=int, metavar="N", help="number of waveforms (default: the config's data.samples)")
    gw.add_argument("--out", required=True, metavar="FILE.h5")
    gw.add_argument("--noise", type=float, metavar="SNR", help="whitened aLIGO noise at this optimal SNR")
    gw.add_argument("--length", type=int, metavar="SAMPLES", help="samples per waveform")
    gw.add_argument("--dt", type=float, metavar="M", help="sample spacing in units of the total mass")
    _common_data_flags(gw)
    gw.set_defaults(func=data_gw_command)

    des = kinds.add_parser("des", help="GalSim spiral and elliptical galaxies into TFRecord shards")
    des.add_argument("--n", type=int, metavar="N", help="number of images (default: the config's data.samples)")
    des.add_argument("--out", required=True, metavar="DIR")
    des.add_argument("--size", type=int, metavar="PIXELS", help="image width and height")
    des.add_argument("--shards", type=int, metavar="N", help="training shards")
    _common_data_flags(des)
    des.set_defaults(func=data_des_command)

    imagenet = kinds.add_parser("imagenet", help="ImageNet folders into TFRecord shards, or a small synthetic set")
    source = imagenet.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--from", dest="source", metavar="DIR", help="raw layout: DIR/train/<synset>/, DIR/val/<synset>/"
    )
    source.add_argument("--synthetic", action="store_true", help="a small generated set (tests, smoke runs)")
    imagenet.add_argument("--out", required=True, metavar="DIR")
    imagenet.add_argument("--n", type=int, metavar="N", help="--synthetic: training images")
    imagenet.add_argument("--classes", type=int, metavar="N", help="--synthetic: classes")
    imagenet.add_argument("--size", type=int, metavar="PIXELS", help="--synthetic: image size")
    imagenet.add_argument("--train-shards", type=int, default=1024, metavar="N")
    imagenet.add_argument("--validation-shards", type=int, default=128, metavar="N")
    _common_data_flags(imagenet)
    imagenet.set_defaults(func=data_imagenet_command)


def _common_data_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, metavar="N")
    parser.add_argument("--workers", type=int, metavar="N", help="processes (default: all cores; 1 per MPI rank)")
    parser.add_argument("--smoke", action="store_true", help="use the smoke preset's data settings")
    parser.add_argument("--config", metavar="FILE", help="take the data settings from this config file")


def _data_config(workload: str, args: argparse.Namespace):
    from hpcai_tf.train.config import resolve_config

    overrides = {"seed": args.seed} if args.seed is not None else {}
    return resolve_config(workload, smoke=args.smoke, config_file=args.config, overrides=overrides)


def _data_world(args: argparse.Namespace) -> dict:
    from hpcai_tf.train.data.parallel import default_workers, mpi_world

    rank, size, barrier = mpi_world()
    workers = args.workers if args.workers is not None else (1 if size > 1 else default_workers())
    if workers < 1:
        raise KitError(f"--workers must be >= 1, got {workers}")
    return {"rank": rank, "size": size, "barrier": barrier, "workers": workers}


def _done(rank: int, text: str, start: float) -> int:
    if rank == 0:
        print(f"hpcai: {text} in {time.time() - start:.1f} s", flush=True)
    return 0


def data_gw_command(args: argparse.Namespace) -> int:
    _quiet_tensorflow()
    import dataclasses

    from hpcai_tf.train.data.gw_file import generate_gw_file
    from hpcai_tf.train.workloads.gw import generation_from_config

    start = time.time()
    gen = generation_from_config(_data_config("gw", args), n=args.n, noise_snr=args.noise)
    spec_changes = {k: v for k, v in (("length", args.length), ("dt_M", args.dt)) if v is not None}
    if spec_changes:
        gen = dataclasses.replace(gen, spec=dataclasses.replace(gen.spec, **spec_changes))
    world = _data_world(args)
    out = generate_gw_file(args.out, gen, **world)
    noise = f", whitened aLIGO noise at SNR {gen.noise_snr:g}" if gen.noise_snr > 0 else ", noise-free"
    return _done(
        world["rank"],
        f"wrote {gen.n} waveforms of {gen.spec.length} samples (dt {gen.spec.dt_M:g} M{noise}) to {out}",
        start,
    )


def data_des_command(args: argparse.Namespace) -> int:
    _quiet_tensorflow()
    import dataclasses

    from hpcai_tf.train.data.des_data import generate_des_dir
    from hpcai_tf.train.workloads.des import generation_from_config

    start = time.time()
    gen = generation_from_config(_data_config("des", args), n=args.n)
    if args.size is not None:
        gen = dataclasses.replace(gen, spec=dataclasses.replace(gen.spec, image_size=args.size))
    if args.shards is not None:
        gen = dataclasses.replace(gen, shards=args.shards)
    world = _data_world(args)
    out = generate_des_dir(args.out, gen, **world)
    return _done(world["rank"], f"wrote {gen.n} galaxy images of {gen.spec.image_size} pixels to {out}", start)


def data_imagenet_command(args: argparse.Namespace) -> int:
    _quiet_tensorflow()
    import dataclasses

    from hpcai_tf.train.data.imagenet import convert_imagenet, generate_synthetic_imagenet
    from hpcai_tf.train.workloads.resnet50 import synthetic_set_from_config

    start = time.time()
    world = _data_world(args)
    if args.synthetic:
        spec = synthetic_set_from_config(_data_config("resnet50", args), n=args.n)
        changes = {k: v for k, v in (("classes", args.classes), ("image_size", args.size)) if v is not None}
        spec = dataclasses.replace(spec, **changes)
        out = generate_synthetic_imagenet(args.out, spec, **world)
        return _done(world["rank"], f"wrote {spec.n} + {spec.validation_samples} synthetic images to {out}", start)
    out = convert_imagenet(
        args.source,
        args.out,
        train_shards=args.train_shards,
        validation_shards=args.validation_shards,
        **world,
    )
    return _done(world["rank"], f"converted {args.source} into TFRecord shards in {out}", start)


# ---------------------------------------------------------------------------------------------- evaluate
def _register_evaluate(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="the workload's quality figure from a checkpoint",
        description="Load a checkpoint and print the workload's quality figure as one JSON line (GW: mean "
        "overlap; DES: accuracy; resnet50: top-1/top-5).",
    )
    parser.add_argument("workload", choices=WORKLOADS)
    parser.add_argument("--checkpoint", required=True, metavar="FILE")
    parser.add_argument("--data", metavar="PATH", help="data to evaluate on (default: the data of the run)")
    parser.set_defaults(func=evaluate_command)


def evaluate_command(args: argparse.Namespace) -> int:
    from hpcai_tf.train.tf_environment import import_tensorflow

    import_tensorflow()
    from hpcai_tf.train.evaluate import evaluate_checkpoint

    result = evaluate_checkpoint(args.workload, args.checkpoint, args.data)
    print(json.dumps(result, sort_keys=True))
    return 0
