"""``hpcai train``'s flags, each declared once, as a field of :class:`TrainOptions`.

A field's :func:`flag` (or :func:`switch`, :func:`repeated`) holds the flag's name, metavar and help; its type
and default are the field's. From these fields come the argparse parser (:func:`add_train_flags`), the options
of a parsed command line (:func:`train_options`), the arguments every rank gets from ``--ranks N``
(:func:`forwarded_arguments`) and the flags a job script sets itself (:data:`JOB_SCRIPT_FLAGS`), refused among a
job's extra train arguments. This module imports nothing heavy: the host side reads it too.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hpcai_tf.errors import KitError
from hpcai_tf.train.metrics_log import METRICS_FILE
from hpcai_tf.train.signals import EXIT_PREEMPTED
from hpcai_tf.train.tf_config import ADDRESS_VARIABLE, DEFAULT_PORT_BASE

BACKENDS = ("horovod", "mwms")
"""``--backend``: Horovod over MPI (the default), or TensorFlow's MultiWorkerMirroredStrategy."""
DEFAULT_BACKEND = "horovod"
DEFAULT_COLLECTIVE_TIMEOUT = 300.0
"""``--collective-timeout``: seconds an MWMS collective may wait for the other workers (TensorFlow's default: none)."""
HOROVOD_ONLY = ("--fp16-allreduce", "--timeline")
MWMS_ONLY = ("--port-base", "--collective-timeout")

Kind = Literal["value", "path", "switch", "negated switch", "list"]
"""How a flag is read and handed on: one argument (a path is made absolute for the ranks), present or absent
(a negated switch clears its field), or repeated into a list."""


@dataclass(frozen=True)
class TrainFlag:
    """One ``hpcai train`` flag: what argparse needs beyond the field's type and default, and where it goes."""

    name: str
    kind: Kind
    metavar: str | None = None
    help: str | None = None
    config_key: str | None = None
    """A configuration key the value overrides (see :attr:`TrainOptions.overrides`)."""
    forwarded: bool = True
    """``--ranks N`` hands the flag on to every rank unchanged."""
    set_by_job_script: bool = False
    """A job script sets it itself (run directory, ranks, resume), so a job's extra train arguments may not."""
    doc: str | None = None
    """The flag's entry in ``docs/train-flags.md`` (Markdown), when the help line is not enough."""


_FLAG = "hpcai_train_flag"


def flag(name: str, metavar: str, help: str | None = None, *, kind: Kind = "value", **more: Any) -> Any:
    """A field read from ``name VALUE`` (None when absent)."""
    return dataclasses.field(default=None, metadata={_FLAG: TrainFlag(name, kind, metavar, help, **more)})


def switch(name: str, help: str, *, negated: bool = False, **more: Any) -> Any:
    """A field set by ``name`` (or, ``negated``, cleared by it)."""
    kind: Kind = "negated switch" if negated else "switch"
    return dataclasses.field(default=negated, metadata={_FLAG: TrainFlag(name, kind, None, help, **more)})


def repeated(name: str, metavar: str, help: str) -> Any:
    """A list field, one item per ``name VALUE``."""
    return dataclasses.field(default_factory=list, metadata={_FLAG: TrainFlag(name, "list", metavar, help)})


@dataclass
class TrainOptions:
    """What ``hpcai train`` was asked to do (flags beyond the configuration), one field per flag, in help order."""

    workload: str
    ranks: int | None = flag(
        "--ranks",
        "N",
        "start mpirun -np N on this node",
        forwarded=False,
        set_by_job_script=True,
        doc="start `mpirun -np N` on this node, each rank re-running the same command without `--ranks`",
    )
    backend: str = dataclasses.field(
        default=DEFAULT_BACKEND,
        metadata={
            _FLAG: TrainFlag(
                "--backend",
                "value",
                "{horovod,mwms}",
                f"data-parallel backend (default {DEFAULT_BACKEND})",
                set_by_job_script=True,
                doc=(
                    "`horovod` (default): Horovod over MPI. `mwms`: TensorFlow's `MultiWorkerMirroredStrategy`, "
                    "no Horovod needed; `TF_CONFIG` is built from the launcher's environment (see "
                    "[training.md](training.md#two-backends))"
                ),
            )
        },
    )
    port_base: int | None = flag(
        "--port-base",
        "PORT",
        f"mwms: worker r listens on PORT + r (default {DEFAULT_PORT_BASE})",
        doc=(
            f"`--backend mwms`: worker r listens on PORT + r (default {DEFAULT_PORT_BASE}); a port already taken "
            f"is refused. `{ADDRESS_VARIABLE}` set: every worker is reached at that address"
        ),
    )
    collective_timeout: float | None = flag(
        "--collective-timeout",
        "SECONDS",
        f"mwms: a collective waits at most this long (default {DEFAULT_COLLECTIVE_TIMEOUT:g})",
        doc=(
            "`--backend mwms`: a collective that waits longer for the other workers fails the run "
            f"(default {DEFAULT_COLLECTIVE_TIMEOUT:g} s; 0: none, TensorFlow's default); a dead worker is noticed "
            "sooner, by its missing heartbeats. TensorFlow keeps a thread per collective for the timeout's length"
        ),
    )
    run_dir: str | None = flag(
        "--run-dir",
        "DIR",
        "run directory (default runs/<workload>-<time>)",
        forwarded=False,
        set_by_job_script=True,
        doc=(
            f"where `{METRICS_FILE}`, `checkpoint.h5`, `tensorboard/` (and smoke data) go; default "
            "`runs/<workload>-<YYYYmmdd-HHMMSS>`"
        ),
    )
    config_file: str | None = flag(
        "--config",
        "FILE",
        "a TOML file overriding the workload's config",
        doc="a TOML file overriding the workload's configuration (see [workloads.md](workloads.md))",
    )
    smoke: bool = switch(
        "--smoke",
        "reduced sizes; generates its own data if no --data",
        doc="the reduced preset; without `--data` the ranks generate a small data set into `RUN_DIR/data/`",
    )
    data: str | None = flag(
        "--data",
        "PATH",
        "GW: HDF5 file; DES: data directory; resnet50: shards",
        kind="path",
        doc="GW: an HDF5 file; DES: a shard directory or a folder of images; ResNet-50: a shard directory",
    )
    synthetic: bool = switch(
        "--synthetic",
        "resnet50: random in-memory data (throughput)",
        doc="ResNet-50 only: random in-memory batches for throughput runs",
    )
    epochs: int | None = flag("--epochs", "N", config_key="epochs")
    batch_per_rank: int | None = flag("--batch-per-rank", "N", config_key="batch_per_rank")
    lr: float | None = flag("--lr", "X", "base LR (per worker, or per 256 for resnet50)", config_key="optimizer.lr")
    warmup_epochs: float | None = flag("--warmup-epochs", "X", config_key="optimizer.warmup_epochs")
    seed: int | None = flag("--seed", "N", config_key="seed")
    steps_per_epoch: int | None = flag(
        "--steps-per-epoch", "N", "cap/extend the steps of each epoch", config_key="steps_per_epoch"
    )
    sets: list[str] = repeated("--set", "KEY=VALUE", "any config key, e.g. model.channels=32")  # noqa: RUF009 (a field)
    resume: bool = switch(
        "--resume",
        "continue from the run's checkpoint if there is one",
        set_by_job_script=True,
        doc=(
            "continue from `RUN_DIR/checkpoint.h5`; without one, start fresh (the same command serves the first "
            "run and the requeued one). Without `--run-dir` it picks the newest unfinished `runs/<workload>-*` "
            "with a checkpoint"
        ),
    )
    deterministic: bool = switch(
        "--deterministic",
        "bitwise-reproducible on CPU (fusion off, deterministic ops)",
        doc=(
            "bitwise-reproducible on CPU, also across a stop and resume: `HOROVOD_FUSION_THRESHOLD=0`, TensorFlow "
            "op determinism, seeds, Dropout keyed by the step (see [training.md](training.md))"
        ),
    )
    mixed_precision: bool = switch(
        "--mixed-precision",
        "float16 on GPUs, bfloat16 on CPUs",
        doc="Keras mixed precision: `mixed_float16` on GPUs (Keras adds loss scaling), `mixed_bfloat16` on CPUs",
    )
    fp16_allreduce: bool = switch(
        "--fp16-allreduce", "Horovod fp16 gradient compression", doc="Horovod's fp16 gradient compression"
    )
    timeline: str | None = flag(
        "--timeline", "FILE", "write a Horovod timeline", kind="path", doc="a Horovod timeline (`HOROVOD_TIMELINE`)"
    )
    stop_after_epoch: int | None = flag(
        "--stop-after-epoch",
        "K",
        f"stop like a preemption after epoch K (exit {EXIT_PREEMPTED})",
        doc=(
            "stop after epoch K exactly as a preemption would (checkpoint, `preempted` record, exit status "
            f"{EXIT_PREEMPTED})"
        ),
    )
    tensorboard: bool = switch(
        "--no-tensorboard", "do not write TensorBoard logs", negated=True, doc="no TensorBoard event files"
    )

    @property
    def overrides(self) -> dict[str, Any]:
        """The configuration keys the command line set (``--epochs``, ``--lr`` ...), by key."""
        return {
            each.config_key: getattr(self, field.name)
            for field, each in train_flags()
            if each.config_key and getattr(self, field.name) is not None
        }


def check_backend_options(options: TrainOptions) -> None:
    """Flags of one backend refused with the other, before anything starts (one line naming the flag)."""
    if options.backend not in BACKENDS:
        raise KitError(f"--backend: expected one of {', '.join(BACKENDS)}, got {options.backend!r}")
    given = {each.name for field, each in train_flags() if getattr(options, field.name) not in (None, False)}
    other = MWMS_ONLY if options.backend == "horovod" else HOROVOD_ONLY
    for name in other:
        if name in given:
            owner = "mwms" if options.backend == "horovod" else "horovod"
            raise KitError(f"{name}: only with --backend {owner}, this run has --backend {options.backend}")
    if options.collective_timeout is not None and not options.collective_timeout >= 0:
        raise KitError(f"--collective-timeout: expected seconds >= 0 (0: no timeout), got {options.collective_timeout}")


def train_flags() -> list[tuple[dataclasses.Field, TrainFlag]]:
    """Every flag of ``hpcai train`` with its field of :class:`TrainOptions`, in help order."""
    return [(field, field.metadata[_FLAG]) for field in dataclasses.fields(TrainOptions) if _FLAG in field.metadata]


def _value_type(field: dataclasses.Field) -> Callable[[str], Any] | None:
    """argparse's ``type`` of a value flag: the field's type without None (None for a string)."""
    hint = typing.get_type_hints(TrainOptions)[field.name]
    (kind,) = [each for each in typing.get_args(hint) if each is not type(None)] or [hint]
    return None if kind is str else kind


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    """Add every flag of ``hpcai train`` to ``parser``; each one's ``dest`` is its field of :class:`TrainOptions`."""
    for field, each in train_flags():
        if each.kind == "switch":
            parser.add_argument(each.name, dest=field.name, action="store_true", help=each.help)
        elif each.kind == "negated switch":
            parser.add_argument(each.name, dest=field.name, action="store_false", help=each.help)
        elif each.kind == "list":
            parser.add_argument(
                each.name, dest=field.name, action="append", default=[], metavar=each.metavar, help=each.help
            )
        else:
            default = None if field.default is dataclasses.MISSING else field.default
            parser.add_argument(
                each.name,
                dest=field.name,
                type=_value_type(field),
                default=default,
                metavar=each.metavar,
                help=each.help,
            )


def train_options(args: argparse.Namespace) -> TrainOptions:
    """The options of a command line parsed by a parser with :func:`add_train_flags` (and ``workload``)."""
    values = {field.name: getattr(args, field.name) for field, _ in train_flags()}
    return TrainOptions(workload=args.workload, **{**values, "sets": list(values["sets"])})


def forwarded_arguments(args: argparse.Namespace) -> list[str]:
    """The flags of a parsed command line that ``--ranks N`` hands on to every rank (paths made absolute)."""
    argv: list[str] = []
    for field, each in train_flags():
        value = getattr(args, field.name)
        if not each.forwarded:
            continue
        if each.kind == "switch":
            argv += [each.name] if value else []
        elif each.kind == "negated switch":
            argv += [] if value else [each.name]
        elif each.kind == "list":
            for item in value:
                argv += [each.name, item]
        elif each.kind in ("value", "path") and value is not None and value != field.default:
            argv += [each.name, str(Path(value).absolute()) if each.kind == "path" else str(value)]
    return argv


JOB_SCRIPT_FLAGS = tuple(each.name for _, each in train_flags() if each.set_by_job_script)
"""``hpcai train`` flags a job script sets itself (run directory, ranks, resume)."""


def set_by_job_script(flag: str) -> str:
    """The one-line refusal of a :data:`JOB_SCRIPT_FLAGS` flag among a job's train arguments."""
    if flag == "--backend":
        return "train argument --backend: give --backend to hpcai launch or hpcai scale, which write it for every rank"
    return (
        f"train argument {flag}: set by the job script (the run directory is named after the job and the launcher "
        "starts the ranks); leave it out"
    )
