"""The site catalog: one TOML file per site under ``containers/sites/``, validated by a schema.

A site file says what a cluster has (nodes, GPUs, links, scheduler, partitions, MPI) and what its image
pins (base image, CUDA, cuDNN, NCCL, MPI, Python, TensorFlow, Horovod). Every field below carries a
description; ``hpcai sites --schema`` prints them, and ``docs/catalog.md`` is generated from them.

Loading never raises anything but :class:`~hpcai_tf.errors.KitError`, whose one-line message names the
file, the field and what was expected.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Annotated, Literal

import tomllib
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from hpcai_tf.errors import KitError
from hpcai_tf.files import display_path, read_text_file
from hpcai_tf.paths import SITES_DIR

MAX_VALUE_LENGTH = 512
"""The longest string value a site file may hold, in characters (every string field, list item and key)."""
MAX_FILE_BYTES = 1 << 20
"""The largest site file read, in bytes."""


def _plain_text(value: str) -> str:
    """Refuse control characters (NUL, ESC, tab, newline, ...) and line separators in a catalog string."""
    for index, char in enumerate(value):
        if unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            raise ValueError(f"expected no control characters, got {char!r} at character {index + 1}")
    return value


Str = Annotated[str, StringConstraints(max_length=MAX_VALUE_LENGTH), AfterValidator(_plain_text)]
"""Every string of the catalog: at most :data:`MAX_VALUE_LENGTH` characters, no control characters."""

VERSION = r"^\d+(\.\d+){1,3}$"
"""A dotted release number such as ``2.15.1`` or ``11.8.0``."""

Version = Annotated[Str, StringConstraints(pattern=VERSION)]
OptionalVersion = Annotated[Str, StringConstraints(pattern=r"^(\d+(\.\d+){1,3}|none)$")]
Name = Annotated[Str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]*$")]
Token = Annotated[Str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/:+@-]*$")]
"""A word with no spaces or shell metacharacters: module names, partitions, image references."""
Text = Annotated[Str, StringConstraints(pattern=r"^[^\n\r`$\\]*$", min_length=1)]
"""One line of prose; no command substitution, no backslashes."""
EnvName = Annotated[Str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
Url = Annotated[Str, StringConstraints(pattern=r"^https://[^\s]+$")]
"""A public page, by its https address."""
EnvValue = Annotated[Str, StringConstraints(pattern=r"^[A-Za-z0-9._/:,=+@^-]*$")]
"""An environment value that needs no quoting in a shell or a Dockerfile."""
Arch = Literal["x86_64", "ppc64le"]


class _Strict(BaseModel):
    """Exact types (no "2" for 2, no true for 1), finite numbers, no unknown fields."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class NodeType(_Strict):
    """One kind of compute node at a site."""

    name: Name = Field(description="Node-type id, as given to `hpcai launch --node-type`.")
    model: Text = Field(description="Server model, e.g. 'IBM AC922'.")
    count: int = Field(ge=1, description="How many nodes of this type the site has.")
    cpu: Text = Field(description="Processors per node, e.g. '2x POWER9, 20 cores each'.")
    cores: int = Field(ge=1, description="Physical cores per node.")
    hardware_threads: int = Field(ge=1, description="Hardware threads per node (cores x SMT).")
    memory_gb: int = Field(ge=1, description="Host memory per node, GB.")
    gpus: int = Field(ge=0, description="GPUs per node (0 for a CPU-only node).")
    gpu_model: Text | None = Field(default=None, description="GPU model, e.g. 'V100-SXM2-16GB'.")
    gpu_memory_gb: int | None = Field(default=None, ge=1, description="Memory per GPU, GB.")
    gres: Token | None = Field(
        default=None, description="Slurm generic-resource name for the GPUs, e.g. 'gpu:v100' ('gpu:v100:N')."
    )
    cloud_price_per_device_hour: float | None = Field(
        default=None,
        gt=0,
        description="Cloud-equivalent on-demand price of one device (GPU, or core on a CPU node) per hour, USD; "
        "used by `hpcai cost` and `hpcai estimate` for the cloud-versus-HPC comparison.",
    )

    @property
    def devices(self) -> int:
        """Devices a node trains on, one rank each: its GPUs, or its cores on a CPU-only node."""
        return self.gpus or self.cores

    @property
    def device_kind(self) -> str:
        """``GPUs`` or ``cores``: what :attr:`devices` counts."""
        return "GPUs" if self.gpus else "cores"

    @model_validator(mode="after")
    def _gpu_fields_agree(self) -> NodeType:
        if self.gpus and not self.gpu_model:
            raise ValueError("gpu_model: required when gpus > 0")
        if self.hardware_threads < self.cores:
            raise ValueError("hardware_threads: expected at least `cores`")
        return self


class Partition(_Strict):
    """A scheduler partition (Slurm) or queue (LSF) and the job sizes it takes."""

    name: Token = Field(description="Partition or queue name, as passed to the scheduler.")
    node_type: Name = Field(description="Which node type the partition holds (a `node_types` name).")
    min_nodes: int = Field(default=1, ge=1, description="Smallest job, in nodes.")
    max_nodes: int = Field(ge=1, description="Largest job, in nodes.")
    max_time: Annotated[Str, StringConstraints(pattern=r"^\d{1,3}:\d{2}$")] = Field(
        description="Wall-time limit, HH:MM."
    )


class Link(_Strict):
    """A network link, with figures for the performance model."""

    name: Text = Field(description="What it is, e.g. 'NVLink 2.0' or 'EDR InfiniBand'.")
    bandwidth_gbps: float = Field(gt=0, description="Unidirectional bandwidth per device or port, Gbit/s.")
    latency_us: float = Field(gt=0, description="One-way small-message latency, microseconds.")
    rails: int = Field(default=1, ge=1, description="Parallel ports per node (dual-rail EDR = 2).")
    source: Url | None = Field(
        default=None,
        description="A public page giving the bandwidth: the link generation's specification or the centre's "
        "documentation. Required on GPU sites, whose links nothing here can measure; their latencies, which no "
        "such page gives, must be listed under `unconfirmed`.",
    )


class Interconnect(_Strict):
    """Links inside a node (GPU to GPU) and across nodes."""

    intra_node: Link = Field(description="GPU-to-GPU link inside a node (or shared memory on CPU).")
    inter_node: Link = Field(description="Node-to-node network.")
    topology: Text = Field(description="Network topology, e.g. 'fat tree'.")


class Scheduler(_Strict):
    """The batch system and the parallel launcher it uses."""

    kind: Literal["slurm", "lsf"] = Field(description="Batch system: 'slurm' (sbatch) or 'lsf' (bsub).")
    submit: Token = Field(description="Submit command, e.g. 'sbatch', NCSA's 'swbatch' or 'bsub'.")
    launcher: Literal["mpirun", "srun", "jsrun"] = Field(description="How ranks are started in a job.")
    default_time: Annotated[Str, StringConstraints(pattern=r"^\d{1,3}:\d{2}$")] = Field(
        description="Default wall time of a generated job, HH:MM."
    )
    account_required: bool = Field(
        default=False, description="Whether jobs must name an account/project (`--account`, `-P`)."
    )
    alloc_flags: list[Token] = Field(
        default_factory=list, description="LSF `-alloc_flags` values (e.g. 'smt4'); empty on Slurm."
    )


class Runtime(_Strict):
    """The container runtime on the cluster's compute nodes."""

    command: Literal["singularity", "apptainer"] = Field(
        description="Command that runs images on the compute nodes: 'singularity' or 'apptainer'."
    )
    version: Version = Field(description="Runtime version installed at the site.")
    modules: list[Token] = Field(
        default_factory=list, description="`module load` names needed before the runtime and MPI work."
    )
    gpu_flag: Literal["--nv", ""] = Field(description="'--nv' to bind the host's NVIDIA driver; '' on CPU.")


class Mpi(_Strict):
    """MPI in the image and on the host, and how they meet (the hybrid or the bind model)."""

    flavour: Literal["openmpi", "spectrum-mpi"] = Field(description="MPI family on the host.")
    host_version: Version = Field(description="Version of the host's MPI.")
    model: Literal["hybrid", "bind"] = Field(
        description="'hybrid': the image has its own MPI, started by the host launcher; "
        "'bind': the host's MPI is bound into the image at run time."
    )
    pmi: Literal["pmix", "pmi2"] = Field(description="Process-management interface shared with the host.")
    image_version: Version = Field(description="Open MPI version built into the image (ABI-compatible).")
    image_source: Literal["apt", "source", "conda"] = Field(
        description="How the image gets MPI: Debian/Ubuntu package, built from source, or conda."
    )
    host_root: Annotated[Str, StringConstraints(pattern=r"^(/[A-Za-z0-9._-]+)+$|^\$[A-Z_]+$")] | None = Field(
        default=None, description="Bind model only: host MPI install prefix bound into the image."
    )
    host_env: dict[EnvName, Annotated[Str, StringConstraints(pattern=r"^[A-Za-z0-9._/:,=+@^${}-]*$")]] = Field(
        default_factory=dict,
        description="Bind model only: environment the image's processes need to use the bound host MPI, passed "
        "into the container as <RUNTIME>ENV_<NAME>; $NAME in a value expands on the host at run time.",
    )
    reason: Text = Field(description="Why this image MPI fits the host (family, version, PMI).")

    @model_validator(mode="after")
    def _bind_needs_root(self) -> Mpi:
        if self.model == "bind" and not self.host_root:
            raise ValueError("host_root: required when model = 'bind'")
        if self.host_env and self.model != "bind":
            raise ValueError("host_env: only for model = 'bind'")
        return self


class BaseImage(_Strict):
    """Where the image starts."""

    ref: Token = Field(description="Base image reference, e.g. 'nvidia/cuda:11.8.0-cudnn8-devel-ubuntu22.04'.")
    origin: Literal["registry", "debootstrap"] = Field(
        description="'registry': pulled; 'debootstrap': made on the build host (`hpcai base`), no registry."
    )
    os: Literal["debian", "ubuntu", "rhel"] = Field(description="Distribution family of the base.")
    os_version: Annotated[Str, StringConstraints(pattern=r"^\d+(\.\d+)?$")] = Field(
        description="Distribution release, e.g. '12', '22.04', '8.8'."
    )
    suite: Token | None = Field(default=None, description="debootstrap suite (origin = 'debootstrap').")
    mirror: Annotated[Str, StringConstraints(pattern=r"^https?://[A-Za-z0-9._/:-]+$")] | None = Field(
        default=None, description="Distribution mirror that debootstrap reads (origin = 'debootstrap')."
    )


class Stack(_Strict):
    """Exact pins of the software stack in the image."""

    channel: Literal["pip", "open-ce"] = Field(
        description="Where TensorFlow and Horovod come from: PyPI ('pip') or the Open-CE conda channel."
    )
    open_ce: Version | None = Field(default=None, description="Open-CE release (channel = 'open-ce').")
    conda_installer: Version | None = Field(
        default=None, description="Miniforge release that bootstraps conda (channel = 'open-ce')."
    )
    python: Version = Field(description="Python in the image (major.minor, or exact for conda).")
    cuda_source: Literal["none", "base-image", "conda", "pypi-wheels"] = Field(
        description="Where CUDA, cuDNN and NCCL come from: 'none' (CPU-only image), 'base-image' (a CUDA base image "
        "and NVIDIA's apt repository), 'conda' (the Open-CE channel) or 'pypi-wheels' (NVIDIA's CUDA 12 wheels that "
        "TensorFlow's `and-cuda` extra pulls in, x86_64 pip sites; containers/cuda-wheels.toml)."
    )
    cuda: OptionalVersion = Field(
        description="CUDA toolkit, or 'none' on a CPU-only image; with cuda_source = 'pypi-wheels', the version "
        "of the nvidia-cuda-runtime-cu12 wheel."
    )
    cudnn: OptionalVersion = Field(description="cuDNN, or 'none' (with 'pypi-wheels', the nvidia-cudnn-cu12 wheel's).")
    nccl: OptionalVersion = Field(description="NCCL, or 'none' (with 'pypi-wheels', the nvidia-nccl-cu12 wheel's).")
    tensorflow: Version = Field(description="TensorFlow.")
    tensorflow_package: Token = Field(description="Package that provides it: 'tensorflow', 'tensorflow-cpu'.")
    keras: Literal["tf-keras", "keras2"] = Field(
        description="'keras2': tf.keras is Keras 2 (TF <= 2.15); 'tf-keras': install tf-keras and run "
        "with TF_USE_LEGACY_KERAS=1 (TF >= 2.16, where Keras 3 breaks Horovod's Keras API)."
    )
    numpy: Version = Field(description="NumPy (TF 2.15 needs < 2).")
    horovod: Version = Field(description="Horovod.")
    horovod_patches: list[Annotated[Str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9.-]*$")]] = Field(
        default_factory=list,
        description="Patches applied to Horovod's sdist before building, files `containers/patches/<name>.patch`.",
    )
    horovod_gpu_operations: Literal["NCCL", "MPI", "none"] = Field(
        description="HOROVOD_GPU_OPERATIONS at build time: 'NCCL' (or 'MPI') on GPU images, 'none' on CPU images "
        "and on GPU images with cuda_source = 'pypi-wheels' (no nvcc there: Horovod's allreduce then stages GPU "
        "tensors through host memory over MPI)."
    )
    mpi4py: Version = Field(description="mpi4py.")
    h5py: Version = Field(description="h5py, which the training package reads its data with.")
    extra_pip: list[Annotated[Str, StringConstraints(pattern=r"^[A-Za-z0-9._-]+==[0-9][A-Za-z0-9.]*$")]] = Field(
        default_factory=list, description="Further pip packages, each pinned as 'name==version'."
    )


class Training(_Strict):
    """The site's default data-parallel backend of ``hpcai train`` (``--backend``), and why."""

    backend: Literal["horovod", "mwms"] = Field(
        description="'horovod' (Horovod over MPI) or 'mwms' (TensorFlow's MultiWorkerMirroredStrategy, no Horovod)."
    )
    reason: Text = Field(description="Why this backend is the site's default (e.g. Horovod does not build there).")


class Retired(_Strict):
    """A system that no longer runs: when it stopped and the site of the catalog that took its place, if any."""

    since: Text = Field(description="When the system was retired, e.g. 'November 2024'.")
    successor: Name | None = Field(
        default=None, description="Site id of the catalog's successor system; absent when the kit has none."
    )
    note: Text = Field(description="What took its place, or why the kit has no successor for it.")


class Site(_Strict):
    """One HPC site: hardware, scheduler, container runtime, MPI and the image's pinned stack."""

    id: Name = Field(description="Site id, as in `make image SITE=<id>`; equals the file name.")
    name: Text = Field(description="Human name of the system.")
    center: Text = Field(description="Operating centre.")
    arch: Arch = Field(description="CPU architecture of the compute nodes and the image.")
    summary: Text = Field(description="One line on what the system is.")
    node_types: list[NodeType] = Field(min_length=1, description="Kinds of compute node.")
    default_node_type: Name = Field(description="Node type used when `--node-type` is not given.")
    partitions: list[Partition] = Field(min_length=1, description="Partitions/queues and the job sizes they take.")
    interconnect: Interconnect
    scheduler: Scheduler
    runtime: Runtime
    mpi: Mpi
    base: BaseImage
    stack: Stack
    env: dict[EnvName, EnvValue] = Field(
        default_factory=dict, description="Environment exported in job scripts for Horovod, NCCL and MPI."
    )
    training: Training | None = Field(
        default=None,
        description="The default `--backend` of the site's jobs and why; absent: horovod, the kit's default.",
    )
    retired: Retired | None = Field(
        default=None, description="Set on a retired system, kept as the reproduction of the paper's runs."
    )
    docs: list[Url] = Field(default_factory=list, description="Public documentation of the system.")
    unconfirmed: dict[Annotated[Str, StringConstraints(pattern=r"^[a-z0-9_.]+$")], Text] = Field(
        default_factory=dict,
        description="Fields whose value was chosen, not confirmed from a source: dotted field path -> why.",
    )

    @property
    def gpu(self) -> bool:
        """True when the image is built for NVIDIA GPUs."""
        return self.stack.cuda != "none"

    def node_type(self, name: str | None = None) -> NodeType:
        """The named node type, or the default one."""
        wanted = name or self.default_node_type
        for node in self.node_types:
            if node.name == wanted:
                return node
        known = ", ".join(n.name for n in self.node_types)
        raise KitError(f"site {self.id}: unknown node type {wanted!r}; expected one of: {known}")

    @model_validator(mode="after")
    def _consistent(self) -> Site:
        names = {n.name for n in self.node_types}
        for i, node in enumerate(self.node_types):
            if [n.name for n in self.node_types].index(node.name) != i:
                raise ValueError(f"node_types.{i}.name: expected unique node-type names, got {node.name!r} twice")
        if self.default_node_type not in names:
            raise ValueError(f"default_node_type: expected one of {sorted(names)}")
        for i, part in enumerate(self.partitions):
            if part.node_type not in names:
                raise ValueError(f"partitions.{i}.node_type: expected one of {sorted(names)}")
            if part.min_nodes > part.max_nodes:
                raise ValueError(f"partitions.{i}.min_nodes: expected at most max_nodes")
        stack = self.stack
        if self.arch == "ppc64le" and stack.channel == "pip":
            raise ValueError(
                "stack.channel: PyPI has no TensorFlow wheels for ppc64le; expected 'open-ce' on this arch"
            )
        if stack.channel == "open-ce" and not (stack.open_ce and stack.conda_installer):
            raise ValueError("stack.open_ce: required (with stack.conda_installer) when channel = 'open-ce'")
        if stack.channel == "open-ce" and self.mpi.image_source != "conda":
            raise ValueError("mpi.image_source: expected 'conda' when stack.channel = 'open-ce'")
        gpu_stack = stack.cuda != "none"
        if gpu_stack != any(n.gpus for n in self.node_types):
            raise ValueError("stack.cuda: expected 'none' exactly when no node type has GPUs")
        if gpu_stack != (stack.cuda_source != "none"):
            raise ValueError("stack.cuda_source: expected 'none' exactly when stack.cuda is 'none'")
        if stack.cuda_source == "pypi-wheels" and self.arch != "x86_64":
            raise ValueError(
                f"stack.cuda_source: 'pypi-wheels' needs x86_64 (TensorFlow's and-cuda wheels exist for no other "
                f"arch), got arch {self.arch!r}"
            )
        if stack.cuda_source == "pypi-wheels" and stack.channel != "pip":
            raise ValueError(
                f"stack.cuda_source: 'pypi-wheels' needs stack.channel = 'pip' (conda solves its own CUDA), "
                f"got {stack.channel!r}"
            )
        if gpu_stack and (stack.cuda_source == "conda") != (stack.channel == "open-ce"):
            raise ValueError("stack.cuda_source: expected 'conda' exactly on an open-ce GPU site")
        if gpu_stack and "none" in (stack.cudnn, stack.nccl):
            raise ValueError("stack.cudnn: a CUDA image needs cuDNN and NCCL versions")
        if stack.cuda_source == "pypi-wheels" and stack.horovod_gpu_operations != "none":
            raise ValueError(
                f"stack.horovod_gpu_operations: {stack.horovod_gpu_operations!r} needs nvcc to compile Horovod's CUDA "
                "kernels, and NVIDIA's CUDA 12 wheels ship none (nvidia-cuda-nvcc-cu12 holds ptxas and libnvvm only; "
                "docs/images.md); expected 'none' with cuda_source = 'pypi-wheels'"
            )
        if gpu_stack == (stack.horovod_gpu_operations == "none") and stack.cuda_source != "pypi-wheels":
            raise ValueError(
                "stack.horovod_gpu_operations: expected 'none' exactly on a CPU-only image or one with CUDA from "
                "NVIDIA's wheels"
            )
        if gpu_stack != (self.runtime.gpu_flag == "--nv"):
            raise ValueError("runtime.gpu_flag: expected '--nv' on a GPU site and '' on a CPU-only one")
        major_minor = tuple(int(p) for p in stack.tensorflow.split(".")[:2])
        if (major_minor >= (2, 16)) != (stack.keras == "tf-keras"):
            raise ValueError("stack.keras: expected 'tf-keras' for TensorFlow >= 2.16 and 'keras2' below")
        if gpu_stack:
            self._links_cited()
        if self.base.origin == "debootstrap" and not (self.base.suite and self.base.mirror):
            raise ValueError("base.suite: required (with base.mirror) when base.origin = 'debootstrap'")
        for path in self.unconfirmed:
            if not _has_field(self, path):
                raise ValueError(f"unconfirmed: {path!r} is not a field of the site")
        return self

    def _links_cited(self) -> None:
        """A GPU site's links: each bandwidth cited by a public page, each latency marked unconfirmed."""
        for level in ("intra_node", "inter_node"):
            link = getattr(self.interconnect, level)
            if link.source is None:
                raise ValueError(
                    f"interconnect.{level}.source: required on a GPU site (a public page giving {link.name}'s "
                    "bandwidth; nothing here can measure it)"
                )
            if f"interconnect.{level}.latency_us" not in self.unconfirmed:
                raise ValueError(
                    f"unconfirmed: expected an entry for 'interconnect.{level}.latency_us' on a GPU site (a link's "
                    "latency is a typical figure, not a published specification)"
                )


def _has_field(model: BaseModel, dotted: str) -> bool:
    obj: object = model
    for part in dotted.split("."):
        if isinstance(obj, BaseModel) and part in type(obj).model_fields:
            obj = getattr(obj, part)
        elif isinstance(obj, list) and part.isdigit() and int(part) < len(obj):
            obj = obj[int(part)]
        else:
            return False
    return True


def _shown_value(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:45]}... ({len(str(value))} characters)"


def _format_error(path: Path, err: ValidationError) -> str:
    path = display_path(path)  # type: ignore[assignment]
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    kind = first["type"]
    if kind == "missing":
        return f"{path}: {loc}: required field is missing"
    if kind == "extra_forbidden":
        return f"{path}: {loc}: unknown field (check its spelling against `hpcai sites --schema`)"
    if kind == "string_pattern_mismatch":
        pattern = first.get("ctx", {}).get("pattern", "")
        expected = "a version like 2.15.1" if pattern == VERSION else f"a value matching {pattern}"
        return f"{path}: {loc}: expected {expected}, got {_shown_value(first['input'])}"
    if kind == "string_too_long":
        return (
            f"{path}: {loc}: expected at most {MAX_VALUE_LENGTH} characters (the limit of every catalog value), "
            f"got {len(first['input'])}"
        )
    if kind.endswith("_type") or kind in ("finite_number", "literal_error"):
        expected = msg.removeprefix("Input should be ").removeprefix("a ")
        article = "" if kind in ("literal_error", "finite_number") else "a "
        return f"{path}: {loc}: expected {article}{expected}, got {_shown_value(first['input'])}"
    where = f"{loc}: " if loc and not re.match(r"^[a-z_.0-9]+: ", msg) else ""
    return f"{path}: {where}{msg}"


def load_site_file(path: Path) -> Site:
    """Parse and validate one site file; the file name must be ``<id>.toml``."""
    shown = display_path(path)
    if path.is_file() and path.stat().st_size > MAX_FILE_BYTES:
        raise KitError(f"{shown}: {path.stat().st_size} bytes; expected a site file of at most {MAX_FILE_BYTES}")
    text = read_text_file(path, "site file")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise KitError(f"{shown}: not valid TOML: {err}") from None
    except RecursionError:
        raise KitError(f"{shown}: not valid TOML: nested too deeply") from None
    try:
        site = Site.model_validate(data)
    except ValidationError as err:
        raise KitError(_format_error(path, err)) from None
    if site.id != path.stem:
        raise KitError(f"{shown}: id: expected {path.stem!r} (the file name), got {site.id!r}")
    return site


SITE_ID = re.compile(r"[a-z0-9][a-z0-9-]*")
"""What a site id is (the pattern of ``Site.id``); ``--site`` takes an id, never a path."""


def _catalog_dir(sites_dir: Path) -> Path:
    if not sites_dir.is_dir():
        what = "not a directory" if sites_dir.exists() else "no such directory"
        raise KitError(f"{display_path(sites_dir)}: {what}; expected the site catalog (a directory of <id>.toml)")
    return sites_dir


def site_ids(sites_dir: Path = SITES_DIR) -> list[str]:
    """Ids of every site in the catalog, sorted; a catalog without sites, or with a non-file ``*.toml``, is refused."""
    paths = sorted(_catalog_dir(sites_dir).glob("*.toml"))
    for path in paths:
        if not path.is_file():
            raise KitError(f"{display_path(path)}: not a regular file; expected a site file")
        if not SITE_ID.fullmatch(path.stem):
            raise KitError(f"{display_path(path)}: expected a file named <id>.toml, id matching {SITE_ID.pattern}")
    if not paths:
        raise KitError(f"{display_path(sites_dir)}: no site files (<id>.toml); expected at least one site")
    return sorted(p.stem for p in paths)


def load_site(site_id: str, sites_dir: Path = SITES_DIR) -> Site:
    """The validated site with this id."""
    if not SITE_ID.fullmatch(site_id):
        raise KitError(f"--site: expected a site id (lowercase letters, digits, '-'), got {_shown_value(site_id)}")
    path = sites_dir / f"{site_id}.toml"
    if not path.is_file():
        known = ", ".join(site_ids(sites_dir)) or "none"
        raise KitError(f"unknown site {site_id!r}: no {display_path(path)}; known sites: {known}")
    return load_site_file(path)


def load_catalog(sites_dir: Path = SITES_DIR) -> list[Site]:
    """Every site in the catalog, validated, sorted by id; a retired site's successor must be one of them."""
    sites = [load_site(i, sites_dir) for i in site_ids(sites_dir)]
    ids = {site.id for site in sites}
    for site in sites:
        successor = site.retired.successor if site.retired else None
        if successor is None:
            continue
        shown = display_path(sites_dir / f"{site.id}.toml")
        if successor not in ids:
            raise KitError(f"{shown}: retired.successor: expected a site of the catalog, got {successor!r}")
        if successor == site.id:
            raise KitError(f"{shown}: retired.successor: expected another site")
    return sites
