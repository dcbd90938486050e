"""Job scripts: a site's scheduler script around its image and one ``hpcai train`` run, from the site catalog.

Python decides, once, everything a script needs (partition, ranks, CPUs, GPUs, time, the launcher command and
its quoting); ``launch/<scheduler>.sh.j2`` holds the text, chosen by ``scheduler.kind``, and what the script
needs of the batch system is its record in :mod:`hpcai_tf.launch.schedulers`. Nothing here names a
site or a workload: sites differ only through catalog fields (``scheduler.launcher``, ``mpi.model``,
``runtime.gpu_flag``, ``env`` ...). Every value from the command line or the catalog that reaches the shell is
either checked against a strict pattern or quoted with :func:`shlex.quote`, so no argument can inject shell.

A request the site cannot satisfy raises :class:`KitError` before anything is rendered or written.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import jinja2

from hpcai_tf import __version__
from hpcai_tf.catalog import NodeType, Partition, Site
from hpcai_tf.errors import KitError
from hpcai_tf.launch.jsrun import Layout, resource_sets
from hpcai_tf.launch.schedulers import scheduler_for
from hpcai_tf.paths import LAUNCH_DIR
from hpcai_tf.train import BACKENDS, DEFAULT_BACKEND, JOB_SCRIPT_FLAGS, WORKLOADS, set_by_job_script
from hpcai_tf.train.image_contract import SITE_VARIABLE
from hpcai_tf.train.mpirun_line import mpirun_line
from hpcai_tf.train.signals import EXIT_PREEMPTED

RUNTIMES = ("singularity", "apptainer", "none")
DEFAULT_SIGNAL_LEAD = 300
"""Seconds before the time limit at which the scheduler asks the job to checkpoint."""
HOST_SITE_VARIABLE = SITE_VARIABLE
"""Names the site in a run's provenance; an image sets it itself, a job on the host exports it."""
SET_BY_SCRIPT = JOB_SCRIPT_FLAGS
"""``hpcai train`` flags the job script sets itself, refused among the extra train arguments."""

_TIME = re.compile(r"^(\d{1,3}):([0-5]\d)$")
_ACCOUNT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class LaunchRequest:
    """What the user asked for: ``hpcai launch WORKLOAD --site S --nodes N ...``; None means the site's default."""

    workload: str
    site: Site
    nodes: int
    ranks_per_node: int | None = None
    node_type: str | None = None
    runtime: str | None = None
    time: str | None = None
    account: str | None = None
    image: str | None = None
    run_root: str | None = None
    launcher: str | None = None
    jsrun_layout: Layout | None = None
    cuda_aware_mpi: bool = False
    signal_lead: int = DEFAULT_SIGNAL_LEAD
    train_args: tuple[str, ...] = ()
    host_hpcai: str | None = None
    """``--runtime none``: the ``hpcai`` to run (default: the one beside this Python)."""
    backend: str | None = None
    """``hpcai train --backend`` (default: the site's ``training.backend``, else horovod)."""


@dataclass(frozen=True)
class JobScript:
    """Every value a launch template reads, decided and quoted; the template only places them."""

    site: Site
    template: str
    name: str
    summary: str
    partition: str
    nodes: int
    ranks_per_node: int
    cpus_per_task: int
    gres: str | None
    time: str
    account: str | None
    alloc_flags: str
    signal_lead: int
    signal_lead_minutes: int
    run_dir: str
    job_id: str
    modules: list[str]
    exports: list[str]
    command: str
    preempted_status: int = EXIT_PREEMPTED
    """The exit status of a preempted ``hpcai train``, on which the job requeues."""
    kit_version: str = __version__


def parse_time(text: str, flag: str = "--time") -> int:
    """Minutes in an ``H:MM`` wall time (``0:30``, ``12:00``); zero or malformed is refused."""
    match = _TIME.fullmatch(text)
    if not match or int(match[1]) * 60 + int(match[2]) == 0:
        raise KitError(f"{flag}: expected a wall time H:MM greater than 0:00 (e.g. 0:30 or 12:00), got {text!r}")
    return int(match[1]) * 60 + int(match[2])


def choose_partition(site: Site, node: NodeType, nodes: int, minutes: int, time_text: str) -> Partition:
    """The first partition of ``node``'s type whose size range holds ``nodes`` and whose limit holds the time."""
    own = [p for p in site.partitions if p.node_type == node.name]
    sized = [p for p in own if p.min_nodes <= nodes <= p.max_nodes]
    if not sized:
        ranges = ", ".join(
            f"{p.name} ({p.min_nodes}-{p.max_nodes})" if p.min_nodes != p.max_nodes else f"{p.name} ({p.min_nodes})"
            for p in own
        )
        raise KitError(
            f"--nodes: site {site.id} has no partition for {_nodes(nodes)} of type {node.name}; "
            f"partitions (nodes): {ranges}"
        )
    for part in sized:
        if minutes <= parse_time(part.max_time, "max_time"):
            return part
    limit = sized[0]
    raise KitError(
        f"--time: {time_text} exceeds the {limit.max_time} limit of partition {limit.name} "
        f"for {_nodes(nodes)} on site {site.id}"
    )


def check_ranks_per_node(node: NodeType, ranks: int) -> None:
    """One GPU per rank on GPU nodes, at most one rank per core on CPU nodes."""
    if node.gpus and not 1 <= ranks <= node.gpus:
        raise KitError(
            f"--ranks-per-node: node type {node.name} has {node.gpus} GPUs (one per rank); "
            f"expected 1..{node.gpus}, got {ranks}"
        )
    if not node.gpus and not 1 <= ranks <= node.cores:
        raise KitError(
            f"--ranks-per-node: node type {node.name} has {node.cores} cores; expected 1..{node.cores}, got {ranks}"
        )


def check_train_args(args: tuple[str, ...]) -> None:
    """Extra train arguments are free text (quoted later), but not the flags the script sets itself."""
    for arg in args:
        name = arg.split("=", 1)[0]
        if name in SET_BY_SCRIPT:
            raise KitError(set_by_job_script(name))


def site_backend(site: Site) -> str:
    """The site's default ``--backend``: its catalog ``training.backend``, else the kit's default."""
    return site.training.backend if site.training else DEFAULT_BACKEND


def choose_backend(request: LaunchRequest) -> str:
    """The requested backend, else the site's."""
    backend = request.backend or site_backend(request.site)
    if backend not in BACKENDS:
        raise KitError(f"--backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    return backend


def choose_launcher(request: LaunchRequest) -> str:
    """The catalog's launcher, or the requested one if this scheduler kind can use it."""
    scheduler = request.site.scheduler
    launcher = request.launcher or scheduler.launcher
    allowed = scheduler_for(scheduler.kind).launchers
    if launcher not in allowed:
        raise KitError(
            f"--launcher: site {request.site.id} runs {scheduler.kind}, which starts ranks with "
            f"{' or '.join(allowed)}; got {launcher!r}"
        )
    return launcher


def host_hpcai() -> str:
    """The ``hpcai`` of the current environment: beside this Python, else on PATH."""
    beside = Path(sys.executable).parent / "hpcai"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    raise KitError(f"--runtime none: no hpcai executable beside {sys.executable}; install the kit in this environment")


def in_double_quotes(path: str) -> str:
    """A catalog path for use inside double quotes: ``$NAME`` becomes ``${NAME}``, expanded at run time.

    Anything else must be a plain absolute path (the catalog's pattern for ``mpi.host_root``), checked again here.
    """
    if re.fullmatch(r"\$[A-Z_][A-Z0-9_]*", path):
        return "${" + path[1:] + "}"
    if not re.fullmatch(r"(/[A-Za-z0-9._-]+)+", path):
        raise KitError(f"mpi.host_root: expected an absolute path or $NAME, got {path!r}")
    return path


def runtime_words(request: LaunchRequest, runtime: str, image: str) -> list[str]:
    """``<runtime> exec [--nv] [--bind host MPI] IMAGE``."""
    site = request.site
    words = [runtime, "exec"]
    if site.runtime.gpu_flag:
        words.append(site.runtime.gpu_flag)
    if site.mpi.model == "bind" and site.mpi.host_root:
        root = in_double_quotes(site.mpi.host_root)
        words += ["--bind", f'"{root}:{root}"']
    return [*words, shlex.quote(image)]


def bind_model_exports(site: Site, runtime: str) -> list[str]:
    """Bind model: the catalog's ``mpi.host_env``, passed into the image as ``<RUNTIME>ENV_<NAME>``."""
    if runtime == "none" or site.mpi.model != "bind":
        return []
    return [f'{runtime.upper()}ENV_{name}="{expand_at_run_time(value)}"' for name, value in site.mpi.host_env.items()]


def host_site_export(site: Site, runtime: str) -> list[str]:
    """On the host (no image to say so), ``HPCAI_SITE`` names the site in each run's provenance."""
    return [f"{HOST_SITE_VARIABLE}={site.id}"] if runtime == "none" else []


def expand_at_run_time(value: str) -> str:
    """A catalog value for double quotes: ``$NAME`` becomes ``${NAME}``, expanded by the job's shell."""
    return re.sub(r"\$([A-Za-z_][A-Za-z0-9_]*)", r"${\1}", value)


def launcher_lines(
    request: LaunchRequest,
    launcher: str,
    runtime: str,
    node: NodeType,
    ranks_per_node: int,
    cpus: int,
    backend: str = DEFAULT_BACKEND,
) -> list[str]:
    """The launcher's part of the command, one line per group of flags. Under ``--backend mwms`` srun ends the
    step when a task fails (``--kill-on-bad-exit=1``): no MPI ends it for the strategy's workers."""
    site = request.site
    if launcher == "mpirun":
        names = [*site.env, *([HOST_SITE_VARIABLE] if runtime == "none" else [])]
        line = mpirun_line(request.nodes * ranks_per_node, allocated=True, forward=names)  # in its batch job
        return [" ".join(words) for words in (line.placement, line.forwarded) if words]
    if launcher == "srun":
        kill = " --kill-on-bad-exit=1" if backend == "mwms" else ""
        return [f"srun --mpi={site.mpi.pmi} --ntasks-per-node={ranks_per_node} --cpus-per-task={cpus}{kill}"]
    layout = request.jsrun_layout or "gpu"
    words = ["jsrun", *resource_sets(request.nodes, node, ranks_per_node, layout).flags()]
    if request.cuda_aware_mpi:
        words.append("--smpiargs=-gpu")
    return [" ".join(words)]


def train_words(request: LaunchRequest, hpcai: str, backend: str = DEFAULT_BACKEND) -> list[str]:
    """``hpcai train WORKLOAD --run-dir "$run_dir" --resume [--backend mwms] [extra args]``, every extra argument
    quoted."""
    return [
        shlex.quote(hpcai),
        "train",
        request.workload,
        "--run-dir",
        '"$run_dir"',
        "--resume",
        *(["--backend", backend] if backend != DEFAULT_BACKEND else []),
        *(shlex.quote(arg) for arg in request.train_args),
    ]


def container_and_train_lines(request: LaunchRequest, runtime: str, backend: str = DEFAULT_BACKEND) -> list[str]:
    """The container line (none on the host) and the ``hpcai train`` line."""
    if runtime == "none":
        return [" ".join(train_words(request, request.host_hpcai or host_hpcai(), backend))]
    image = request.image or _default_image(request.site)
    return [" ".join(runtime_words(request, runtime, image)), " ".join(train_words(request, "hpcai", backend))]


def run_dir_expression(request: LaunchRequest) -> str:
    """``<run root>/runs/<workload>-<job id>`` for the shell; the root defaults to the submit directory."""
    scheduler = scheduler_for(request.site.scheduler.kind)
    job_dir = f"/runs/{request.workload}-${{{scheduler.job_id_variable}}}"
    if request.run_root:
        return shlex.quote(os.path.abspath(request.run_root)) + f'"{job_dir}"'
    return f'"${{{scheduler.submit_dir_variable}}}{job_dir}"'


def check_request(request: LaunchRequest) -> None:
    """Refusals that need no catalog arithmetic: names, counts, flags that do not fit the scheduler."""
    if request.workload not in WORKLOADS:
        raise KitError(f"WORKLOAD: expected one of {', '.join(WORKLOADS)}, got {request.workload!r}")
    if request.nodes < 1:
        raise KitError(f"--nodes: expected at least 1, got {request.nodes}")
    if request.runtime is not None and request.runtime not in RUNTIMES:
        raise KitError(f"--runtime: expected one of {', '.join(RUNTIMES)}, got {request.runtime!r}")
    scheduler = request.site.scheduler
    if request.account is not None and not _ACCOUNT.fullmatch(request.account):
        raise KitError(
            f"--account: expected an account or project name (letters, digits, '_', '.', '-'), got {request.account!r}"
        )
    if scheduler.account_required and not request.account:
        raise KitError(f"--account: site {request.site.id} requires an account (project) for every job")
    if request.signal_lead < 60:
        raise KitError(f"--signal-lead: expected at least 60 seconds, got {request.signal_lead}")
    if request.image is not None and not request.image.strip():
        raise KitError("--image: expected a path to the site's image file, got an empty string")
    check_train_args(request.train_args)


def plan_job(request: LaunchRequest) -> JobScript:
    """Decide every value of the job script, or refuse the request with a one-line error."""
    check_request(request)
    site = request.site
    scheduler = site.scheduler
    batch = scheduler_for(scheduler.kind)
    node = site.node_type(request.node_type)
    if request.nodes > node.count:
        raise KitError(f"--nodes: site {site.id} has {_nodes(node.count)} of type {node.name}, got {request.nodes}")
    ranks_per_node = request.ranks_per_node if request.ranks_per_node is not None else node.devices
    check_ranks_per_node(node, ranks_per_node)
    time_text = request.time or scheduler.default_time
    minutes = parse_time(time_text)
    if request.signal_lead >= minutes * 60:
        raise KitError(
            f"--signal-lead: {request.signal_lead} s is not shorter than the wall time {time_text}; "
            "expected a lead that leaves time to train"
        )
    partition = choose_partition(site, node, request.nodes, minutes, time_text)
    launcher = choose_launcher(request)
    if request.jsrun_layout is not None and launcher != "jsrun":
        raise KitError(f"--jsrun-layout: only for jsrun; site {site.id} launches with {launcher}")
    if request.cuda_aware_mpi and launcher != "jsrun":
        raise KitError(
            f"--cuda-aware-mpi: asks jsrun's Spectrum MPI for CUDA-aware MPI (--smpiargs); site {site.id} "
            f"launches with {launcher}"
        )
    if request.cuda_aware_mpi and not node.gpus:
        raise KitError(f"--cuda-aware-mpi: node type {node.name} has no GPUs")
    runtime = request.runtime or site.runtime.command
    backend = choose_backend(request)
    cpus_per_task = node.hardware_threads // ranks_per_node
    command = [
        *launcher_lines(request, launcher, runtime, node, ranks_per_node, cpus_per_task, backend),
        *container_and_train_lines(request, runtime, backend),
    ]
    where = "on the host" if runtime == "none" else f"in {runtime}"
    with_backend = f"backend {backend}, " if backend != DEFAULT_BACKEND else ""
    return JobScript(
        site=site,
        template=batch.template,
        name=f"hpcai-{request.workload}",
        summary=(
            f"{request.workload} on {site.name} ({site.id}): {_nodes(request.nodes)} of type {node.name}, "
            f"{ranks_per_node} ranks per node, {with_backend}started by {launcher}, {where}"
        ),
        partition=partition.name,
        nodes=request.nodes,
        ranks_per_node=ranks_per_node,
        cpus_per_task=cpus_per_task,
        gres=f"{node.gres}:{ranks_per_node}" if node.gres and node.gpus else None,
        time=batch.wall_time(minutes),
        account=request.account,
        alloc_flags=" ".join(scheduler.alloc_flags),
        signal_lead=request.signal_lead,
        signal_lead_minutes=math.ceil(request.signal_lead / 60),
        run_dir=run_dir_expression(request),
        job_id="${" + batch.job_id_variable + "}",
        modules=list(site.runtime.modules),
        exports=[f"{name}={shlex.quote(value)}" for name, value in site.env.items()]
        + bind_model_exports(site, runtime)
        + host_site_export(site, runtime),
        command=" \\\n  ".join(command),
    )


def _nodes(count: int) -> str:
    return f"{count} node" if count == 1 else f"{count} nodes"


def _default_image(site: Site) -> str:
    from hpcai_tf.recipes.render import sif_name

    return sif_name(site)


def launch_template_environment() -> jinja2.Environment:
    """The Jinja environment over ``launch/``: block tags leave no blank lines."""
    from hpcai_tf.recipes.render import jinja_environment

    return jinja_environment(LAUNCH_DIR, trim_blocks=True)


def render_job_script(request: LaunchRequest) -> str:
    """The text of the job script for ``request`` (a KitError if the site cannot satisfy it)."""
    job = plan_job(request)
    return launch_template_environment().get_template(job.template).render(job=job)
