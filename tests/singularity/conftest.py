"""Fixtures of the Singularity tests: a real Apptainer (the harness), the local site's SIF, the local Slurm.

The harness (``scripts/apptainer-harness.sh``) runs Apptainer 1.4.5 from Debian sid in a debootstrapped root,
cached under ``.cache/apptainer/``. Under ``make test`` and ``make test-singularity`` (``HPCAI_TEST_SINGULARITY=1``)
the harness, the local Docker image and the SIF are made when missing or stale, and a failure to make any of them
fails the tests, loudly. The Docker engine is the session's one (``scripts/dockerd.sh start`` finds the engine the
image-build tests started), so the local image those tests built is converted, not built again. A bare ``pytest``
without that variable skips these tests and says how to make what is missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HARNESS = REPO / "scripts" / "apptainer-harness.sh"
DOCKERD = REPO / "scripts" / "dockerd.sh"
HPCAI = [sys.executable, "-m", "hpcai_tf"]
REQUIRED = os.environ.get("HPCAI_TEST_SINGULARITY") == "1"
"""Set by ``make test`` and ``make test-singularity``: build what is missing, and fail (never skip) when it cannot."""
MAKE_IT = "run `make test-singularity`, which builds it"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "singularity: needs the Apptainer harness (scripts/apptainer-harness.sh) and the local SIF"
    )


def unavailable(reason: str) -> None:
    """Skip with ``reason``; under ``HPCAI_TEST_SINGULARITY=1`` fail with it instead."""
    if REQUIRED:
        pytest.fail(f"HPCAI_TEST_SINGULARITY=1: {reason}", pytrace=False)
    pytest.skip(reason)


def run(argv: list[str], *, env: dict[str, str] | None = None, cwd: Path = REPO, timeout: float = 600):
    """Run ``argv`` with output captured as text; never raises on a non-zero exit."""
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout, check=False
    )


@pytest.fixture(scope="session")
def sh():
    """The ``run`` helper, as a fixture: ``sh([argv...], env=..., cwd=..., timeout=...)``."""
    return run


@dataclass(frozen=True)
class Harness:
    """The prepared Apptainer: its cache, the directory of its ``apptainer``/``singularity`` wrappers, its version."""

    cache: Path
    version: str
    prepare_seconds: float

    @property
    def bin_dir(self) -> Path:
        return self.cache / "bin"

    def env(self, **extra: str) -> dict[str, str]:
        """The caller's environment with the wrappers first on PATH (and Open MPI's consent to run as root)."""
        env = {**os.environ, "PATH": f"{self.bin_dir}:{os.environ.get('PATH', '')}"}
        if os.geteuid() == 0:
            env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
        env.update(extra)
        return env

    def labels(self, sif: Path) -> dict[str, str]:
        """``apptainer inspect --json`` labels of ``sif``."""
        result = run(["apptainer", "inspect", "--json", sif], env=self.env())
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)["data"]["attributes"]["labels"]


@pytest.fixture(scope="session")
def harness() -> Harness:
    """The cached Apptainer harness; prepared here only under ``HPCAI_TEST_SINGULARITY=1``."""
    status = run([HARNESS, "status"])
    seconds = 0.0
    if status.returncode != 0:
        if not REQUIRED:
            pytest.skip(f"{status.stdout.strip() or status.stderr.strip()} (or {MAKE_IT})")
        start = time.monotonic()
        prepared = run([HARNESS, "prepare"], timeout=1200)
        seconds = time.monotonic() - start
        if prepared.returncode != 0:
            pytest.fail(f"scripts/apptainer-harness.sh prepare failed:\n{prepared.stdout}{prepared.stderr}", False)
        print(f"\napptainer harness prepared in {seconds:.0f} s: {prepared.stdout.strip().splitlines()[-1]}")
    else:
        run([HARNESS, "prepare"])  # cached: rewrites the wrappers only
    cache = Path(os.environ.get("HPCAI_APPTAINER_CACHE", REPO / ".cache" / "apptainer"))
    version = (cache / "VERSION").read_text().splitlines()[0]
    return Harness(cache=cache, version=version, prepare_seconds=seconds)


def _answers(host: str) -> bool:
    import docker

    try:
        docker.DockerClient(base_url=host, timeout=10).ping()
    except Exception:  # the SDK raises requests, urllib3 and docker errors alike
        return False
    return True


@pytest.fixture(scope="session")
def docker_host() -> Iterator[str]:
    """A Docker engine: ``$DOCKER_HOST``, else the kit's own (``scripts/dockerd.sh``, started here if required)."""
    own = f"unix://{REPO / '.cache' / 'docker' / 'docker.sock'}"
    for host in (os.environ.get("DOCKER_HOST"), own):
        if host and _answers(host):
            yield host
            return
    if not REQUIRED:
        pytest.skip(f"no Docker engine answers at $DOCKER_HOST or {own}: `scripts/dockerd.sh start` (or {MAKE_IT})")
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    started = run([DOCKERD, "start"], env=env, timeout=120)
    if started.returncode != 0:
        pytest.fail(f"scripts/dockerd.sh start failed: {started.stderr.strip()}", False)
    try:
        yield started.stdout.strip().removeprefix("export DOCKER_HOST=")
    finally:
        run([DOCKERD, "stop"], timeout=120)  # stops the daemon by the PID in .cache/docker/dockerd.pid


SQUASHFS_COMPRESSORS = {1: "gzip", 2: "lzma", 3: "lzo", 4: "xz", 5: "lz4", 6: "zstd"}
"""squashfs's compressor ids (the superblock's 16-bit field at byte 20, after the magic ``hsqs``)."""


def squashfs_compression(sif: Path) -> str:
    """The compressor of the squashfs partition in ``sif``, read from its superblock (in the SIF's first MiB)."""
    with sif.open("rb") as handle:
        head = handle.read(1 << 20)
    at = head.find(b"hsqs")
    assert at >= 0, f"{sif}: no squashfs superblock in its first MiB"
    ident = int.from_bytes(head[at + 20 : at + 22], "little")
    return SQUASHFS_COMPRESSORS.get(ident, f"unknown id {ident}")


@dataclass(frozen=True)
class LocalSif:
    """The local site's SIF, converted from its Docker image, and how this session got it."""

    path: Path
    docker_tag: str
    build_output: str
    build_seconds: float | None
    """None when a current SIF was already there (same kit source as the Docker image)."""
    compression: str = ""
    """The compressor its squashfs superblock names (:func:`squashfs_compression`)."""


@pytest.fixture(scope="session")
def local_sif(harness: Harness, request: pytest.FixtureRequest) -> LocalSif:
    """``hpcai build --site local --runtime singularity``, or the SIF already built from the same Docker image.

    ``HPCAI_TEST_SIF=PATH`` tests that SIF as it is instead (one built earlier, or copied from elsewhere).
    """
    if os.environ.get("HPCAI_TEST_SIF"):
        given = Path(os.environ["HPCAI_TEST_SIF"]).resolve()
        if not given.is_file():
            pytest.fail(f"HPCAI_TEST_SIF: no such file {given}", False)
        return LocalSif(path=given, docker_tag="", build_output="", build_seconds=None)
    from hpcai_tf.catalog import load_site
    from hpcai_tf.image.build import KIT_SOURCE_LABEL
    from hpcai_tf.image.context import kit_digest
    from hpcai_tf.recipes.render import image_tag, sif_path

    docker_host = request.getfixturevalue("docker_host")
    site = load_site("local")
    tag = image_tag(site)
    env = harness.env(DOCKER_HOST=docker_host)
    inspected = run(["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", tag], env=env)
    labels = json.loads(inspected.stdout) if inspected.returncode == 0 else None
    current = bool(labels) and labels.get(KIT_SOURCE_LABEL) == kit_digest()
    if not current:
        why = f"no Docker image {tag}" if labels is None else f"the Docker image {tag} holds older kit source"
        if not REQUIRED:
            pytest.skip(f"{why} than this checkout: `make image SITE=local` (or {MAKE_IT})")
        built = run([*HPCAI, "build", "--site", "local", "--quiet"], env=env, timeout=3600)
        if built.returncode != 0:
            pytest.fail(f"hpcai build --site local failed:\n{built.stdout[-3000:]}{built.stderr}", False)
        labels = json.loads(
            run(["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", tag], env=env).stdout
        )
    path = sif_path(site)
    current = path.is_file() and harness.labels(path).get(KIT_SOURCE_LABEL) == labels[KIT_SOURCE_LABEL]
    if current and squashfs_compression(path) == "zstd":
        return LocalSif(path=path, docker_tag=tag, build_output="", build_seconds=None, compression="zstd")
    start = time.monotonic()
    # zstd: the same size as the default gzip for about a quarter of mksquashfs's CPU time (this kernel mounts it).
    built = run(
        [*HPCAI, "build", "--site", "local", "--runtime", "singularity", "--sif-compression", "zstd"],
        env=env,
        timeout=3600,
    )
    seconds = time.monotonic() - start
    assert built.returncode == 0, f"hpcai build --runtime singularity failed:\n{built.stdout[-4000:]}{built.stderr}"
    print(f"\nbuilt {path.name} in {seconds:.0f} s")
    return LocalSif(
        path=path,
        docker_tag=tag,
        build_output=built.stdout,
        build_seconds=seconds,
        compression=squashfs_compression(path),
    )
