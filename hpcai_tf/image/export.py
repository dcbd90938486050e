"""``hpcai export``: a site's image as one file to copy to a cluster, with its sha256 beside it.

Docker images are written with ``docker save`` (the tag included, so ``docker load`` or
``apptainer build X.sif docker-archive://FILE`` on the cluster side restores it); Singularity images are
the SIF itself. The file is written under a temporary name and renamed when complete, and the
``<file>.sha256`` beside it is in ``sha256sum -c`` format.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from hpcai_tf.catalog import Site
from hpcai_tf.errors import KitError
from hpcai_tf.files import write_atomic
from hpcai_tf.recipes.render import image_tag

CHUNK = 4 << 20


def write_checksum(path: Path, digest: str) -> Path:
    """Write ``<path>.sha256`` (``sha256sum`` format) beside ``path``."""
    checksum = path.with_name(path.name + ".sha256")
    write_atomic(checksum, f"{digest}  {path.name}\n")
    return checksum


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _export_docker(site: Site, dest: Path) -> str:
    from hpcai_tf.image.docker_engine import docker_client, find_image

    tag = image_tag(site)
    image = find_image(docker_client(), tag)
    if image is None:
        raise KitError(f"no image {tag} in the Docker engine: build it with `hpcai build --site {site.id}`")
    digest = hashlib.sha256()
    tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
    try:
        with tmp.open("wb") as handle:
            for chunk in image.save(chunk_size=CHUNK, named=tag):
                handle.write(chunk)
                digest.update(chunk)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return digest.hexdigest()


def _export_sif(site: Site, dest: Path) -> str:
    from hpcai_tf.recipes.render import sif_path

    sif = sif_path(site)
    if not sif.is_file():
        raise KitError(f"no SIF {sif}: build it with `hpcai build --site {site.id} --runtime singularity`")
    if dest.resolve() != sif.resolve():
        tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
        try:
            shutil.copyfile(sif, tmp)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
    return file_sha256(dest)


def export_image(site: Site, runtime: str, out_dir: Path | None = None) -> tuple[Path, str]:
    """Write the site's image into ``out_dir`` (default build/export/); its path and sha256."""
    from hpcai_tf.image.build import archive_path
    from hpcai_tf.paths import EXPORT_DIR
    from hpcai_tf.recipes.render import sif_path

    out_dir = out_dir or EXPORT_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    if runtime == "docker":
        dest = out_dir / archive_path(site).name
        digest = _export_docker(site, dest)
    else:
        dest = out_dir / sif_path(site).name
        digest = _export_sif(site, dest)
    write_checksum(dest, digest)
    return dest, digest
