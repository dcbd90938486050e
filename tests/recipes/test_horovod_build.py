"""Horovod's build switches, wheel name and record: one definition, read by the recipes and scripts/setup-venv.sh."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from hpcai_tf.catalog import load_site
from hpcai_tf.paths import PATCHES_DIR, WHEELS_DIR
from hpcai_tf.recipes import horovod_build
from hpcai_tf.recipes.horovod_build import (
    horovod_build_env,
    host_record,
    image_record,
    site_wheel_name,
    wheel_name,
)

REPO = Path(__file__).resolve().parents[2]
DEFINITION = "hpcai_tf/recipes/horovod_build.py"
SWITCHES = ["HOROVOD_WITH_TENSORFLOW=1", "HOROVOD_WITH_MPI=1", "HOROVOD_WITHOUT_PYTORCH=1", "HOROVOD_WITHOUT_MXNET=1"]
COPIES = re.compile(r'HOROVOD_WITH(OUT)?_[A-Z]+(=|")|\.built-against\.json"|linux_(\{|\$)')
"""A switch set or named as a key, the sidecar's suffix as a literal, a wheel name built from parts."""


def test_the_switches_of_a_cpu_and_a_gpu_build():
    """CPU images and the host venv take the four switches; GPU images add their GPU operations."""
    assert horovod_build_env(load_site("local")) == " ".join(SWITCHES) + ' MAKEFLAGS="-j$(nproc)"'
    assert horovod_build_env(load_site("bridges-ai")) == (
        " ".join(SWITCHES) + ' HOROVOD_GPU_OPERATIONS=NCCL MAKEFLAGS="-j$(nproc)"'
    )


def test_the_wheel_is_named_as_pip_names_it():
    """``horovod-<version>-cpXY-cpXY-linux_<arch>.whl``, from the site's pins."""
    assert wheel_name("0.28.1", "3.11.2", "x86_64") == "horovod-0.28.1-cp311-cp311-linux_x86_64.whl"
    assert site_wheel_name(load_site("local")) == "horovod-0.28.1-cp311-cp311-linux_x86_64.whl"
    assert site_wheel_name(load_site("hal")).endswith("-linux_ppc64le.whl")


def test_the_host_records_the_sites_build_and_what_it_found(monkeypatch):
    """The host's record takes Horovod, patches and switches from the site and the rest from this host; on a host
    like the local image (Debian 12, its Open MPI 4.1.4 package, TF 2.21.0, CPython 3.11) it equals the image's."""
    local = load_site("local")
    monkeypatch.setattr(horovod_build, "_installed_tensorflow", lambda: "tensorflow-cpu==2.21.0")
    monkeypatch.setattr(horovod_build, "_os_release", lambda: "debian 12")
    monkeypatch.setattr(horovod_build, "_host_mpi", lambda os_id: f"openmpi 4.1.4 ({os_id} package)")
    monkeypatch.setattr(horovod_build.platform, "python_version", lambda: "3.11.2")
    monkeypatch.setattr(horovod_build.sysconfig, "get_platform", lambda: "linux-x86_64")
    assert host_record(local) == image_record(local)


def test_os_release_and_mpi_probes(tmp_path, monkeypatch):
    """os-release(5)'s ID and VERSION_ID; ompi_info's release and whether the OS's package manager owns mpicxx."""
    release = tmp_path / "os-release"
    release.write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_ID="12"\nID=debian\n')
    assert horovod_build._os_release(release) == "debian 12"
    release.write_text("ID=debian\n")
    assert horovod_build._os_release(release) == "unknown"
    assert horovod_build._os_release(tmp_path / "missing") == "unknown"

    outputs = {
        "ompi_info": "Open MPI v4.1.4\n\nhttp://www.open-mpi.org/community/help/\n",
        "dpkg-query": "openmpi-bin: /usr/bin/opal_wrapper\n",
    }
    monkeypatch.setattr(horovod_build, "_run", lambda *argv: outputs.get(argv[0], ""))
    monkeypatch.setattr(horovod_build.shutil, "which", lambda name: "/usr/bin/mpicxx")
    assert horovod_build._host_mpi("debian") == "openmpi 4.1.4 (debian package)"
    outputs["dpkg-query"] = ""
    assert horovod_build._host_mpi("debian") == "openmpi 4.1.4 (not from a package)"
    outputs["ompi_info"] = ""
    assert horovod_build._host_mpi("debian") == "none"


def test_setup_venv_takes_the_build_from_the_kit():
    """What scripts/setup-venv.sh evaluates: the wheel's directory and name, switches, patch files, the record."""
    script = (
        f'eval "$({sys.executable} -m hpcai_tf.recipes.horovod_build containers/sites/local.toml)"; '
        'printf "%s\\n" "$wheels_dir" "$wheel" "$record" "${build_switches[*]}" "${patch_files[*]}" "$built_against"'
    )
    printed = subprocess.run(
        ["bash", "-c", script], cwd=REPO, capture_output=True, text=True, check=True, timeout=120
    ).stdout.splitlines()
    local = load_site("local")
    wheel = wheel_name("0.28.1", f"{sys.version_info[0]}.{sys.version_info[1]}", horovod_build.platform.machine())
    assert printed[:5] == [
        str(WHEELS_DIR),
        wheel,
        f"{wheel}.built-against.json",
        " ".join(SWITCHES),
        " ".join(str(PATCHES_DIR / f"{name}.patch") for name in local.stack.horovod_patches),
    ]
    assert printed[5] == horovod_build.record_text(host_record(local))


def test_no_second_copy_of_the_switches_or_the_wheel_name():
    """The switches, the sidecar's suffix and the wheel-name pattern are written only in their definition."""
    files = [
        *REPO.glob("hpcai_tf/**/*.py"),
        *REPO.glob("containers/templates/**/*.j2"),
        *REPO.glob("scripts/*"),
        *REPO.glob("bench/*.py"),
        REPO / "Makefile",
    ]
    copies = sorted(
        f"{path.relative_to(REPO)}:{number}"
        for path in files
        if path.is_file() and path.relative_to(REPO).as_posix() != DEFINITION
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if COPIES.search(line)
    )
    assert copies == []
    assert COPIES.search((REPO / DEFINITION).read_text())
