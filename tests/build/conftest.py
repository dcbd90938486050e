"""Fixtures of the image-build tests: one Docker engine per session, the local base image and the local image.

The engine is the one answering at ``$DOCKER_HOST``, Docker's default socket, or the socket of any dockerd
already running on the machine (never two daemons at once). When none answers, the session starts a
private ``dockerd`` with ``scripts/dockerd.sh`` (data root in a temp dir), stops it by its PID at the end,
also when tests fail, and removes its data. Tests that would remove
images the session did not make (``hpcai clean``) run only on that private engine.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERD = REPO / "scripts" / "dockerd.sh"
HPCAI = [sys.executable, "-m", "hpcai_tf"]


@dataclass(frozen=True)
class Engine:
    """The session's Docker engine: where it answers and whether this session started it."""

    host: str
    private: bool

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of an ``hpcai`` subprocess that talks to this engine."""
        return {**os.environ, "DOCKER_HOST": self.host, **extra}

    def client(self):
        import docker

        return docker.DockerClient(base_url=self.host, timeout=600)


def run_hpcai(
    engine: Engine | None, *args: str, root: Path | None = None, timeout: float = 600, **env: str
) -> subprocess.CompletedProcess:
    """``hpcai ARGS`` in a subprocess against ``engine``, with ``HPCAI_ROOT=root``; output captured as text."""
    full_env = engine.env(**env) if engine else {**os.environ, **env}
    if root is not None and "HPCAI_ROOT" not in env:
        full_env["HPCAI_ROOT"] = str(root)
    return subprocess.run(
        [*HPCAI, *args], capture_output=True, text=True, env=full_env, cwd=REPO, timeout=timeout, check=False
    )


def snapshot_kit(dest: Path, source: Path = REPO) -> Path:
    """Copy what the build reads from a checkout (catalog, templates, requirements, kit source) to ``dest``.

    The session builds from this snapshot (``HPCAI_ROOT``), so edits to the checkout while it runs do not
    change its recipes or kit midway; ``.cache/wheels`` is linked, not copied.
    """
    for name in ("containers", "requirements", "hpcai_tf"):
        shutil.copytree(source / name, dest / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(source / name, dest / name)
    wheels = source / ".cache" / "wheels"
    (dest / ".cache").mkdir()
    if wheels.exists():
        (dest / ".cache" / "wheels").symlink_to(wheels.resolve())
    return dest


def _answers(host: str) -> bool:
    import docker

    try:
        docker.DockerClient(base_url=host, timeout=10).ping()
    except Exception:
        return False
    return True


def running_dockerd_hosts() -> list[str]:
    """The ``-H``/``--host`` sockets of every dockerd running on this machine (never start a second one)."""
    hosts = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if not argv or Path(argv[0]).name != "dockerd":
            continue
        for i, arg in enumerate(argv):
            if arg in ("-H", "--host") and i + 1 < len(argv):
                hosts.append(argv[i + 1])
            elif arg.startswith(("-H=", "--host=")):
                hosts.append(arg.split("=", 1)[1])
        hosts.append("unix:///var/run/docker.sock")  # a dockerd without -H listens there
    return hosts


def _pid_of(run_dir: Path) -> int | None:
    try:
        return int((run_dir / "dockerd.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _stop(run_dir: Path, pid: int | None) -> None:
    """Stop the private daemon by its PID: the script's TERM and wait, then KILL if it is still there."""
    subprocess.run([str(DOCKERD), "stop", str(run_dir)], check=False, timeout=90)
    if pid is None:
        return
    for _ in range(20):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def docker_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """The engine at DOCKER_HOST when one answers (or any dockerd running here), else a private dockerd."""
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    for candidate in [host, *running_dockerd_hosts()]:
        if _answers(candidate):
            yield Engine(host=candidate, private=False)
            return
    if not shutil.which("dockerd"):
        pytest.skip("dockerd is not installed (scripts/install-system.sh installs Debian's docker.io)")
    if os.geteuid() != 0:
        pytest.skip("starting a private dockerd needs root")
    run_dir = tmp_path_factory.mktemp("dockerd", numbered=True)
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    started = subprocess.run(
        [str(DOCKERD), "start", str(run_dir)], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    pid = _pid_of(run_dir)
    try:
        assert started.returncode == 0, f"dockerd.sh start failed: {started.stderr.strip()}"
        host = started.stdout.strip().removeprefix("export DOCKER_HOST=")
        assert _answers(host), f"the private dockerd does not answer at {host}"
        yield Engine(host=host, private=True)
    finally:
        _stop(run_dir, pid or _pid_of(run_dir))
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def kit_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's snapshot of the checkout (see :func:`snapshot_kit`)."""
    return snapshot_kit(tmp_path_factory.mktemp("kit"))


@dataclass(frozen=True)
class BuiltImage:
    """The session's local image: its tag, the kit source hash and the recipe files staged for it."""

    tag: str
    kit_digest: str
    recipe: dict[str, str]


@pytest.fixture(scope="session")
def cli(docker_engine: Engine, kit_root: Path):
    """``cli(*args, timeout=..., **env)``: ``hpcai ARGS`` against the session's engine and kit snapshot."""

    def run(*args: str, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
        return run_hpcai(docker_engine, *args, root=kit_root, timeout=timeout, **env)

    return run


@pytest.fixture(scope="session")
def base_image(cli, kit_root: Path) -> str:
    """The local site's debootstrap base image, made once (``hpcai base --site local``)."""
    result = cli("base", "--site", "local", timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def local_image(cli, base_image: str, kit_root: Path) -> BuiltImage:
    """The local site's image, built through the CLI as a user would (``hpcai build --site local``)."""
    from hpcai_tf.image.context import kit_digest

    result = cli("build", "--site", "local", timeout=3000)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr
    built = re.match(r"^built (hpcai/local:[0-9a-f]{12}) \(", result.stdout.strip().splitlines()[-1])
    assert built, result.stdout[-2000:]
    staged = kit_root / "build" / "context" / "local"
    recipe = {path.name: path.read_text() for path in (staged / "recipe").iterdir()}
    return BuiltImage(tag=built[1], kit_digest=kit_digest(staged / "kit"), recipe=recipe)


@pytest.fixture(scope="session")
def run_cli():
    """:func:`run_hpcai`: ``run_cli(engine, *args, root=None, timeout=..., **env)``."""
    return run_hpcai


GPU_IMAGE = "gpu_image"
"""The marker of the GPU image's tests (tests/build/test_gpu_image.py): selected only by ``-m gpu_image`` (``make
test-gpu-image``); every other run, ``make test`` included, deselects them (no skip: they are not collected)."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``hpcai clean`` removes every kit image: its test runs after all the others. The GPU image's tests are
    deselected unless the marker expression names them."""
    if GPU_IMAGE not in (config.getoption("markexpr") or ""):
        deselected = [item for item in items if item.get_closest_marker(GPU_IMAGE)]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = [item for item in items if not item.get_closest_marker(GPU_IMAGE)]
    last = [item for item in items if item.get_closest_marker("removes_kit_images")]
    for item in last:
        items.remove(item)
    items.extend(last)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "removes_kit_images: runs last; removes every image the kit made")
    config.addinivalue_line(
        "markers", f"{GPU_IMAGE}: the delta GPU image's build and verify; run only by `make test-gpu-image`"
    )
