"""Builds that cannot or do not finish: one clear line, a non-zero exit, and no image under the final tag."""

from __future__ import annotations

import os
import platform
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hpcai_tf.image.build import recipe_dir_tag

REPO = Path(__file__).resolve().parents[2]


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("hpcai: error:")]


def _recipe(tmp_path: Path, base: str, body: str) -> Path:
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    (recipe / "Dockerfile").write_text(f'FROM {base}\nLABEL org.hpcai.test="{tmp_path.name}"\n{body}')
    return recipe


def test_missing_engine_is_one_line(run_cli, tmp_path):
    """No engine at DOCKER_HOST: one line naming where it looked and how to start one; exit 2."""
    result = run_cli(None, "build", "--site", "local", timeout=120, DOCKER_HOST=f"unix://{tmp_path}/none.sock")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"hpcai: error: no Docker engine answers at unix://{tmp_path}/none.sock (")
    assert "scripts/dockerd.sh start" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_singularity_runtime_is_one_line(run_cli, tmp_path):
    """--runtime singularity with neither apptainer nor singularity on PATH: one line saying how to get one."""
    result = run_cli(None, "build", "--site", "local", "--runtime", "singularity", timeout=120, PATH=str(tmp_path))
    assert result.returncode == 2
    assert _error_lines(result.stderr) == [
        "hpcai: error: neither apptainer nor singularity is on PATH: install Apptainer "
        "(https://apptainer.org/docs/admin/main/installation.html; Debian trixie/sid package `apptainer`), "
        "or use --runtime docker"
    ]


def test_recipe_dir_without_its_recipe_file_is_one_line(run_cli, tmp_path):
    """--recipe DIR --runtime singularity with no Singularity.def in DIR: one line naming what is missing; exit 2."""
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    result = run_cli(None, "build", "--recipe", str(tmp_path), "--runtime", "singularity", timeout=120)
    assert result.returncode == 2
    assert _error_lines(result.stderr) == [f"hpcai: error: --recipe: no Singularity.def in {tmp_path}"]


@pytest.mark.skipif(
    platform.machine() == "ppc64le" or Path("/proc/sys/fs/binfmt_misc/qemu-ppc64le").exists(),
    reason="this host can build ppc64le images",
)
@pytest.mark.parametrize("runtime", ["docker", "singularity"])
def test_foreign_arch_site_validates_then_refuses_in_one_line(run_cli, runtime):
    """`make image SITE=hal` here: the recipe renders, then one line says what the build needs; exit 2."""
    result = run_cli(None, "build", "--site", "hal", "--runtime", runtime, timeout=120)
    assert result.returncode == 2
    assert result.stdout.startswith("site hal: recipe rendered and valid")
    assert _error_lines(result.stderr) == [
        f"hpcai: error: site hal builds a ppc64le image and this host is {platform.machine()} with no ppc64le "
        "emulation: build it on a ppc64le machine (a login or build node of the site), or register "
        "qemu-user-static for ppc64le with binfmt_misc"
    ]


def _registry_resolves() -> bool:
    try:
        socket.getaddrinfo("registry-1.docker.io", 443)
    except OSError:
        return False
    return True


@pytest.mark.docker
@pytest.mark.timeout(300)
@pytest.mark.skipif(_registry_resolves(), reason="Docker Hub is reachable: the test would pull a CUDA image")
def test_registry_base_that_cannot_be_pulled_is_one_line(cli):
    """bridges-ai starts FROM nvidia/cuda: with no registry, one line names the base and what is needed."""
    result = cli("build", "--site", "bridges-ai", timeout=240)
    assert result.returncode == 2
    errors = _error_lines(result.stderr)
    assert len(errors) == 1 and result.stderr.count("\n") == 1, result.stderr
    assert errors[0].startswith(
        "hpcai: error: site bridges-ai builds FROM nvidia/cuda:11.8.0-devel-ubuntu22.04, which is not in the "
        "Docker engine and cannot be pulled ("
    )
    assert "`docker load` the base image" in errors[0]


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_broken_recipe_names_the_failing_step_in_one_line(cli, docker_engine, base_image, tmp_path):
    """A failing RUN: the tail of its output, then one error line with the step's number, title and command."""
    recipe = _recipe(
        tmp_path,
        base_image,
        "# A step that works\nRUN echo fine\n# A step that fails\nRUN echo 'about to fail' && exit 3\n",
    )
    result = cli("build", "--recipe", str(recipe), timeout=600)
    assert result.returncode == 2
    errors = _error_lines(result.stderr)
    assert len(errors) == 1
    assert errors[0].startswith(
        'hpcai: error: image build failed at step 4/5 "A step that fails" '
        "(RUN echo 'about to fail' && exit 3): exited with code 3; full log: "
    )
    assert "  about to fail" in result.stderr  # the tail of the failing step comes before the error line
    assert result.stderr.strip().splitlines()[-1] == errors[0]
    tag = recipe_dir_tag(recipe)
    assert docker_engine.client().images.list(name=tag.split(":")[0]) == []


def _wait_for(stream, text: str, timeout: float) -> str:
    """Read ``stream`` up to a line that is ``text`` itself (what a RUN printed, not the step line quoting it)."""
    seen = []
    deadline = time.monotonic() + timeout
    for line in stream:
        seen.append(line)
        if line.strip() == text:
            return "".join(seen)
        assert time.monotonic() < deadline, "".join(seen)
    raise AssertionError(f"the build ended before printing {text!r}:\n{''.join(seen)}")


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_interrupted_build_leaves_no_image_under_the_final_tag(docker_engine, base_image, kit_root, tmp_path):
    """Ctrl-C while a RUN waits on a sentinel that never comes: exit 130, no tag, no build container left."""
    recipe = _recipe(
        tmp_path,
        base_image,
        "RUN echo 'waiting for the sentinel' && while [ ! -e /tmp/sentinel ]; do sleep 0.2; done\n",
    )
    tag = recipe_dir_tag(recipe)
    client = docker_engine.client()
    before = {c.id for c in client.containers.list(all=True)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hpcai_tf", "build", "--recipe", str(recipe)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=docker_engine.env(HPCAI_ROOT=str(kit_root)),
        cwd=REPO,
        # A run started in the background by a non-interactive shell inherits SIGINT ignored, and Python then installs
        # no KeyboardInterrupt handler: restore the default so that the interrupt below is a Ctrl-C.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        _wait_for(proc.stdout, "waiting for the sentinel", timeout=600)
        os.kill(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "build interrupted at step 3/4; nothing was tagged" in stderr
    assert stderr.strip().splitlines()[-1] == "hpcai: interrupted"
    assert client.images.list(name=tag.split(":")[0]) == []
    deadline = time.monotonic() + 60
    while {c.id for c in client.containers.list(all=True)} - before and time.monotonic() < deadline:
        time.sleep(1)  # the engine cancels the build and removes its container
    assert {c.id for c in client.containers.list(all=True)} - before == set()


class _DyingEngine:
    """A unix socket that answers like an engine to the SDK's first two calls (``/version``, ``/_ping``) and then
    drops every connection without an answer: an engine that goes away in the middle of a command."""

    def __init__(self, path: Path):
        import threading

        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                request = conn.recv(65536).decode(errors="replace")
                target = request.split(" ", 2)[1] if request.count(" ") >= 2 else ""
                if target.endswith("/version"):
                    body = b'{"ApiVersion": "1.41", "Version": "20.10.0", "MinAPIVersion": "1.12"}'
                    kind = b"application/json"
                elif target.endswith("/_ping"):
                    body, kind = b"OK", b"text/plain"
                else:
                    continue  # closed without an answer
                head = b"HTTP/1.1 200 OK\r\nContent-Type: " + kind + b"\r\nContent-Length: %d\r\n" % len(body)
                conn.sendall(head + b"Connection: close\r\n\r\n" + body)

    def close(self) -> None:
        self.server.close()


def test_an_engine_that_fails_mid_command_is_one_line(run_cli, tmp_path):
    """The engine answers the first check, then drops the connection: one line naming the engine, exit 2."""
    sock = tmp_path / "engine.sock"
    engine = _DyingEngine(sock)
    try:
        result = run_cli(None, "build", "--site", "local", timeout=120, DOCKER_HOST=f"unix://{sock}")
    finally:
        engine.close()
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert _error_lines(result.stderr) == result.stderr.splitlines(), result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"hpcai: error: the Docker engine at unix://{sock} failed mid-command ("), (
        result.stderr
    )
