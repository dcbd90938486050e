"""Horovod's build from its sdist, defined once for the images and the host venv.

The image's ``horovod-pip`` step (containers/templates/steps/horovod-pip.sh.j2) and ``scripts/setup-venv.sh``
build Horovod with the same switches (:func:`horovod_build_vars`) and name its wheel the same way
(:func:`wheel_name`). The script asks this module for both (``python -m hpcai_tf.recipes.horovod_build SITE_FILE``
prints them as shell assignments) and writes the wheel's record beside it (:func:`host_record`); ``hpcai build``
stages the wheel into an image only when that record equals what the image would build (:func:`image_record`, compared
by :func:`hpcai_tf.image.context.horovod_wheel_reason`).
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

from hpcai_tf.catalog import Site, load_site_file
from hpcai_tf.paths import WHEELS_DIR
from hpcai_tf.recipes.patches import patch_path

WHEEL_RECORD_SUFFIX = ".built-against.json"
"""The sidecar of a host-built wheel, ``<wheel>.built-against.json``: its :func:`host_record`, one JSON line."""
PARALLEL_MAKE = 'MAKEFLAGS="-j$(nproc)"'
"""How many compile jobs Horovod's build runs (its setup.py runs ``make -j8`` without MAKEFLAGS); not a switch."""
RECORD_FIELDS = ("horovod", "patches", "tensorflow", "python", "platform", "os", "mpi", "switches")
"""What a record holds, in the order :func:`hpcai_tf.image.context.horovod_wheel_reason` compares them."""


def horovod_build_vars(site: Site) -> dict[str, str]:
    """Horovod's build switches; its setup.py also reads them to choose its requirements (cffi without PyTorch).

    Gloo is built (CMakeLists.txt leaves it out only when HOROVOD_WITHOUT_GLOO is exactly "1")."""
    env = {
        "HOROVOD_WITH_TENSORFLOW": "1",
        "HOROVOD_WITH_MPI": "1",
        "HOROVOD_WITHOUT_PYTORCH": "1",
        "HOROVOD_WITHOUT_MXNET": "1",
    }
    if site.stack.horovod_gpu_operations != "none":
        env["HOROVOD_GPU_OPERATIONS"] = site.stack.horovod_gpu_operations
    return env


def build_switches(site: Site) -> list[str]:
    """The switches as ``NAME=value`` words, in the order the build passes them."""
    return [f"{name}={value}" for name, value in horovod_build_vars(site).items()]


def horovod_build_env(site: Site) -> str:
    """Environment assignments that prefix Horovod's pip build in a recipe."""
    return " ".join([*build_switches(site), PARALLEL_MAKE])


def python_tag(python: str) -> str:
    """``"3.11.2"`` -> ``"cp311"``: the CPython ABI a compiled wheel is for."""
    major, minor = python.split(".")[:2]
    return f"cp{major}{minor}"


def wheel_name(horovod: str, python: str, arch: str) -> str:
    """The file name ``pip wheel`` gives Horovod ``horovod`` built for CPython ``python`` on Linux ``arch``."""
    tag = python_tag(python)
    return f"horovod-{horovod}-{tag}-{tag}-linux_{arch}.whl"


def site_wheel_name(site: Site) -> str:
    """The name of the Horovod wheel that fits the site's image."""
    return wheel_name(site.stack.horovod, site.stack.python, site.arch)


def record_name(wheel: str) -> str:
    """The sidecar of wheel file ``wheel``."""
    return f"{wheel}{WHEEL_RECORD_SUFFIX}"


def patch_digests(site: Site) -> list[str]:
    """``<name> sha256:<hex>`` of each patch the site applies to Horovod's sdist, in order."""
    return [
        f"{name} sha256:{hashlib.sha256(patch_path(name).read_bytes()).hexdigest()}"
        for name in site.stack.horovod_patches
    ]


def image_record(site: Site) -> dict[str, object]:
    """What a Horovod wheel must have been built with to be the site's image's own build of it.

    ``python`` is compared on its minor (the ABI); ``mpi`` names where the image's MPI comes from: a host wheel
    fits only an image that installs the same MPI release from the same OS's packages."""
    stack, mpi = site.stack, site.mpi
    source = f"{site.base.os} package" if mpi.image_source == "apt" else mpi.image_source
    return {
        "horovod": stack.horovod,
        "patches": patch_digests(site),
        "tensorflow": f"{stack.tensorflow_package}=={stack.tensorflow}",
        "python": stack.python,
        "platform": f"linux-{site.arch}",
        "os": f"{site.base.os} {site.base.os_version}",
        "mpi": f"{mpi.flavour} {mpi.image_version} ({source})",
        "switches": build_switches(site),
    }


def _installed_tensorflow() -> str:
    for name in ("tensorflow-cpu", "tensorflow"):
        try:
            return f"{name}=={metadata.version(name)}"
        except metadata.PackageNotFoundError:
            continue
    return "none"


def _os_release(path: Path = Path("/etc/os-release")) -> str:
    """``"debian 12"``: ID and VERSION_ID of os-release(5), ``"unknown"`` without them."""
    try:
        fields = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    except OSError:
        return "unknown"
    values = [fields.get(key, "").strip().strip('"') for key in ("ID", "VERSION_ID")]
    return " ".join(values) if all(values) else "unknown"


def _run(*argv: str) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _host_mpi(os_id: str) -> str:
    """``"openmpi 4.1.4 (debian package)"``: the Open MPI that ``mpicxx`` compiles against, and whether the OS's
    package manager owns it; ``"none"`` without Open MPI."""
    version = re.match(r"Open MPI v(\S+)$", _run("ompi_info", "--version").partition("\n")[0])
    mpicxx = shutil.which("mpicxx")
    if version is None or mpicxx is None:
        return "none"
    owned = _run("dpkg-query", "--search", str(Path(mpicxx).resolve())).strip()
    return f"openmpi {version[1]} ({f'{os_id} package' if owned else 'not from a package'})"


def host_record(site: Site) -> dict[str, object]:
    """What this host builds the site's Horovod with now: the site's version, patches and switches, and this
    interpreter's TensorFlow, Python, platform, OS and MPI (the sidecar ``scripts/setup-venv.sh`` writes)."""
    os_name = _os_release()
    return {
        "horovod": site.stack.horovod,
        "patches": patch_digests(site),
        "tensorflow": _installed_tensorflow(),
        "python": platform.python_version(),
        "platform": sysconfig.get_platform(),
        "os": os_name,
        "mpi": _host_mpi(os_name.split(" ")[0]),
        "switches": build_switches(site),
    }


def record_text(record: dict[str, object]) -> str:
    """A record as its sidecar holds it: one JSON line, keys sorted."""
    return json.dumps(record, sort_keys=True)


def shell_assignments(site: Site) -> str:
    """What ``scripts/setup-venv.sh`` builds for the venv of ``site``, as bash assignments: ``wheels_dir``,
    ``wheel``, ``record`` (file names), ``build_switches`` and ``patch_files`` (arrays) and ``built_against``."""
    wheel = wheel_name(site.stack.horovod, platform.python_version(), platform.machine())

    def array(words: list[str]) -> str:
        return "(" + " ".join(shlex.quote(w) for w in words) + ")"

    return "\n".join(
        [
            f"wheels_dir={shlex.quote(str(WHEELS_DIR))}",
            f"wheel={shlex.quote(wheel)}",
            f"record={shlex.quote(record_name(wheel))}",
            f"build_switches={array(build_switches(site))}",
            f"patch_files={array([str(patch_path(name)) for name in site.stack.horovod_patches])}",
            f"built_against={shlex.quote(record_text(host_record(site)))}",
        ]
    )


if __name__ == "__main__":  # scripts/setup-venv.sh
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m hpcai_tf.recipes.horovod_build SITE_FILE")
    if _installed_tensorflow() == "none":
        raise SystemExit(
            "horovod_build: no tensorflow-cpu or tensorflow to build against; requirements/lock.txt pins one"
        )
    print(shell_assignments(load_site_file(Path(sys.argv[1]))))
