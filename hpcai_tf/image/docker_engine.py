"""The Docker engine the kit builds and runs images with, reached through the Docker SDK (``docker`` on PyPI).

The engine is whatever ``DOCKER_HOST`` points at; without it, the kit's own daemon when its socket exists
(``scripts/dockerd.sh start`` runs one of Debian's ``docker.io`` with its data under ``.cache/docker/``),
else Docker's default ``unix:///var/run/docker.sock``. When none answers, the error says how to get one.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from hpcai_tf.errors import KitError
from hpcai_tf.paths import CACHE_DIR

if TYPE_CHECKING:
    import docker

DEFAULT_HOST = "unix:///var/run/docker.sock"
KIT_SOCKET = CACHE_DIR / "docker" / "docker.sock"
"""The socket of the daemon ``scripts/dockerd.sh start`` runs (its default DIR)."""
HOW_TO_START = (
    "start one with `scripts/dockerd.sh start` (Debian package docker.io, installed by scripts/install-system.sh), "
    "or point DOCKER_HOST at a running engine"
)


def docker_host() -> str:
    """Where the kit looks for the engine: ``$DOCKER_HOST``, the kit's own daemon, or Docker's default socket."""
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"]
    if KIT_SOCKET.is_socket():
        return f"unix://{KIT_SOCKET}"
    return DEFAULT_HOST


def docker_client(timeout: int = 600) -> docker.DockerClient:
    """A client of the engine at :func:`docker_host`, checked to answer; else a one-line :class:`KitError`."""
    try:
        import docker
    except ImportError:
        raise KitError("the Docker SDK for Python is missing: `pip install docker==7.2.0` (or `make setup`)") from None
    try:
        client = docker.DockerClient(base_url=docker_host(), timeout=timeout, version="auto")
        client.ping()
    except Exception as err:  # the SDK raises requests, urllib3 and docker errors alike
        reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        raise KitError(f"no Docker engine answers at {docker_host()} ({reason}); {HOW_TO_START}") from None
    return client


def engine_answers() -> bool:
    """True when a Docker engine answers at :func:`docker_host`."""
    try:
        docker_client(timeout=10).close()
    except KitError:
        return False
    return True


def find_image(client: docker.DockerClient, ref: str):
    """The image named ``ref`` (a tag or an id) in the engine, or ``None``."""
    import docker

    try:
        return client.images.get(ref)
    except docker.errors.ImageNotFound:
        return None


def human_size(size: float) -> str:
    """Bytes as a short decimal figure: ``3.1 GB``."""
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"  # pragma: no cover


ENGINE_ERROR_MODULES = ("docker.", "requests.", "urllib3.")
"""Where the exceptions of a failing engine come from: the Docker SDK and the HTTP layers under it."""


def engine_error(err: BaseException) -> str | None:
    """One line for an exception the engine raised mid-command (engine gone, an API error), else ``None``.

    Commands check that the engine answers before they start (:func:`docker_client`); this covers what fails after.
    """
    if not type(err).__module__.startswith(ENGINE_ERROR_MODULES):
        return None
    explanation = getattr(err, "explanation", None) or str(err) or type(err).__name__
    detail = " ".join(str(explanation).split())[:300]
    return f"the Docker engine at {docker_host()} failed mid-command ({type(err).__name__}: {detail})"
