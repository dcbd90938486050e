"""A site's base image: made on this host with debootstrap (origin ``debootstrap``) or pulled (``registry``).

The catalog decides which: ``base.origin``, ``base.suite`` and ``base.mirror`` of the site file. A
debootstrap base is ``debootstrap --variant=minbase SUITE ROOT MIRROR`` followed by a ``docker import``
of ROOT, labelled so that ``hpcai clean`` finds it; it is cached by name, so a rebuild never repeats it.
The root lives under ``build/roots/`` only while it is imported, and is removed even on failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from hpcai_tf import __version__
from hpcai_tf.catalog import Site
from hpcai_tf.errors import KitError
from hpcai_tf.image.docker_engine import find_image, human_size
from hpcai_tf.paths import ROOTS_DIR
from hpcai_tf.recipes.image_labels import BASE_LABEL

if TYPE_CHECKING:
    import docker


def base_image_changes(site: Site) -> list[str]:
    """Dockerfile instructions ``docker import`` applies to the root: ``org.hpcai.base*`` labels, a shell.

    No generic OCI labels (title, version): an image built FROM the base sets its own, and Apptainer keeps a
    base's label over the definition file's ``%labels`` when both name the same key.
    """
    base = site.base
    return [
        f'LABEL {BASE_LABEL}="{base.suite}-minbase" {BASE_LABEL}.mirror="{base.mirror}" '
        f'{BASE_LABEL}.ref="{base.ref}" {BASE_LABEL}.made-by="hpcai {__version__}"',
        'CMD ["/bin/bash"]',
    ]


def split_ref(ref: str) -> tuple[str, str]:
    """``repo:tag`` -> (repo, tag); a ref without a tag is an error (the kit never means 'latest')."""
    repo, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        raise KitError(f"image reference {ref!r}: expected REPOSITORY:TAG with an exact tag")
    return repo, tag


def _unmount_below(root: Path) -> None:
    """Unmount whatever an interrupted debootstrap left mounted inside ``root`` (proc, sysfs, dev binds)."""
    prefix = str(root.resolve()) + "/"
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for point in sorted((m for m in mounts if m.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "-l", point], check=False)


def remove_root(root: Path) -> None:
    """Remove a debootstrap root, never crossing into something still mounted below it."""
    if root.exists():
        _unmount_below(root)
        shutil.rmtree(root, ignore_errors=True)


def _run_debootstrap(site: Site, root: Path, out: Callable[[str], None]) -> None:
    base = site.base
    argv = ["debootstrap", "--variant=minbase", str(base.suite), str(root), str(base.mirror)]
    out(f"$ {' '.join(argv)}")
    tail: deque[str] = deque(maxlen=15)
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            out(line.rstrip("\n"))
            tail.append(line.rstrip("\n"))
    if proc.returncode != 0:
        last = next((line for line in reversed(tail) if line.strip()), "no output")
        raise KitError(f"debootstrap of {base.suite} from {base.mirror} failed (exit {proc.returncode}): {last}")


def _import_root(client: docker.DockerClient, site: Site, root: Path, ref: str) -> str:
    """``tar -C root -c . | docker import``, tagged only once tar has succeeded; returns the image id."""
    repo, tag = split_ref(ref)
    tar = subprocess.Popen(
        ["tar", "--numeric-owner", "--xattrs", "-C", str(root), "-cf", "-", "."],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        result = client.api.import_image_from_stream(tar.stdout, changes=base_image_changes(site))
    finally:
        assert tar.stdout is not None and tar.stderr is not None
        tar.stdout.close()
        tar_err = tar.stderr.read().decode(errors="replace").strip()
        tar.wait()
    image_id = json.loads(result.strip().splitlines()[-1]).get("status", "")
    if tar.returncode != 0 or not image_id.startswith("sha256:"):
        if image_id.startswith("sha256:"):
            client.images.remove(image_id, force=True)
        raise KitError(f"import of the {site.base.suite} root failed: {tar_err or result.strip()[:200]}")
    client.api.tag(image_id, repo, tag)
    return image_id


def make_base_image(
    site: Site, client: docker.DockerClient, ref: str | None = None, out: Callable[[str], None] = print
) -> str:
    """debootstrap the site's suite and import it as ``ref`` (default: the site's ``base.ref``); the image id."""
    if site.base.origin != "debootstrap":
        raise KitError(f"site {site.id}: base.origin is {site.base.origin!r}; only 'debootstrap' bases are made here")
    if not shutil.which("debootstrap"):
        raise KitError(
            "debootstrap is not installed: `apt-get install debootstrap` (scripts/install-system.sh installs it)"
        )
    if os.geteuid() != 0:
        raise KitError("debootstrap needs root (it creates device nodes and chroots): run `sudo hpcai base`")
    ref = ref or site.base.ref
    split_ref(ref)
    ROOTS_DIR.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=f"{site.base.suite}-", dir=ROOTS_DIR))
    try:
        _run_debootstrap(site, root, out)
        out(f"importing {root} as {ref}")
        image_id = _import_root(client, site, root, ref)
    finally:
        remove_root(root)
    return image_id


def ensure_base_image(site: Site, client: docker.DockerClient, out: Callable[[str], None] = print) -> str:
    """The site's base image id: found in the engine, else made (debootstrap) or pulled (registry)."""
    ref = site.base.ref
    image = find_image(client, ref)
    if image is not None:
        out(f"base image {ref}: present ({image.short_id}, {human_size(image.attrs.get('Size', 0))})")
        return image.id
    if site.base.origin == "debootstrap":
        out(f"base image {ref}: not in the engine; making it with debootstrap (about a minute)")
        return make_base_image(site, client, out=out)
    return pull_base_image(site, client, out)


def pull_base_image(site: Site, client: docker.DockerClient, out: Callable[[str], None] = print) -> str:
    """Pull a registry base image; a one-line error when the registry cannot be reached."""
    import docker

    ref = site.base.ref
    repo, tag = split_ref(ref)
    out(f"base image {ref}: not in the engine; pulling it from its registry")
    try:
        image = client.images.pull(repo, tag=tag)
    except docker.errors.APIError as err:
        reason = str(err.explanation or err).splitlines()[0][:200]
        raise KitError(
            f"site {site.id} builds FROM {ref}, which is not in the Docker engine and cannot be pulled ({reason}): "
            f"build where its registry is reachable, or `docker load` the base image into this engine first"
        ) from None
    return image.id
