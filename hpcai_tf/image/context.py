"""The build context of a site's image, staged under ``build/context/<site>/`` before every build.

It holds exactly what the rendered recipes copy (see the header of ``recipes/<site>/Dockerfile``):

- ``build/options/``: ``options.sh``, sourced by the steps that reach the network (CA bundle, pip index),
  and the CA bundle itself when one is given. Options are arguments of ``hpcai build``, never baked into
  the committed recipes.
- ``build/wheels/``: the host's Horovod wheel when its record proves it the image's own build (see
  :func:`horovod_wheel_reason`), without the record; else empty, and the recipe compiles Horovod.
- ``constraints/``: a pip site's constraints file, ``containers/constraints/<site>.txt`` (checked against the
  site's pins first: see :func:`hpcai_tf.recipes.build_inputs.build_inputs`).
- ``recipe/``: the site's rendered Dockerfile, Singularity.def and provenance.json; ``Singularity.def`` is
  also placed at the context root, so that its relative ``%files`` resolve from there.
- ``kit/``: pyproject.toml, README.md and ``hpcai_tf/`` without caches; ``patches/`` when the site names any.

The context is written to a temporary directory and renamed into place: a failed staging leaves the
previous context whole. Its contents are deterministic, so Docker's layer cache keys on them.

A recipe directory (``hpcai build --recipe DIR``, e.g. a derived recipe of ``hpcai extend``) is staged the same
way under ``build/context/recipe-<name>/``: DIR's files plus the same ``build/options/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shlex
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hpcai_tf.catalog import Site
from hpcai_tf.errors import KitError
from hpcai_tf.paths import CONTEXT_DIR, KIT_ROOT, WHEELS_DIR
from hpcai_tf.recipes.build_inputs import BuildInputs
from hpcai_tf.recipes.horovod_build import RECORD_FIELDS, image_record, record_name, site_wheel_name
from hpcai_tf.train.image_contract import CONTEXT_PATHS, IMAGE_PATHS

DEFAULT_WHEELS_DIR = WHEELS_DIR
CA_BUNDLE_NAME = "ca-bundle.crt"
CA_VARIABLES = ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
KIT_FILES = ("pyproject.toml", "README.md")
KIT_PACKAGE = "hpcai_tf"
SKIPPED = re.compile(r"(__pycache__|\.pyc$|\.pyo$|\.egg-info|\.pytest_cache|\.ruff_cache)")


@dataclass(frozen=True)
class BuildOptions:
    """Options of one build, given on the command line of ``hpcai build``."""

    ca_bundle: Path | None = None
    """CA bundle for HTTPS inside the build (a host behind an intercepting proxy needs its own)."""
    index_url: str | None = None
    """A PyPI mirror for pip inside the build."""
    wheels_dir: Path | None = DEFAULT_WHEELS_DIR
    """Where prebuilt Horovod wheels are looked for; ``None`` builds Horovod inside the image."""
    sif_compression: str = "gzip"
    """The SIF's squashfs compression (a key of ``image.singularity.SQUASHFS_COMPRESSION``)."""


@dataclass(frozen=True)
class StagedContext:
    """A staged build context and what went into it."""

    path: Path
    wheels: list[str] = field(default_factory=list)
    kit_digest: str = ""


def options_script(options: BuildOptions) -> str:
    """The text of ``options.sh``: exports for the network steps, or only a comment when there are none."""
    lines = ["# Written by `hpcai build`: options of the steps that reach the network (sourced, never ENV)."]
    if options.ca_bundle:
        bundle = f"{IMAGE_PATHS.options}/{CA_BUNDLE_NAME}"
        lines += [f"export {name}={bundle}" for name in CA_VARIABLES]
    if options.index_url:
        lines.append(f"export PIP_INDEX_URL={shlex.quote(options.index_url)}")
    return "\n".join(lines) + "\n"


def _site_reason(site: Site) -> str | None:
    """Why no host-built Horovod wheel can serve the site's image, whatever its record says; ``None`` if one may."""
    stack = site.stack
    if stack.channel != "pip":
        return f"the image takes Horovod from the {stack.channel} channel"
    if stack.horovod_gpu_operations != "none":
        return f"the image builds Horovod with {stack.horovod_gpu_operations} GPU operations"
    if site.arch != platform.machine():
        return f"the image is {site.arch} and the wheels are {platform.machine()}"
    return None


def _shown(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "none"
    return "nothing recorded" if value is None else str(value)


def record_reason(site: Site, record: dict[str, object]) -> str | None:
    """How a wheel's record differs from the build the site's image would run (``image_record`` of
    :mod:`hpcai_tf.recipes.horovod_build`), or ``None`` when it is the same build: Horovod version, patches by
    sha256, TensorFlow pin, Python minor (the ABI), platform, OS, MPI and build switches. The first difference is
    named, in that order."""
    want = image_record(site)
    for name in RECORD_FIELDS:
        got, need = record.get(name), want[name]
        if name == "python":
            got = ".".join(str(got).split(".")[:2]) if got is not None else None
            need = ".".join(str(need).split(".")[:2])
        elif name == "tensorflow" and isinstance(got, str):
            got, need = got.lower(), str(need).lower()
        if got != need:
            return f"{name}: the wheel was built with {_shown(got)}, the image needs {_shown(need)}"
    return None


def wheel_record(wheel: Path) -> dict[str, object]:
    """What ``scripts/setup-venv.sh`` recorded a wheel was built with (``host_record``), from its sidecar
    ``<wheel>.built-against.json``; empty when there is none or it does not parse."""
    try:
        record = json.loads((wheel.parent / record_name(wheel.name)).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def horovod_wheel_reason(site: Site, wheels_dir: Path | None) -> str | None:
    """Why the site's image compiles Horovod instead of installing the host's wheel from ``wheels_dir``, in one
    line; ``None`` when the wheel there is provably the image's own build (:func:`record_reason`).

    The wheels in ``.cache/wheels`` are built by ``scripts/setup-venv.sh`` for the host venv; Horovod's extension
    links against TensorFlow's C++ ABI and MPI, so a wheel serves only an image that would build exactly the same.
    """
    reason = _site_reason(site)
    if reason:
        return reason
    if wheels_dir is None:
        return "hpcai build --wheels none"
    wheel = wheels_dir / site_wheel_name(site)
    if not wheel.is_file():
        return f"no {wheel} (scripts/setup-venv.sh builds it)"
    record = wheel_record(wheel)
    if not record:
        return f"{wheel} has no readable record {record_name(wheel.name)}"
    why = record_reason(site, record)
    return f"{wheel.name}: {why}" if why else None


def horovod_wheels(site: Site, wheels_dir: Path | None) -> list[Path]:
    """The host's Horovod wheel when it serves the site's image (:func:`horovod_wheel_reason`), else none."""
    if wheels_dir is None or horovod_wheel_reason(site, wheels_dir) is not None:
        return []
    return [wheels_dir / site_wheel_name(site)]


def kit_files(root: Path = KIT_ROOT) -> Iterator[tuple[Path, str]]:
    """The kit's source files to copy into an image: (source path, path under ``kit/``), sorted."""
    for name in KIT_FILES:
        path = root / name
        if not path.is_file():
            raise KitError(f"{path}: missing; the image installs the kit from pyproject.toml, README.md, hpcai_tf/")
        yield path, name
    package = root / KIT_PACKAGE
    for path in sorted(package.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not SKIPPED.search(rel):
            yield path, rel


def _copy_kit(dest: Path | None, root: Path) -> str:
    """Copy the kit's files into ``dest`` (or only hash them); the sha256 over their names and contents."""
    digest = hashlib.sha256()
    for src, rel in kit_files(root):
        data = src.read_bytes()
        if dest is not None:
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        digest.update(rel.encode() + b"\0" + data + b"\0")
    return digest.hexdigest()


def kit_digest(root: Path = KIT_ROOT) -> str:
    """sha256 of the kit source an image would get now (the ``org.hpcai.kit-source`` label of a fresh build)."""
    return _copy_kit(None, root)


def _replace_dir(tmp: Path, final: Path) -> None:
    """Move ``tmp`` to ``final``, replacing what was there."""
    old = final.with_name(f".{final.name}.old{os.getpid()}")
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _write_options(tmp: Path, options: BuildOptions) -> None:
    """``build/options/`` under ``tmp``: options.sh, and the CA bundle when one is given."""
    if options.ca_bundle and not options.ca_bundle.is_file():
        raise KitError(f"--ca-bundle: no such file {options.ca_bundle}")
    opts = tmp / CONTEXT_PATHS.options
    shutil.rmtree(opts, ignore_errors=True)
    opts.mkdir(parents=True)
    (opts / "options.sh").write_text(options_script(options))
    if options.ca_bundle:
        shutil.copyfile(options.ca_bundle, opts / CA_BUNDLE_NAME)


def _temporary_beside(dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    return tmp


def stage_context(inputs: BuildInputs, options: BuildOptions, dest: Path | None = None) -> StagedContext:
    """Stage the build context of ``inputs.site`` at ``dest`` (default ``build/context/<site>``)."""
    site = inputs.site
    dest = dest or CONTEXT_DIR / site.id
    patches, constraints, recipe_files = inputs.patches, inputs.constraints, inputs.files
    wheels = horovod_wheels(site, options.wheels_dir)
    tmp = _temporary_beside(dest)
    try:
        _write_options(tmp, options)
        wheel_dir = tmp / CONTEXT_PATHS.wheels
        wheel_dir.mkdir()
        for wheel in wheels:
            shutil.copyfile(wheel, wheel_dir / wheel.name)
        (tmp / CONTEXT_PATHS.recipe).mkdir()
        for name, text in recipe_files.items():
            (tmp / CONTEXT_PATHS.recipe / name).write_text(text)
        (tmp / "Singularity.def").write_text(recipe_files["Singularity.def"])
        if constraints:
            (tmp / CONTEXT_PATHS.constraints).mkdir()
            shutil.copyfile(constraints, tmp / CONTEXT_PATHS.constraints / constraints.name)
        if patches:
            (tmp / CONTEXT_PATHS.patches).mkdir()
            for patch in patches:
                shutil.copyfile(patch, tmp / CONTEXT_PATHS.patches / patch.name)
        kit_digest = _copy_kit(tmp / CONTEXT_PATHS.kit, KIT_ROOT)
        _replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return StagedContext(path=dest, wheels=[w.name for w in wheels], kit_digest=kit_digest)


def stage_recipe_context(recipe_dir: Path, options: BuildOptions, dest: Path) -> StagedContext:
    """Stage a recipe directory (a derived recipe of ``hpcai extend``, or any other) at ``dest``: its files, plus
    ``build/options/`` written from ``options`` (one the directory holds is replaced), as a site's context has."""
    tmp = _temporary_beside(dest)
    try:
        shutil.copytree(recipe_dir, tmp, ignore=shutil.ignore_patterns("__pycache__"))
        _write_options(tmp, options)
        _replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return StagedContext(path=dest)
