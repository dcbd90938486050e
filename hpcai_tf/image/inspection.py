"""``hpcai inspect``: the provenance a built image carries: labels, pinned stack and embedded recipe.

Every site image holds its rendered recipe under ``/opt/hpcai/recipe/`` (Dockerfile, Singularity.def,
provenance.json) and its pins as ``org.hpcai.pin.*`` labels. A Docker image is read without running it
(``docker create`` and a copy of the directory); a SIF through ``apptainer inspect`` and ``exec cat``.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from hpcai_tf.errors import KitError
from hpcai_tf.recipes.image_labels import (
    ARCH_LABEL,
    INSPECT_LABEL,
    KIT_SOURCE_LABEL,
    OCI_VERSION,
    PIN_PREFIX,
    SITE_LABEL,
)
from hpcai_tf.recipes.render import FORMATS, PROVENANCE
from hpcai_tf.train.image_contract import IMAGE_PATHS

RECIPE_DIR = IMAGE_PATHS.recipe
RECIPE_FILES = (*FORMATS.values(), PROVENANCE)


def site_image(site_id: str, runtime: str) -> str:
    """The image ``hpcai build --site`` makes for a site: its Docker tag, or its SIF path."""
    from hpcai_tf.catalog import load_site
    from hpcai_tf.recipes.render import image_tag, sif_path

    site = load_site(site_id)
    return image_tag(site) if runtime == "docker" else str(sif_path(site))


def _docker_recipe(client, image_id: str) -> dict[str, str]:
    """The files of ``/opt/hpcai/recipe`` in a Docker image, read from a created (never started) container."""
    import docker

    container = client.containers.create(image_id, command=["true"], labels={INSPECT_LABEL: image_id})
    try:
        stream, _ = container.get_archive(RECIPE_DIR)
        data = b"".join(stream)
    except docker.errors.NotFound:
        return {}
    finally:
        container.remove(force=True)
    files = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            handle = tar.extractfile(member) if member.isfile() else None
            if handle is not None:
                files[Path(member.name).name] = handle.read().decode("utf-8", errors="replace")
    return files


def _inspect_docker(ref: str) -> dict:
    from hpcai_tf.image.docker_engine import docker_client, find_image

    client = docker_client()
    image = find_image(client, ref)
    if image is None:
        raise KitError(f"no image {ref!r} in the Docker engine (`hpcai build --site SITE` makes one)")
    attrs = image.attrs
    return {
        "image": ref,
        "format": "docker",
        "id": image.id,
        "tags": image.tags,
        "created": attrs.get("Created", ""),
        "size": attrs.get("Size", 0),
        "labels": dict(image.labels or {}),
        "recipe": _docker_recipe(client, image.id),
    }


def _inspect_sif(path: Path) -> dict:
    from hpcai_tf.image.singularity import exec_in_sif, find_runtime, runtime_client

    executable = find_runtime()
    client = runtime_client(executable)
    meta = client.inspect(str(path), quiet=True) or {}  # spython unwraps "data": {"attributes": {"labels"}}
    if "return_code" in meta:
        raise KitError(f"{Path(executable).name} inspect {path} failed: {meta.get('message')}")
    labels = meta.get("attributes", {}).get("labels") or {}
    recipe = {}
    for name in RECIPE_FILES:
        code, text = exec_in_sif(executable, path, ["cat", f"{RECIPE_DIR}/{name}"], {}, stdout_only=True)
        if code == 0:
            recipe[name] = text
    return {
        "image": str(path),
        "format": "sif",
        "id": "",
        "tags": [],
        "created": "",
        "size": path.stat().st_size,
        "labels": dict(labels or {}),
        "recipe": recipe,
    }


def compare_with_catalog(info: dict) -> dict:
    """Whether the embedded recipe is what the catalog renders now for the image's site."""
    from hpcai_tf.catalog import load_site
    from hpcai_tf.recipes.render import render_site

    site_id = info["labels"].get(SITE_LABEL, "")
    if not site_id or not info["recipe"]:
        return {"site": site_id, "matches": None, "differs": []}
    try:
        rendered = render_site(load_site(site_id))
    except KitError as err:
        return {"site": site_id, "matches": None, "differs": [], "error": str(err)}
    differs = sorted(name for name, text in rendered.items() if info["recipe"].get(name) != text)
    return {"site": site_id, "matches": not differs, "differs": differs}


def inspect_image(ref: str) -> dict:
    """Labels, pins and embedded recipe of a Docker image (tag or id) or a SIF file."""
    path = Path(ref)
    info = _inspect_sif(path) if ref.endswith(".sif") or path.is_file() else _inspect_docker(ref)
    info["pins"] = {k[len(PIN_PREFIX) :]: v for k, v in sorted(info["labels"].items()) if k.startswith(PIN_PREFIX)}
    info["catalog"] = compare_with_catalog(info)
    return info


def format_inspection(info: dict) -> str:
    """The human view of :func:`inspect_image`: summary, pins, labels, then the embedded recipe."""
    from hpcai_tf.image.docker_engine import human_size

    labels = info["labels"]
    lines = [f"image    {info['image']}  ({info['id'][:19] or info['format']}, {human_size(info['size'])})"]
    if info["created"]:
        lines.append(f"created  {info['created']}")
    site = labels.get(SITE_LABEL)
    if site:
        arch = labels.get(ARCH_LABEL, "?")
        kit = labels.get(OCI_VERSION, "?")
        source = labels.get(KIT_SOURCE_LABEL, "unknown")[:16]
        lines.append(f"site     {site} ({arch}), kit {kit}, kit source sha256 {source}")
    lines.append("pins")
    lines += [f"  {name:<12} {value}" for name, value in info["pins"].items()] or ["  (none: not an hpcai site image)"]
    lines.append("labels")
    lines += [f"  {key}={value}" for key, value in sorted(labels.items())]
    catalog = info["catalog"]
    if catalog["matches"] is True:
        lines.append(f"recipe   {RECIPE_DIR}/ matches what the catalog renders now (containers/sites/{site}.toml)")
    elif catalog["matches"] is False:
        lines.append(
            f"recipe   {RECIPE_DIR}/ differs from the catalog's current rendering in: "
            + ", ".join(catalog["differs"])
            + " (the catalog or templates changed since this build)"
        )
    else:
        lines.append(f"recipe   {catalog.get('error') or 'no embedded recipe to compare'}")
    shown = "Dockerfile" if info["format"] == "docker" else "Singularity.def"
    if shown in info["recipe"]:
        lines.append(f"==> {RECIPE_DIR}/{shown} <==")
        lines.append(info["recipe"][shown].rstrip("\n"))
    others = [name for name in info["recipe"] if name != shown]
    if others:
        lines.append(f"(also embedded: {', '.join(f'{RECIPE_DIR}/{n}' for n in sorted(others))}; --json prints them)")
    return "\n".join(lines)
