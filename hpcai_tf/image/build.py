"""``hpcai build``: a site's rendered recipe becomes an image, with Docker or with Apptainer/Singularity.

The Docker path: render and validate the recipe, refuse in one line what this host cannot build
(:func:`hpcai_tf.image.host.build_blockers`, which the generated site pages also ask), make or find the base image,
stage the build context (:mod:`hpcai_tf.image.context`), then build through the Docker SDK
(:mod:`hpcai_tf.image.docker_build`) and tag ``recipes.image_tag(site)``.

The Singularity path (:func:`build_site_sif`): from the Docker daemon (``docker-daemon://TAG``) when the
site's Docker image exists, else from a ``docker-archive`` that ``hpcai export`` wrote (the OLCF route:
build with an OCI engine, then convert), else from the staged ``Singularity.def``. A conversion builds a small
definition file (:func:`conversion_definition`) that bootstraps from the Docker image and keeps the recipe's
``%help``, ``%test`` and ``%runscript``, so the SIF runs its ``%test`` at the end of the build as a .def build does.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hpcai_tf.catalog import Site
from hpcai_tf.errors import KitError
from hpcai_tf.files import write_atomic
from hpcai_tf.image.host import refuse_blocked, this_host
from hpcai_tf.paths import CONTEXT_DIR, EXPORT_DIR, IMAGES_DIR, LOGS_DIR
from hpcai_tf.recipes.build_inputs import BuildInputs, build_inputs
from hpcai_tf.recipes.image_labels import KIT_SOURCE_LABEL, RECIPE_LABEL
from hpcai_tf.recipes.render import recipe_digest

if TYPE_CHECKING:
    from hpcai_tf.image.context import BuildOptions

DOCKER_ARCH = {"x86_64": "amd64", "ppc64le": "ppc64le", "aarch64": "arm64"}
CONVERSION_SECTIONS = ("help", "test", "runscript")
"""Sections of the rendered Singularity.def that a conversion keeps (the Docker image has the labels, env, files)."""
CONVERSION_DEF = "convert.def"
"""The conversion's definition file, written into ``build/context/<site>/``."""
NAME = re.compile(r"[^a-z0-9_.-]+")


def archive_path(site: Site) -> Path:
    """Where ``hpcai export --runtime docker`` writes the site's ``docker save`` archive."""
    return EXPORT_DIR / f"hpcai-{site.id}-{recipe_digest(site)[:12]}.tar"


def cross_arch_platform(site: Site) -> str | None:
    """The Docker platform to build for when the site's arch is not this host's; ``None`` for the host's own.

    A foreign arch builds only under qemu-user emulation registered with binfmt_misc; without it this is the
    one-line error of :func:`hpcai_tf.image.host.refuse_blocked`. (Emulated builds have not run on the kit's
    machine.)
    """
    host = this_host()
    refuse_blocked(site, host)
    if site.arch == host.arch:
        return None
    return f"linux/{DOCKER_ARCH.get(site.arch, site.arch)}"


@dataclass(frozen=True)
class SiteBuild:
    """What ``hpcai build --site S`` produced."""

    site: str
    runtime: str
    image: str
    """A Docker tag, or the path of a SIF."""
    seconds: float = 0.0
    size: int = 0


def build_site_docker(
    site: Site,
    options: BuildOptions,
    *,
    no_cache: bool = False,
    quiet: bool = False,
    out: Callable[[str], None] = print,
) -> SiteBuild:
    """Build and tag the site's Docker image; a one-line error when this host cannot."""
    from hpcai_tf.image.base import ensure_base_image
    from hpcai_tf.image.context import horovod_wheel_reason, stage_context
    from hpcai_tf.image.docker_build import build_image
    from hpcai_tf.image.docker_engine import docker_client

    inputs = build_inputs(site)
    tag = inputs.tag
    out(f"site {site.id}: recipe rendered and valid; image tag {tag}")
    target = cross_arch_platform(site)
    client = docker_client()
    refuse_blocked(site, this_host(site, client))
    ensure_base_image(site, client, out)
    staged = stage_context(inputs, options)
    if staged.wheels:
        out(f"staged {staged.path} with prebuilt {', '.join(staged.wheels)}")
    else:
        why = horovod_wheel_reason(site, options.wheels_dir)
        out(f"staged {staged.path}; Horovod builds from source inside the image ({why})")
    result = build_image(
        client,
        staged.path,
        "recipe/Dockerfile",
        tag,
        LOGS_DIR / f"{site.id}-{tag.rsplit(':', 1)[1]}.log",
        no_cache=no_cache,
        labels={KIT_SOURCE_LABEL: staged.kit_digest},
        platform=target,
        quiet=quiet,
    )
    size = client.images.get(result.image_id).attrs.get("Size", 0)
    return SiteBuild(site=site.id, runtime="docker", image=tag, seconds=result.seconds, size=size)


def recipe_dir_tag(recipe_dir: Path) -> str:
    """The tag of an image built from a recipe directory: ``hpcai-recipe/<dir name>:<sha256 of its files>``."""
    digest = hashlib.sha256()
    for path in sorted(p for p in recipe_dir.rglob("*") if p.is_file()):
        digest.update(path.relative_to(recipe_dir).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    name = NAME.sub("-", recipe_dir.resolve().name.lower()).strip("-.") or "recipe"
    return f"hpcai-recipe/{name}:{digest.hexdigest()[:12]}"


def _stage_recipe_dir(recipe_dir: Path, options: BuildOptions, fmt_file: str) -> tuple[str, Path]:
    """The tag of ``recipe_dir`` and its staged context, ``build/context/recipe-<name>/``."""
    from hpcai_tf.image.context import stage_recipe_context

    if not (recipe_dir / fmt_file).is_file():
        raise KitError(f"--recipe: no {fmt_file} in {recipe_dir}")
    tag = recipe_dir_tag(recipe_dir)
    staged = stage_recipe_context(recipe_dir, options, CONTEXT_DIR / f"recipe-{tag.split('/', 1)[1].split(':')[0]}")
    return tag, staged.path


def build_recipe_dir(
    recipe_dir: Path, options: BuildOptions, *, no_cache: bool = False, quiet: bool = False
) -> SiteBuild:
    """Build ``DIR/Dockerfile`` from DIR's files plus the build options (``build/options/``, as a site's context
    has): a derived recipe from ``hpcai extend``, or any other."""
    from hpcai_tf.image.docker_build import build_image
    from hpcai_tf.image.docker_engine import docker_client

    tag, context = _stage_recipe_dir(recipe_dir, options, "Dockerfile")
    client = docker_client()
    result = build_image(
        client,
        context,
        "Dockerfile",
        tag,
        LOGS_DIR / f"recipe-{tag.split('/', 1)[1].replace(':', '-')}.log",
        no_cache=no_cache,
        labels={RECIPE_LABEL: recipe_dir.resolve().name},
        quiet=quiet,
    )
    size = client.images.get(result.image_id).attrs.get("Size", 0)
    return SiteBuild(site="", runtime="docker", image=tag, seconds=result.seconds, size=size)


def recipe_sif_path(recipe_dir: Path) -> Path:
    """Where ``hpcai build --recipe DIR --runtime singularity`` writes the SIF: ``hpcai-recipe-<name>-<hash>.sif``."""
    name, _, digest = recipe_dir_tag(recipe_dir).split("/", 1)[1].partition(":")
    return IMAGES_DIR / f"hpcai-recipe-{name}-{digest}.sif"


def build_recipe_sif(recipe_dir: Path, options: BuildOptions) -> SiteBuild:
    """Build ``DIR/Singularity.def`` with Apptainer/Singularity from DIR's staged context (its ``%files`` resolve
    there, ``build/options/`` included)."""
    import time

    from hpcai_tf.image.singularity import build_sif, find_runtime

    _, context = _stage_recipe_dir(recipe_dir, options, "Singularity.def")
    executable = find_runtime()
    path = recipe_sif_path(recipe_dir)
    start = time.monotonic()
    build_sif(executable, path, "Singularity.def", context, options.sif_compression)
    return SiteBuild(
        site="", runtime="singularity", image=str(path), seconds=time.monotonic() - start, size=path.stat().st_size
    )


def sif_source(inputs: BuildInputs, out: Callable[[str], None] = print) -> str:
    """Where the SIF is built from: ``docker-daemon://TAG``, ``docker-archive://TAR``, or ``Singularity.def``."""
    from hpcai_tf.image.context import kit_digest
    from hpcai_tf.image.docker_engine import docker_client, docker_host, engine_answers, find_image

    site, tag = inputs.site, inputs.tag
    if engine_answers():
        image = find_image(docker_client(), tag)
        if image is not None:
            out(f"converting the Docker image {tag} ({image.short_id}) from the daemon")
            if (image.labels or {}).get(KIT_SOURCE_LABEL) != kit_digest():
                out(f"note: {tag} holds older kit source than this checkout; `hpcai build --site {site.id}` refreshes")
            os.environ["DOCKER_HOST"] = docker_host()  # the runtime reads the engine's address from there
            return f"docker-daemon://{tag}"
    archive = archive_path(site)
    if archive.is_file():
        out(f"converting the docker-archive {archive}")
        return f"docker-archive://{archive}"
    out(f"no Docker image {tag} nor archive {archive}: building from recipes/{site.id}/Singularity.def")
    return "Singularity.def"


def conversion_definition(site: Site, source: str, definition: str | None = None) -> str:
    """The definition file that converts ``source`` (``docker-daemon://TAG`` or ``docker-archive://TAR``) into
    the site's SIF, with the :data:`CONVERSION_SECTIONS` of its rendered Singularity.def (``definition``, rendered
    here when not given)."""
    from hpcai_tf.recipes.render import render_recipe

    bootstrap, _, ref = source.partition("://")
    text = definition if definition is not None else render_recipe(site, "singularity")
    sections = dict(re.findall(r"(?ms)^%(\w+)[ \t]*\n(.*?)(?=^%\w+[ \t]*\n|\Z)", text))
    lines = [f"Bootstrap: {bootstrap}", f"From: {ref}", ""]
    for name in CONVERSION_SECTIONS:
        if name in sections:
            lines += [f"%{name}", sections[name].rstrip(), ""]
    return "\n".join(lines)


def build_site_sif(site: Site, options: BuildOptions, out: Callable[[str], None] = print) -> SiteBuild:
    """Build the site's SIF with Apptainer/Singularity; a one-line error when neither is installed."""
    import time

    from hpcai_tf.image.context import stage_context
    from hpcai_tf.image.singularity import build_sif, find_runtime

    inputs = build_inputs(site)
    path = inputs.sif_path
    out(f"site {site.id}: recipe rendered and valid; image {path}")
    cross_arch_platform(site)
    executable = find_runtime()
    source = sif_source(inputs, out)
    cwd = CONTEXT_DIR / site.id
    if source == "Singularity.def":
        cwd = stage_context(inputs, options).path
    cwd.mkdir(parents=True, exist_ok=True)
    if source != "Singularity.def":
        write_atomic(cwd / CONVERSION_DEF, conversion_definition(site, source, inputs.files["Singularity.def"]))
        source = CONVERSION_DEF  # its %test runs at the end of the build
    start = time.monotonic()
    build_sif(executable, path, source, cwd, options.sif_compression)
    return SiteBuild(
        site=site.id,
        runtime="singularity",
        image=str(path),
        seconds=time.monotonic() - start,
        size=path.stat().st_size,
    )
