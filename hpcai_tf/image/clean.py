"""``hpcai clean``: remove what the kit created, and nothing else.

In the Docker engine: containers the kit left (``org.hpcai.verify``/``org.hpcai.inspect`` labels), the
site images (``org.hpcai.site``, which every layer of a site build carries from its second instruction,
so failed builds' cache layers go too), images built from recipe directories (``org.hpcai.recipe-dir``)
with their cache layers, and the debootstrap base images (``org.hpcai.base``) unless kept; an image
tagged only outside the kit's names (``hpcai/``, ``hpcai-recipe/``, the catalog's base refs) is someone
else's even when it inherited the kit's labels, and stays. On disk:
``build/{context,roots,logs,images,export}``. The engine itself, ``.venv`` and ``.cache`` are left to
``make clean``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable

from hpcai_tf.image.base import remove_root
from hpcai_tf.image.docker_engine import docker_host, engine_answers
from hpcai_tf.paths import BUILD_DIR, CONTEXT_DIR, EXPORT_DIR, IMAGES_DIR, LOGS_DIR, ROOTS_DIR
from hpcai_tf.recipes.image_labels import BASE_LABEL, CONTAINER_LABELS, RECIPE_LABEL, SITE_LABEL

KIT_REPOS = ("hpcai/", "hpcai-recipe/")
BUILD_DIRS = (CONTEXT_DIR, ROOTS_DIR, LOGS_DIR, IMAGES_DIR, EXPORT_DIR)


def kit_tag(tag: str, base_refs: set[str]) -> bool:
    """True for the tags the kit gives: ``hpcai/...``, ``hpcai-recipe/...`` and the catalog's base refs."""
    return tag.startswith(KIT_REPOS) or tag in base_refs


def kit_images(client, keep_base: bool) -> list[tuple[object, list[str]]]:
    """The kit's images in the engine with the kit's tags on each; tagged ones first, bases last.

    An image counts when it carries a kit label and is untagged (a cache layer, a superseded build) or
    tagged by the kit. Images built FROM a kit image inherit its labels: one tagged only by someone else
    is theirs, and stays. With ``keep_base``, the tagged base images stay.
    """
    from hpcai_tf.catalog import load_catalog

    base_refs = {site.base.ref for site in load_catalog()}
    found: dict[str, object] = {}
    for label in (SITE_LABEL, RECIPE_LABEL, BASE_LABEL):
        for image in client.images.list(all=True, filters={"label": label}):
            found[image.id] = image
    chosen = []
    for image in found.values():
        ours = [tag for tag in image.tags if kit_tag(tag, base_refs)]
        if image.tags and not ours:
            continue
        labels = set(image.labels or {})
        is_base = bool(image.tags) and BASE_LABEL in labels and not ({SITE_LABEL, RECIPE_LABEL} & labels)
        if is_base and keep_base:
            continue
        chosen.append((image, ours))
    return sorted(
        chosen, key=lambda item: (not item[0].tags, BASE_LABEL in item[0].labels and SITE_LABEL not in item[0].labels)
    )


def _remove_images(client, images: list[tuple[object, list[str]]], out: Callable[[str], None]) -> int:
    """Remove images, children before parents; an image also tagged by someone else only loses the kit's tags."""
    import docker

    removed = 0
    pending = []
    for image, ours in images:
        others = [tag for tag in image.tags if tag not in ours]
        if others:
            for tag in ours:
                client.images.remove(tag)  # only untags: the image keeps its other names
                out(f"untagged {tag} (the image stays as {', '.join(others)})")
        else:
            pending.append(image)
    layers = 0
    for _ in range(len(pending) + 1):
        if not pending:
            break
        left = []
        for image in pending:
            try:
                client.images.remove(image.id, force=True)
                if image.tags:
                    out(f"removed image {', '.join(image.tags)}")
                else:
                    layers += 1
                removed += 1
            except docker.errors.ImageNotFound:
                pass  # pruned with a child removed before it
            except docker.errors.APIError:
                left.append(image)  # a child of it is still there
        if len(left) == len(pending):
            for image in left:
                out(f"kept image {image.short_id}: still in use ({', '.join(image.tags) or 'untagged'})")
            break
        pending = left
    if layers:
        out(f"removed {layers} untagged build-cache layers of the kit's builds")
    return removed


def clean_engine(keep_base: bool, dry_run: bool, out: Callable[[str], None] = print) -> None:
    """Remove the kit's containers and images from the engine at DOCKER_HOST."""
    from hpcai_tf.image.docker_engine import docker_client

    client = docker_client()
    containers = {
        c.id: c for label in CONTAINER_LABELS for c in client.containers.list(all=True, filters={"label": label})
    }
    images = kit_images(client, keep_base)
    if dry_run:
        for container in containers.values():
            out(f"would remove container {container.short_id}")
        for image, ours in images:
            others = [tag for tag in image.tags if tag not in ours]
            if others:
                out(f"would untag {', '.join(ours)} (the image stays as {', '.join(others)})")
            elif image.tags:
                out(f"would remove image {', '.join(ours)}")
        layers = sum(1 for image, _ in images if not image.tags)
        if layers:
            out(f"would remove {layers} untagged build-cache layers of the kit's builds")
        return
    for container in containers.values():
        container.remove(force=True)
        out(f"removed container {container.short_id}")
    _remove_images(client, images, out)


def clean_dirs(dry_run: bool, out: Callable[[str], None] = print) -> None:
    """Remove the kit's directories under build/ (debootstrap roots unmounted first)."""
    for path in BUILD_DIRS:
        if not path.exists():
            continue
        if dry_run:
            out(f"would remove {path}")
            continue
        if path == ROOTS_DIR:
            for root in path.iterdir():
                remove_root(root)
        shutil.rmtree(path, ignore_errors=True)
        out(f"removed {path}")
    build_dir = BUILD_DIR
    if not dry_run and build_dir.is_dir() and not any(build_dir.iterdir()):
        build_dir.rmdir()


def clean(keep_base: bool = False, dry_run: bool = False, out: Callable[[str], None] = print) -> None:
    """Remove the kit's images (when an engine answers) and its build directories."""
    if engine_answers():
        clean_engine(keep_base, dry_run, out)
    else:
        out(f"no Docker engine answers at {docker_host()}: no images to remove there")
    clean_dirs(dry_run, out)
