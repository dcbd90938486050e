"""Derived recipes: the site's base image plus a user's packages (the paper's "clone and modify").

The derived Dockerfile starts FROM the site's image tag and the Singularity definition from its SIF (where
``hpcai build --site S --runtime singularity`` writes it), and both install the added pip packages under a
constraints file that holds TensorFlow, Horovod, NumPy, mpi4py and h5py at the base's pins, and on a pip site
also under the base image's own constraints (every transitive package of its stack, ``hpcai constraints``), so
an added package can add dependencies but not move one the stack already has. Their pip steps
source the same ``options.sh`` as the base's (CA bundle, pip mirror): ``hpcai build --recipe DIR`` stages it in
``build/options/`` beside the recipe, from its ``--ca-bundle`` and ``--index-url``. The definition's ``%post``
exports the base's run-time environment first (its venv on PATH), which a build does not source by itself.
"""

from __future__ import annotations

import re
from pathlib import Path

from hpcai_tf.catalog import Site
from hpcai_tf.errors import KitError
from hpcai_tf.files import check_targets, write_atomic
from hpcai_tf.recipes import image_labels as label
from hpcai_tf.recipes.package_managers import package_manager
from hpcai_tf.recipes.render import (
    image_tag,
    render_steps,
    runtime_env,
    sif_path,
    stack_requirements,
    template_environment,
)
from hpcai_tf.train.image_contract import CONTEXT_PATHS, IMAGE_PATHS

PIP_SPEC = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?==[0-9][A-Za-z0-9.+!-]*$")
APT_SPEC = re.compile(r"^[a-z0-9][a-z0-9+.-]*(=[A-Za-z0-9.+~:-]+)?$")
NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def constraints(site: Site) -> str:
    """pip constraints that pin the base image's stack."""
    lines = [f"# The base image's pins (site {site.id}): an added package may not replace them."]
    return "\n".join([*lines, *stack_requirements(site)]) + "\n"


def _check(name: str, pip: list[str], apt: list[str]) -> None:
    if not NAME.fullmatch(name):
        raise KitError(f"--name: expected lowercase letters, digits and '-', got {name!r}")
    if not pip:
        raise KitError("--pip: give at least one package to add, as NAME==VERSION")
    for spec in pip:
        if not PIP_SPEC.fullmatch(spec):
            raise KitError(f"--pip: expected an exact pin NAME==VERSION, got {spec!r}")
    for spec in apt:
        if not APT_SPEC.fullmatch(spec):
            raise KitError(f"--apt: expected a package name (optionally NAME=VERSION), got {spec!r}")


def render_derived(site: Site, name: str, pip: list[str], apt: list[str]) -> dict[str, str]:
    """The derived recipe's files: Dockerfile, Singularity.def and constraints.txt."""
    _check(name, pip, apt)
    env = template_environment()
    base_tag = image_tag(site)
    ctx = {
        "site": site,
        "name": name,
        "pip": pip,
        "paths": IMAGE_PATHS,
        "context_paths": CONTEXT_PATHS,
        "os_install": package_manager(site).install_commands(apt) if apt else [],
        # The definition's base is a SIF file, not a reference: it names no base image.
        "docker_labels": [
            (label.OCI_TITLE, name),
            (label.OCI_BASE_NAME, base_tag),
            (label.DERIVED_FROM_LABEL, site.id),
        ],
        "sif_labels": [(label.OCI_TITLE, name), (label.DERIVED_FROM_LABEL, site.id)],
        "base_tag": base_tag,
        "base_sif": sif_path(site),
        "base_env": runtime_env(render_steps(site)),
        "kept_constraints": IMAGE_PATHS.kept_constraints if site.stack.channel == "pip" else None,
    }
    files = {
        "Dockerfile": env.get_template("derived/Dockerfile.j2").render(ctx),
        "Singularity.def": env.get_template("derived/Singularity.def.j2").render(ctx),
        "constraints.txt": constraints(site),
    }
    return files


def write_derived(site: Site, name: str, pip: list[str], apt: list[str], out_dir: Path) -> list[Path]:
    """Render, then write, the derived recipe into ``out_dir``."""
    files = render_derived(site, name, pip, apt)
    check_targets([out_dir / file_name for file_name in files])
    paths = []
    for file_name, text in files.items():
        path = out_dir / file_name
        write_atomic(path, text)
        paths.append(path)
    return paths
