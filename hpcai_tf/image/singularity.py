"""Apptainer / Singularity on the build host, driven through spython's client.

spython always calls ``singularity``; Apptainer installs ``apptainer`` (and only sometimes a ``singularity``
link), so the client here is told which executable to run. Builds stream through spython's
``stream_command`` with stderr merged into stdout: ``Client.build(stream=True)`` reads only stdout and
would block once Apptainer's log filled the stderr pipe.

Neither runtime is installed on the kit's development machine. These paths ran there through the harness of
issue #7 (``scripts/apptainer-harness.sh``: Apptainer 1.4.5 in a Debian sid root, builds as ``--fakeroot``):
the SIF build from ``docker-daemon://``, from ``docker-archive://`` and from the staged ``Singularity.def``
(its ``%test`` included), ``exec`` (``hpcai verify --runtime singularity``) and ``inspect``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import types
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from hpcai_tf.errors import KitError

RUNTIMES = ("apptainer", "singularity")
SQUASHFS_COMPRESSION: dict[str, tuple[str, ...]] = {
    "gzip": (),
    "zstd": ("-comp", "zstd", "-Xcompression-level", "3"),
    "lz4": ("-comp", "lz4"),
}
"""``mksquashfs`` arguments of each SIF compression ``hpcai build --sif-compression`` offers. gzip is the
runtimes' own default and mounts everywhere; zstd (level 3) made the local SIF as small as gzip with about a
quarter of its CPU time (1.06 against 1.03 GB, 98 against 414 s of user time on the reference machine), but
needs a kernel or squashfuse built with zstd (Linux >= 4.14 with CONFIG_SQUASHFS_ZSTD); lz4 is as fast and larger
(1.43 GB). See docs/images.md."""
INSTALL_HINT = (
    "install Apptainer (https://apptainer.org/docs/admin/main/installation.html; Debian trixie/sid package "
    "`apptainer`), or use --runtime docker"
)


def find_runtime() -> str:
    """The path of ``apptainer`` or else ``singularity`` on PATH; a one-line error when neither is."""
    for name in RUNTIMES:
        path = shutil.which(name)
        if path:
            return path
    raise KitError(f"neither apptainer nor singularity is on PATH: {INSTALL_HINT}")


def runtime_client(executable: str):
    """spython's client, running ``executable`` instead of its hard-wired ``singularity``."""
    from spython.main import get_client

    client = get_client(quiet=True)

    def init_command(self, action, flags=None):
        action = action if isinstance(action, list) else [action]
        return [executable, *(flags or []), *action]

    client._init_command = types.MethodType(init_command, client)
    return client


def build_command(executable: str, sif: Path, source: str, compression: str = "gzip") -> list[str]:
    """``apptainer build [--mksquashfs-args ARGS] SIF SOURCE``: SOURCE is ``docker-daemon://TAG``,
    ``docker-archive://TAR`` or a .def; ARGS only for a compression other than the runtime's default gzip."""
    squashfs = SQUASHFS_COMPRESSION[compression]
    flags = ["--mksquashfs-args", " ".join(squashfs)] if squashfs else []
    return [*runtime_client(executable)._init_command("build"), *flags, str(sif), source]


def build_sif(executable: str, sif: Path, source: str, cwd: Path, compression: str = "gzip") -> None:
    """Build ``sif`` from ``source`` with output streamed; written under a temporary name, renamed on success."""
    from spython.utils import stream_command

    sif.parent.mkdir(parents=True, exist_ok=True)
    tmp = sif.with_name(f".{sif.name}.tmp")
    tmp.unlink(missing_ok=True)
    cmd = build_command(executable, tmp, source, compression)
    print("$ " + " ".join(cmd), flush=True)
    tail: deque[str] = deque(maxlen=25)
    previous = Path.cwd()
    try:
        os.chdir(cwd)  # the .def's %files are relative to the build context
        for line in stream_command(cmd, output_type="both"):
            sys.stdout.write(line)
            sys.stdout.flush()
            tail.append(line.rstrip("\n"))
    except subprocess.CalledProcessError as err:
        tmp.unlink(missing_ok=True)
        last = next((line for line in reversed(tail) if line.strip()), "no output")
        raise KitError(
            f"{Path(executable).name} build of {sif.name} from {source} failed (exit {err.returncode}): {last}"
        ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        os.chdir(previous)
    tmp.rename(sif)


def exec_in_sif(
    executable: str, sif: Path, argv: Sequence[str], env: dict[str, str], gpu_flag: str = "", stdout_only: bool = False
) -> tuple[int, str]:
    """Run ``argv`` in ``sif`` (``apptainer exec``) with ``env``; its exit code and output (stdout, then stderr)."""
    client = runtime_client(executable)
    options = [item for key, value in env.items() for item in ("--env", f"{key}={value}")]
    result = client.execute(
        str(sif), list(argv), nv=gpu_flag == "--nv", options=options, return_result=True, quiet=True
    )
    message = result.get("message", "")
    parts = message if isinstance(message, list) else [message]  # spython: [stdout, stderr], empty ones left out
    text = parts[0] if stdout_only and parts else "".join(str(part) for part in parts)
    return int(result.get("return_code", 1)), str(text)
