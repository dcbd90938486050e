"""Render a site's image recipes (Dockerfile, Singularity definition, provenance) from the catalog.

Python decides *what* goes into an image (which steps, which packages, which labels, the environment each step
sets, the package manager's commands); the Jinja templates under ``containers/templates/`` hold *the text*. Each
step is a partial, ``steps/<name>.sh.j2``, whose body is the shell commands and whose top-level ``title`` and
``files`` say what the step is and what it copies from the build context; its environment is :func:`step_env`'s.
The two format templates place the steps: one ``RUN`` per step in the Dockerfile (so each is a cached layer,
least-changing first), one ``%post`` in the definition file.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from hpcai_tf import __version__
from hpcai_tf.catalog import Site
from hpcai_tf.errors import KitError
from hpcai_tf.files import display_path, write_atomic
from hpcai_tf.paths import (
    CONSTRAINTS_DIR,
    IMAGES_DIR,
    KIT_ROOT,
    PATCHES_DIR,
    RECIPES_DIR,
    REQUIREMENTS_DIR,
    TEMPLATES_DIR,
)
from hpcai_tf.recipes import image_labels as label
from hpcai_tf.recipes.cuda_wheels import AND_CUDA_EXTRA, check_cuda_wheels, cuda_wheel_pins
from hpcai_tf.recipes.horovod_build import horovod_build_env, site_wheel_name
from hpcai_tf.recipes.package_managers import APT, package_manager
from hpcai_tf.train.image_contract import (
    CONTEXT_PATHS,
    IMAGE_PATHS,
    PROVENANCE_VARIABLE,
    SITE_VARIABLE,
    STACK_PACKAGES,
)

FORMATS = {"docker": "Dockerfile", "singularity": "Singularity.def"}
"""Recipe format -> file name under ``recipes/<site>/`` (the template adds ``.j2``)."""
PROVENANCE = "provenance.json"
OPEN_CE_CHANNEL = "https://ftp.osuosl.org/pub/open-ce/{release}/"
CUDNN_APT_PACKAGES = {"8": ("libcudnn8", "libcudnn8-dev")}
"""cuDNN major release -> its runtime and development packages in NVIDIA's apt repository."""
NCCL_APT_PACKAGES = ("libnccl2", "libnccl-dev")
MPI_APT_PACKAGES = ("openmpi-bin", "libopenmpi-dev")
"""The distribution's Open MPI (``mpi.image_source = "apt"``)."""


@dataclass(frozen=True)
class Step:
    """One build step of an image: a title, the environment it sets, files it copies, its commands."""

    name: str
    title: str
    commands: list[str]
    env: dict[str, str] = field(default_factory=dict)
    files: list[tuple[str, str]] = field(default_factory=list)


def jinja_environment(directory: Path, trim_blocks: bool = False) -> jinja2.Environment:
    """The kit's Jinja environment over ``directory``: strict about undefined names, the final newline kept, no
    escaping (the output is shell, recipes and Markdown); ``trim_blocks`` also strips the lines of block tags."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(directory)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=trim_blocks,
        lstrip_blocks=trim_blocks,
        autoescape=False,
    )


def template_environment() -> jinja2.Environment:
    """The Jinja environment over containers/templates/."""
    return jinja_environment(TEMPLATES_DIR)


def bootstrap_pins() -> dict[str, str]:
    """pip, setuptools and wheel pins shared by the host venv and every image (requirements/bootstrap.txt)."""
    pins = {}
    for line in (REQUIREMENTS_DIR / "bootstrap.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name] = version
    return pins


def step_names(site: Site) -> list[str]:
    """The build steps of a site's image, in layer order (what changes least comes first)."""
    steps = ["os-packages"]
    if site.stack.channel == "pip":
        if site.stack.cuda_source == "base-image":
            steps.append("cuda-libs")
        steps += [f"mpi-{site.mpi.image_source}", "python-pip"]
        if site.stack.cuda_source == "pypi-wheels":
            steps.append("cuda-wheels")
        steps.append("horovod-pip")
    else:
        steps.append("python-conda")
    return [*steps, "stack-check", "kit"]


def os_packages(site: Site) -> list[str]:
    """Distribution packages the image installs first."""
    if package_manager(site) is APT:
        packages = [
            "ca-certificates",
            "curl",
            "python3",
            "python3-dev",
            "python3-venv",
            "g++",
            "make",
            "cmake",
        ]
        if site.stack.horovod_patches:
            packages.append("patch")
        if site.mpi.image_source == "source":
            packages += ["bzip2", "file"]
    else:
        # conda brings compilers-free binaries; jsrun needs libevent inside the image (OLCF).
        packages = ["bzip2", "ca-certificates", "curl", "findutils", "libevent", "which"]
    return sorted(packages)


def stack_pins(site: Site) -> dict[str, str]:
    """The pins of the stack's Python packages (:data:`~hpcai_tf.train.image_contract.STACK_PACKAGES`): name ->
    version."""
    return {name: getattr(site.stack, name) for name in STACK_PACKAGES}


def distribution(site: Site, name: str) -> str:
    """The distribution that installs the stack package ``name``: TensorFlow's is ``stack.tensorflow_package``."""
    return site.stack.tensorflow_package if name == "tensorflow" else name


def stack_requirements(site: Site) -> list[str]:
    """``NAME==VERSION`` of each of the stack's Python packages, Horovod included."""
    return [f"{distribution(site, name)}=={version}" for name, version in stack_pins(site).items()]


def pip_packages(site: Site) -> list[str]:
    """The pinned PyPI packages of a pip-channel image (Horovod aside: it builds in its own step)."""
    pins = {name: version for name, version in stack_pins(site).items() if name != "horovod"}
    extra = f"[{AND_CUDA_EXTRA}]" if site.stack.cuda_source == "pypi-wheels" else ""
    packages = [
        f"{distribution(site, name)}{extra if name == 'tensorflow' else ''}=={version}"
        for name, version in pins.items()
    ]
    return [*packages, *cuda_wheel_pins(site), *site.stack.extra_pip]


def native_pins(site: Site) -> dict[str, str]:
    """The pins of what the stack's Python packages run on: Python, CUDA, cuDNN, NCCL, the image's MPI."""
    stack = site.stack
    return {
        "python": stack.python,
        "cuda": stack.cuda,
        "cudnn": stack.cudnn,
        "nccl": stack.nccl,
        "mpi": site.mpi.image_version,
    }


CONDA_NAMES = {"cuda": "cudatoolkit", "mpi": "openmpi"}
"""A pin's conda package where it is not the pin's name."""


def conda_packages(site: Site) -> list[str]:
    """The pinned conda packages of an Open-CE image: what the stack runs on, then its Python packages (the order of
    the labels; conda solves them together)."""
    pins = {**native_pins(site), **stack_pins(site)}
    return [f"{CONDA_NAMES.get(name, name)}={version}" for name, version in pins.items()]


def cuda_series(site: Site) -> str:
    """The CUDA release as ``major.minor``, as NVIDIA's package versions carry it."""
    return ".".join(site.stack.cuda.split(".")[:2])


def cuda_packages(site: Site) -> list[str]:
    """cuDNN and NCCL from NVIDIA's apt repository, pinned to the site's releases built for its CUDA."""
    stack = site.stack
    names = CUDNN_APT_PACKAGES.get(stack.cudnn.split(".")[0])
    if names is None:
        raise KitError(
            f"site {site.id}: stack.cudnn: {stack.cudnn}: the kit knows NVIDIA's apt packages of cuDNN "
            f"{', '.join(CUDNN_APT_PACKAGES)} only (CUDNN_APT_PACKAGES in hpcai_tf/recipes/render.py)"
        )
    suffix = f"-1+cuda{cuda_series(site)}"
    return [f"{name}={stack.cudnn}{suffix}" for name in names] + [
        f"{name}={stack.nccl}{suffix}" for name in NCCL_APT_PACKAGES
    ]


def labels(site: Site) -> list[tuple[str, str]]:
    """OCI labels (Docker) and ``%labels`` (Singularity): the site, the kit and every pin."""
    stack = site.stack
    pins = {**native_pins(site), **stack_pins(site)}
    pins["mpi"] = f"openmpi-{pins['mpi']}"
    pins["tensorflow"] = f"{stack.tensorflow_package}-{stack.tensorflow}"
    result = [
        (label.OCI_TITLE, f"hpcai-{site.id}"),
        (label.OCI_DESCRIPTION, f"hpcai base image for {site.name} ({site.center})"),
        (label.OCI_VERSION, __version__),
        (label.OCI_BASE_NAME, site.base.ref),
        (label.SITE_LABEL, site.id),
        (label.ARCH_LABEL, site.arch),
        (label.CHANNEL_LABEL, stack.channel + (f"-{stack.open_ce}" if stack.open_ce else "")),
        (label.HOST_MPI_LABEL, f"{site.mpi.flavour}-{site.mpi.host_version} {site.mpi.model} {site.mpi.pmi}"),
        (label.HOROVOD_PATCHES_LABEL, ",".join(stack.horovod_patches) or "none"),
    ]
    result += [(f"{label.PIN_PREFIX}{name}", value) for name, value in pins.items()]
    return result


def step_env(site: Site, name: str) -> dict[str, str]:
    """The environment a build step sets, for itself, the later steps and the image's run time."""
    venv = IMAGE_PATHS.venv
    if name == "python-pip":
        env = {"PATH": f"{venv}/bin:$PATH", "VIRTUAL_ENV": venv}
        if site.stack.keras == "tf-keras":  # tf.keras must be tf-keras (Keras 2) for Horovod's Keras API
            env["TF_USE_LEGACY_KERAS"] = "1"
        return env
    if name == "python-conda":
        return {"PATH": f"{venv}/bin:$PATH", "CONDA_PREFIX": venv}
    if name == "kit":
        return {SITE_VARIABLE: site.id, PROVENANCE_VARIABLE: IMAGE_PATHS.provenance}
    return {}


def context(site: Site) -> dict[str, object]:
    """Everything the step partials read, decided once here."""
    pins = bootstrap_pins()
    manager = package_manager(site)
    steps = step_names(site)
    return {
        "site": site,
        "paths": IMAGE_PATHS,
        "context_paths": CONTEXT_PATHS,
        "kit_version": __version__,
        "os_install": manager.install_commands(os_packages(site)),
        "cuda_install": manager.install_commands(cuda_packages(site), change_held=True) if "cuda-libs" in steps else [],
        "mpi_install": manager.install_commands(MPI_APT_PACKAGES),
        "stack_pins": stack_pins(site),
        "pip_packages": [shlex.quote(spec) for spec in pip_packages(site)],  # tensorflow[and-cuda] is a glob unquoted
        "conda_packages": conda_packages(site) if site.stack.channel == "open-ce" else [],
        "open_ce_channel": OPEN_CE_CHANNEL.format(release=site.stack.open_ce),
        "horovod_build_env": horovod_build_env(site),
        "horovod_wheel": site_wheel_name(site),
        "constraints": f"{IMAGE_PATHS.constraints}/{site.id}.txt" if site.stack.channel == "pip" else None,
        "kept_constraints": IMAGE_PATHS.kept_constraints,
        "cuda_series": cuda_series(site),
        "mpi_series": ".".join(site.mpi.image_version.split(".")[:2]),
        "pip_version": pins["pip"],
        "setuptools_version": pins["setuptools"],
        "wheel_version": pins["wheel"],
    }


def _logical_commands(body: str) -> list[str]:
    """Split a rendered partial into commands; a line ending in a backslash continues the next."""
    commands: list[str] = []
    pending = ""
    for raw in body.splitlines():
        line = raw.rstrip()
        if not line.strip():
            continue
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        commands.append((pending + line).strip())
        pending = ""
    return commands


def render_steps(site: Site) -> list[Step]:
    """The rendered build steps of a site's image."""
    env = template_environment()
    ctx = context(site)
    steps = []
    for name in step_names(site):
        module = env.get_template(f"steps/{name}.sh.j2").make_module(vars=ctx)
        if getattr(module, "env", None):
            raise KitError(f"containers/templates/steps/{name}.sh.j2: sets env; a step's environment is step_env's")
        steps.append(
            Step(
                name=name,
                title=str(module.title),
                commands=_logical_commands(str(module)),
                env=step_env(site, name),
                files=[tuple(f) for f in module.files],
            )
        )
    return steps


def runtime_env(steps: list[Step]) -> dict[str, str]:
    """The environment an image sets at run time: every step's, later steps winning."""
    merged: dict[str, str] = {}
    for step in steps:
        merged.update(step.env)
    return merged


def render_recipe(site: Site, fmt: str) -> str:
    """The text of one recipe: ``fmt`` is ``docker`` or ``singularity``."""
    if fmt not in FORMATS:
        raise KitError(f"unknown recipe format {fmt!r}; expected one of: {', '.join(FORMATS)}")
    steps = render_steps(site)
    template = template_environment().get_template(f"{FORMATS[fmt]}.j2")
    return template.render(
        site=site,
        paths=IMAGE_PATHS,
        context_paths=CONTEXT_PATHS,
        steps=steps,
        labels=labels(site),
        runtime_env=runtime_env(steps),
    )


def constraints_path(site: Site) -> Path:
    """``containers/constraints/<site>.txt``."""
    return CONSTRAINTS_DIR / f"{site.id}.txt"


def constraints_file(site: Site) -> Path | None:
    """The site's pip constraints file, checked to exist; ``None`` for a conda site (conda solves its env)."""
    if site.stack.channel != "pip":
        return None
    path = constraints_path(site)
    if not path.is_file():
        raise KitError(
            f"{display_path(path)}: missing for pip site {site.id}; write it with `hpcai constraints --site {site.id}`"
        )
    return path


def render_provenance(site: Site) -> str:
    """The image's provenance record (``ImagePaths.provenance``): site, kit version, labels, the MPI model and the
    constraints."""
    path = constraints_file(site)
    constraints = path and {
        "file": path.relative_to(KIT_ROOT).as_posix(),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
    record = {
        "site": site.id,
        "name": site.name,
        "center": site.center,
        "arch": site.arch,
        "kit_version": __version__,
        "base": site.base.ref,
        "mpi": site.mpi.model_dump(),
        "stack": site.stack.model_dump(),
        "labels": dict(labels(site)),
        "constraints": constraints,
    }
    return json.dumps(record, indent=2, sort_keys=True) + "\n"


def render_site(site: Site) -> dict[str, str]:
    """Every file of ``recipes/<site>/``: file name -> text."""
    check_cuda_wheels(site)
    files = {name: render_recipe(site, fmt) for fmt, name in FORMATS.items()}
    files[PROVENANCE] = render_provenance(site)
    return files


def files_digest(files: dict[str, str]) -> str:
    """sha256 of rendered recipe files (name -> text), in name order."""
    digest = hashlib.sha256()
    for name, text in sorted(files.items()):
        digest.update(name.encode() + b"\0" + text.encode() + b"\0")
    return digest.hexdigest()


def recipe_digest(site: Site) -> str:
    """sha256 of the site's rendered recipe files; a changed pin or template gives a new digest."""
    return files_digest(render_site(site))


def tag_for(site_id: str, digest: str) -> str:
    """``hpcai/<site>:<first 12 hex of the recipe digest>``."""
    return f"hpcai/{site_id}:{digest[:12]}"


def sif_name_for(site_id: str, digest: str) -> str:
    """``hpcai-<site>-<first 12 hex of the recipe digest>.sif``."""
    return f"hpcai-{site_id}-{digest[:12]}.sif"


def image_tag(site: Site) -> str:
    """The Docker tag of a site's image: ``hpcai/<site>:<first 12 hex of the recipe digest>``."""
    return tag_for(site.id, recipe_digest(site))


def sif_name(site: Site) -> str:
    """The file name of a site's Singularity image: ``hpcai-<site>-<first 12 hex of the recipe digest>.sif``."""
    return sif_name_for(site.id, recipe_digest(site))


def sif_path_for(site_id: str, digest: str) -> Path:
    """``build/images/hpcai-<site>-<first 12 hex of the recipe digest>.sif``."""
    return IMAGES_DIR / sif_name_for(site_id, digest)


def sif_path(site: Site) -> Path:
    """Where ``hpcai build --runtime singularity`` writes the site's SIF (``build/images/``)."""
    return sif_path_for(site.id, recipe_digest(site))


def patch_files(site: Site) -> list[Path]:
    """The Horovod patch files a site names, each checked to exist; a one-line error when the site's TensorFlow
    needs a patch it does not name (:mod:`hpcai_tf.recipes.patches`)."""
    from hpcai_tf.recipes.patches import PATCH_RULES, missing_patches

    paths = []
    for name in site.stack.horovod_patches:
        path = PATCHES_DIR / f"{name}.patch"
        if not path.is_file():
            raise KitError(f"stack.horovod_patches: no patch file {path} for {name!r} (site {site.id})")
        paths.append(path)
    missing = missing_patches(site)
    if missing:
        stack = site.stack
        raise KitError(
            f"site {site.id}: stack.horovod_patches: Horovod {stack.horovod} built against TensorFlow "
            f"{stack.tensorflow} needs {', '.join(repr(m) for m in missing)} ({display_path(PATCH_RULES)}); "
            "add it to the list"
        )
    return paths


def write_site(site: Site, out_dir: Path = RECIPES_DIR) -> list[Path]:
    """Render a site's recipes into ``out_dir/<site>/``; everything renders before anything is written."""
    patch_files(site)
    files = render_site(site)
    written = []
    for name, text in files.items():
        path = out_dir / site.id / name
        write_atomic(path, text)
        written.append(path)
    return written
