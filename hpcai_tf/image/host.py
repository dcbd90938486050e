"""Whether a host can build a site's image: one decision for ``hpcai build`` and the generated site pages.

A :class:`BuildHost` says what a host offers (its architecture, the architectures it emulates, the base
images its engine holds, whether it reaches the base's registry); :func:`build_blockers` says what stops a
site's build there. ``hpcai build`` asks about this machine (:func:`this_host`) before it needs an engine,
then again with the engine's answers; ``hpcai docs`` asks about the kit's reference machine
(:data:`REFERENCE_HOST`) and writes the answer into ``docs/sites/<id>.md``. How a debootstrap base is made
(debootstrap installed, root) is checked where it is made, in :mod:`hpcai_tf.image.base`.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hpcai_tf.catalog import Site
from hpcai_tf.errors import KitError

if TYPE_CHECKING:
    import docker

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
"""Where qemu-user emulators register (``qemu-<arch>``); a registered arch builds under emulation."""


@dataclass(frozen=True)
class Blocker:
    """One reason a host cannot build a site's image, and what would let the build go ahead."""

    reason: str
    """Said of the site: ``builds a ppc64le image and this host is x86_64 with no ppc64le emulation``."""
    remedy: str


@dataclass(frozen=True)
class BuildHost:
    """What a host offers a site's image build."""

    name: str
    """How the reasons name the host: ``this host``, ``the reference machine``."""
    arch: str
    emulated: frozenset[str] = frozenset()
    """Foreign architectures registered with binfmt_misc (qemu-user)."""
    base_images: frozenset[str] | None = None
    """Base image refs the engine holds; ``None`` when no engine was asked (the base is then not judged)."""
    registry_error: str | None = None
    """Why the base's registry cannot be reached, or ``None`` when it can (or was not asked)."""


REFERENCE_HOST = BuildHost(
    name="the reference machine",
    arch="x86_64",
    base_images=frozenset(),
    registry_error="no registry is reachable there",
)
"""The kit's reference machine (x86_64 Debian 12, Docker, root, debootstrap, no registry, no GPU), before any
base image is made: what the generated site pages judge."""


def build_blockers(site: Site, host: BuildHost) -> list[Blocker]:
    """What stops ``host`` from building the site's image; empty when nothing does."""
    blockers = []
    if site.arch != host.arch and site.arch not in host.emulated:
        blockers.append(
            Blocker(
                f"builds a {site.arch} image and {host.name} is {host.arch} with no {site.arch} emulation",
                f"build it on a {site.arch} machine (a login or build node of the site), or register "
                f"qemu-user-static for {site.arch} with binfmt_misc",
            )
        )
    base = site.base
    if host.base_images is not None and base.ref not in host.base_images:
        if base.origin == "registry" and host.registry_error:
            blockers.append(
                Blocker(
                    f"builds FROM {base.ref}, which is not in the Docker engine and cannot be pulled "
                    f"({host.registry_error})",
                    "build where its registry is reachable, or `docker load` the base image into this engine first",
                )
            )
    return blockers


def refuse_blocked(site: Site, host: BuildHost) -> None:
    """A one-line :class:`KitError` naming what stops the build on ``host``; nothing when nothing does."""
    blockers = build_blockers(site, host)
    if blockers:
        reasons = "; and it ".join(b.reason for b in blockers)
        raise KitError(f"site {site.id} {reasons}: {'; '.join(b.remedy for b in blockers)}")


def registry_error(client: docker.DockerClient, ref: str) -> str | None:
    """Why the engine cannot reach the registry of ``ref`` (its manifest is asked for), or ``None``."""
    import docker

    try:
        client.api.inspect_distribution(ref)
    except docker.errors.APIError as err:
        return str(err.explanation or err).splitlines()[0][:200]
    return None


def this_host(site: Site | None = None, client: docker.DockerClient | None = None) -> BuildHost:
    """This machine as a build host; given an engine ``client``, also whether it holds or can pull the site's base."""
    from hpcai_tf.image.docker_engine import find_image

    emulated = frozenset(p.name.removeprefix("qemu-") for p in BINFMT_DIR.glob("qemu-*") if _enabled(p))
    host = BuildHost(name="this host", arch=platform.machine(), emulated=emulated)
    if site is None or client is None:
        return host
    ref = site.base.ref
    if find_image(client, ref) is not None:
        return BuildHost(host.name, host.arch, emulated, base_images=frozenset({ref}))
    reach = registry_error(client, ref) if site.base.origin == "registry" else None
    return BuildHost(host.name, host.arch, emulated, base_images=frozenset(), registry_error=reach)


def _enabled(entry: Path) -> bool:
    """A binfmt_misc entry that is registered and enabled (its first line says ``enabled``)."""
    try:
        return entry.read_text().startswith("enabled")
    except OSError:
        return False
