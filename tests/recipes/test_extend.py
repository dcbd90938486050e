"""`hpcai extend`: a derived recipe FROM the site's base image, with the base's pins as constraints."""

from __future__ import annotations

from pathlib import Path

from hpcai_tf.catalog import load_site
from hpcai_tf.recipes.render import image_tag, sif_path


def test_extend_writes_derived_docker_and_singularity_recipes(hpcai, tmp_path: Path):
    """The exact derived Dockerfile, Singularity.def and constraints a user gets for one pip and one apt package."""
    out = tmp_path / "mykit"
    result = hpcai(
        "extend",
        "--site",
        "local",
        "--name",
        "mykit",
        "--pip",
        "scikit-learn==1.7.2",
        "--apt",
        "less",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    site = load_site("local")
    tag = image_tag(site)
    assert (
        (out / "Dockerfile").read_text()
        == f'''# Derived image "mykit": the hpcai base image of site "local" plus the user's packages.
# Written by `hpcai extend`; constraints.txt holds the base's pins so that no added package can replace
# TensorFlow, Horovod or NumPy (and break Horovod's build against them). Build it with
# `hpcai build --recipe DIR`, which stages DIR with build/options/ (options.sh: CA bundle, pip mirror), as the base had.
FROM {tag}

LABEL org.opencontainers.image.title="mykit" \\
      org.opencontainers.image.base.name="{tag}" \\
      org.hpcai.derived-from="local"

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

RUN export DEBIAN_FRONTEND=noninteractive \\
 && apt-get update \\
 && apt-get install -y --no-install-recommends less \\
 && rm -rf /var/lib/apt/lists/*

COPY build/options/ /opt/hpcai-build/options/
COPY constraints.txt /opt/hpcai/derived/constraints.txt
RUN . /opt/hpcai-build/options/options.sh \\
 && pip install --no-cache-dir --constraint /opt/hpcai/derived/constraints.txt --constraint /opt/hpcai/constraints.txt scikit-learn==1.7.2 \\
 && rm -rf /opt/hpcai-build \\
 && pip freeze --all > /opt/hpcai/derived/packages.txt \\
 && horovodrun --check-build
'''
    )
    assert (
        (out / "Singularity.def").read_text()
        == f"""\
Bootstrap: localimage
From: {sif_path(site)}

# Derived image "mykit": the hpcai base image of site "local" plus the user's packages.
# Written by `hpcai extend`; constraints.txt holds the base's pins so that no added package can replace
# TensorFlow, Horovod or NumPy (and break Horovod's build against them). From: is where
# `hpcai build --site local --runtime singularity` writes the base SIF. Build it with
# `hpcai build --recipe DIR --runtime singularity`, which stages DIR with build/options/ (options.sh: CA bundle,
# pip mirror), as the base had.

%labels
    org.opencontainers.image.title mykit
    org.hpcai.derived-from local

%files
    build/options /opt/hpcai-build/options
    constraints.txt /opt/hpcai/derived/constraints.txt

%post
    set -eu
    export PATH="/opt/hpcai/venv/bin:$PATH"
    export VIRTUAL_ENV="/opt/hpcai/venv"
    export TF_USE_LEGACY_KERAS="1"
    export HPCAI_SITE="local"
    export HPCAI_PROVENANCE="/opt/hpcai/provenance.json"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends less
    rm -rf /var/lib/apt/lists/*
    . /opt/hpcai-build/options/options.sh
    pip install --no-cache-dir --constraint /opt/hpcai/derived/constraints.txt --constraint /opt/hpcai/constraints.txt scikit-learn==1.7.2
    rm -rf /opt/hpcai-build
    pip freeze --all > /opt/hpcai/derived/packages.txt

%test
    horovodrun --check-build
"""
    )
    assert (
        (out / "constraints.txt").read_text()
        == """\
# The base image's pins (site local): an added package may not replace them.
tensorflow-cpu==2.21.0
horovod==0.28.1
numpy==2.4.6
mpi4py==4.1.2
h5py==3.14.0
"""
    )


def test_derived_recipes_of_a_conda_site_take_its_environment_and_build_options(hpcai, tmp_path: Path):
    """Summit: the pip step sources options.sh, as the base's steps do; %post puts the conda env on PATH first."""
    out = tmp_path / "x"
    assert (
        hpcai("extend", "--site", "summit", "--name", "x", "--pip", "astropy==6.1.4", "--out", str(out)).returncode == 0
    )
    assert "\nRUN . /opt/hpcai-build/options/options.sh \\\n && pip install " in (out / "Dockerfile").read_text()
    definition = (out / "Singularity.def").read_text()
    assert f"From: {sif_path(load_site('summit'))}\n" in definition
    assert (
        'set -eu\n    export PATH="/opt/hpcai/venv/bin:$PATH"\n    export CONDA_PREFIX="/opt/hpcai/venv"\n'
        in definition
    )
    assert definition.index(". /opt/hpcai-build/options/options.sh") < definition.index("    pip install")


def test_extend_on_a_conda_site_uses_dnf_for_system_packages(hpcai, tmp_path: Path):
    """Summit's UBI 8 base takes system packages from dnf; the constraints hold Open-CE's pins."""
    out = tmp_path / "x"
    result = hpcai(
        "extend",
        "--site",
        "summit",
        "--name",
        "x",
        "--pip",
        "astropy==6.1.4",
        "--apt",
        "vim-minimal",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert "RUN dnf install -y --setopt=install_weak_deps=False vim-minimal" in (out / "Dockerfile").read_text()
    assert "tensorflow==2.13.0\nhorovod==0.28.0\n" in (out / "constraints.txt").read_text()


def test_extend_refuses_an_unpinned_package(hpcai, tmp_path: Path):
    """Exact versions only: an unpinned pip package is a one-line error and nothing is written."""
    out = tmp_path / "x"
    result = hpcai("extend", "--site", "local", "--name", "x", "--pip", "pandas", "--out", str(out))
    assert result.returncode == 2
    assert result.stderr == "hpcai: error: --pip: expected an exact pin NAME==VERSION, got 'pandas'\n"
    assert not out.exists()


def test_extend_refuses_shell_in_a_package_name(hpcai, tmp_path: Path):
    """A package name cannot carry shell into the recipe."""
    out = tmp_path / "x"
    result = hpcai(
        "extend", "--site", "local", "--name", "x", "--pip", "six==1.17.0", "--apt", "less;reboot", "--out", str(out)
    )
    assert result.returncode == 2
    assert "--apt: expected a package name" in result.stderr
    assert not out.exists()
