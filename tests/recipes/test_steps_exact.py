"""Exact rendered text, hpccm style: each case is one site configuration and the lines a user gets.

The committed recipes are checked against the templates elsewhere; these tests pin the text itself, so a
reviewer sees in the diff of a template change exactly which lines of which recipe move.
"""

from __future__ import annotations

from hpcai_tf.catalog import load_site
from hpcai_tf.recipes.render import render_recipe, render_steps


def steps(site_id: str) -> dict:
    """name -> Step of a site's rendered build steps."""
    return {s.name: s for s in render_steps(load_site(site_id))}


def test_step_order_per_channel():
    """Layer order: least-changing first, the kit last; conda sites take TF, Horovod and MPI in one step."""
    assert list(steps("local")) == ["os-packages", "mpi-apt", "python-pip", "horovod-pip", "stack-check", "kit"]
    assert list(steps("bridges-ai")) == [
        "os-packages",
        "cuda-libs",
        "mpi-source",
        "python-pip",
        "horovod-pip",
        "stack-check",
        "kit",
    ]
    assert list(steps("summit")) == ["os-packages", "python-conda", "stack-check", "kit"]


def test_debian_apt_open_mpi_checked_against_the_pin():
    """local: Debian's Open MPI, then its version asserted against the catalog."""
    step = steps("local")["mpi-apt"]
    assert step.title == "Open MPI 4.1.4 from debian (hybrid model)"
    assert step.commands == [
        "export DEBIAN_FRONTEND=noninteractive",
        "apt-get update",
        "apt-get install -y --no-install-recommends openmpi-bin libopenmpi-dev",
        "rm -rf /var/lib/apt/lists/*",
        'ompi_info --version | grep -q "v4.1.4\\$"',
    ]


def test_cpu_pip_environment():
    """local: a venv with the pinned CPU TensorFlow under the site's constraints, its Python version asserted first;
    tf-keras without its dependencies, and tf.keras set to it."""
    step = steps("local")["python-pip"]
    assert step.env == {
        "PATH": "/opt/hpcai/venv/bin:$PATH",
        "VIRTUAL_ENV": "/opt/hpcai/venv",
        "TF_USE_LEGACY_KERAS": "1",
    }
    assert step.files == [("constraints", "/opt/hpcai-build/constraints")]
    assert step.commands == [
        ". /opt/hpcai-build/options/options.sh",
        'python3 -c \'import platform, sys; v = platform.python_version(); sys.exit(0 if (v + ".").startswith("3.11.2.") else "python " + v + " is not the pinned 3.11.2")\'',
        "python3 -m venv /opt/hpcai/venv",
        "/opt/hpcai/venv/bin/pip install --no-cache-dir pip==25.3 setuptools==80.9.0 wheel==0.45.1",
        "/opt/hpcai/venv/bin/pip install --no-cache-dir --constraint /opt/hpcai-build/constraints/local.txt tensorflow-cpu==2.21.0 numpy==2.4.6 mpi4py==4.1.2 h5py==3.14.0 lalsuite==7.26.16 galsim==2.8.5",
        "/opt/hpcai/venv/bin/pip install --no-cache-dir --no-deps --constraint /opt/hpcai-build/constraints/local.txt tf-keras==2.21.0",
    ]


def test_cpu_pip_environment_of_the_2023_stack():
    """local-tf215: TensorFlow 2.15.1 with NumPy 1.26.4; tf.keras is Keras 2 already, no tf-keras, no variable."""
    step = steps("local-tf215")["python-pip"]
    assert step.env == {"PATH": "/opt/hpcai/venv/bin:$PATH", "VIRTUAL_ENV": "/opt/hpcai/venv"}
    assert (
        step.commands[-1]
        == "/opt/hpcai/venv/bin/pip install --no-cache-dir --constraint /opt/hpcai-build/constraints/local-tf215.txt tensorflow-cpu==2.15.1 numpy==1.26.4 mpi4py==4.1.2 h5py==3.16.0 lalsuite==7.26.16 galsim==2.8.5"
    )


def test_cuda_libraries_from_nvidia_apt_pinned():
    """bridges-ai: cuDNN and NCCL pinned to the CUDA series of the base image."""
    step = steps("bridges-ai")["cuda-libs"]
    assert step.title == "cuDNN 8.6.0.163 and NCCL 2.16.5 for CUDA 11.8"
    assert step.commands[2] == (
        "apt-get install -y --no-install-recommends --allow-change-held-packages "
        "libcudnn8=8.6.0.163-1+cuda11.8 libcudnn8-dev=8.6.0.163-1+cuda11.8 "
        "libnccl2=2.16.5-1+cuda11.8 libnccl-dev=2.16.5-1+cuda11.8"
    )


def test_open_mpi_from_source_with_cuda():
    """bridges-ai: Open MPI 4.0.7 built to meet the host's Open MPI 4.0 (hybrid model), CUDA-aware."""
    assert steps("bridges-ai")["mpi-source"].commands == [
        ". /opt/hpcai-build/options/options.sh",
        "mkdir -p /tmp/openmpi",
        "curl -fsSL https://download.open-mpi.org/release/open-mpi/v4.0/openmpi-4.0.7.tar.bz2 | tar -xj -C /tmp/openmpi --strip-components=1",
        "cd /tmp/openmpi",
        "./configure --prefix=/usr/local --enable-orterun-prefix-by-default --with-cuda=/usr/local/cuda --disable-getpwuid",
        'make -j"$(nproc)" install',
        "ldconfig",
        "cd /",
        "rm -rf /tmp/openmpi",
        'ompi_info --version | grep -q "v4.0.7\\$"',
    ]


def test_horovod_with_nccl_on_a_gpu_image():
    """bridges-ai: NCCL operations, CUDA stubs on the loader path while Horovod links; its requirements constrained."""
    step = steps("bridges-ai")["horovod-pip"]
    assert step.files == [("build/wheels", "/opt/hpcai-build/wheels")]
    assert step.commands == [
        ". /opt/hpcai-build/options/options.sh",
        "ldconfig /usr/local/cuda/lib64/stubs",
        'HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_MPI=1 HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 HOROVOD_GPU_OPERATIONS=NCCL MAKEFLAGS="-j$(nproc)" pip install --no-cache-dir --no-build-isolation --constraint /opt/hpcai-build/constraints/bridges-ai.txt --find-links /opt/hpcai-build/wheels horovod==0.28.1',
        "ldconfig",
    ]


def test_kit_step_keeps_the_constraints_of_a_pip_site_only():
    """local: the constraints stay in the image as /opt/hpcai/constraints.txt; summit (conda) has none."""
    assert steps("local")["kit"].commands == [
        "pip install --no-cache-dir --no-deps --no-build-isolation /opt/hpcai/src",
        "cp /opt/hpcai-build/constraints/local.txt /opt/hpcai/constraints.txt",
        "rm -rf /opt/hpcai/src/build /opt/hpcai/src/*.egg-info /opt/hpcai-build",
        "cp /opt/hpcai/recipe/provenance.json /opt/hpcai/provenance.json",
        "pip freeze --all > /opt/hpcai/packages.txt",
        "hpcai --version",
    ]
    assert not any("constraints" in command for command in steps("summit")["kit"].commands)


SUMMIT_DOCKERFILE = r"""# hpcai image recipe for site "summit": Summit, Oak Ridge Leadership Computing Facility (OLCF).
# Rendered by `hpcai render` from containers/sites/summit.toml and containers/templates/: do not edit.
# Build it with `hpcai build --site summit` (or `make image SITE=summit`), which stages the build
# context: build/options/ (options.sh: CA bundle, mirrors), build/wheels/ (prebuilt wheels), recipe/ and kit/.
FROM registry.access.redhat.com/ubi8/ubi:8.8

LABEL org.opencontainers.image.title="hpcai-summit" \
      org.opencontainers.image.description="hpcai base image for Summit (Oak Ridge Leadership Computing Facility (OLCF))" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.base.name="registry.access.redhat.com/ubi8/ubi:8.8" \
      org.hpcai.site="summit" \
      org.hpcai.arch="ppc64le" \
      org.hpcai.channel="open-ce-1.10.0" \
      org.hpcai.host-mpi="spectrum-mpi-10.4.0.3 bind pmix" \
      org.hpcai.horovod-patches="none" \
      org.hpcai.pin.python="3.10" \
      org.hpcai.pin.cuda="11.8.0" \
      org.hpcai.pin.cudnn="8.9.2" \
      org.hpcai.pin.nccl="2.18.3" \
      org.hpcai.pin.mpi="openmpi-4.1.5" \
      org.hpcai.pin.tensorflow="tensorflow-2.13.0" \
      org.hpcai.pin.horovod="0.28.0" \
      org.hpcai.pin.numpy="1.23.5" \
      org.hpcai.pin.mpi4py="3.1.4" \
      org.hpcai.pin.h5py="3.9.0"

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY build/options/ /opt/hpcai-build/options/

# System packages (rhel 8.8)
RUN dnf install -y --setopt=install_weak_deps=False bzip2 ca-certificates curl findutils libevent which \
 && dnf clean all

# Open-CE 1.10.0 conda env: tensorflow 2.13.0, horovod 0.28.0
ENV PATH=/opt/hpcai/venv/bin:$PATH \
    CONDA_PREFIX=/opt/hpcai/venv
RUN . /opt/hpcai-build/options/options.sh \
 && curl -fsSL -o /tmp/miniforge.sh https://github.com/conda-forge/miniforge/releases/download/24.3.0-0/Miniforge3-24.3.0-0-Linux-ppc64le.sh \
 && bash /tmp/miniforge.sh -b -p /opt/hpcai/conda \
 && rm -f /tmp/miniforge.sh \
 && /opt/hpcai/conda/bin/conda create --yes --prefix /opt/hpcai/venv --override-channels --channel https://ftp.osuosl.org/pub/open-ce/1.10.0/ --channel conda-forge python=3.10 cudatoolkit=11.8.0 cudnn=8.9.2 nccl=2.18.3 openmpi=4.1.5 tensorflow=2.13.0 horovod=0.28.0 numpy=1.23.5 mpi4py=3.1.4 h5py=3.9.0 \
 && /opt/hpcai/venv/bin/pip install --no-cache-dir tomli==2.2.1 \
 && /opt/hpcai/conda/bin/conda clean --all --yes

# Check the pinned stack
RUN python -c 'import importlib, sys; want = {"h5py": "3.9.0", "horovod": "0.28.0", "mpi4py": "3.1.4", "numpy": "1.23.5", "tensorflow": "2.13.0"}; got = {name: importlib.import_module(name).__version__ for name in want}; sys.exit(0 if got == want else "stack mismatch: got %s, pinned %s" % (got, want))' \
 && horovodrun --check-build

# hpcai 0.1.0 and provenance under /opt/hpcai
COPY recipe/ /opt/hpcai/recipe/
COPY kit/ /opt/hpcai/src/
ENV HPCAI_SITE=summit \
    HPCAI_PROVENANCE=/opt/hpcai/provenance.json
RUN pip install --no-cache-dir --no-deps --no-build-isolation /opt/hpcai/src \
 && rm -rf /opt/hpcai/src/build /opt/hpcai/src/*.egg-info /opt/hpcai-build \
 && cp /opt/hpcai/recipe/provenance.json /opt/hpcai/provenance.json \
 && pip freeze --all > /opt/hpcai/packages.txt \
 && hpcai --version

CMD ["hpcai", "--help"]
"""


def test_summit_dockerfile():
    """summit: ppc64le UBI 8, Open-CE conda stack, libevent for jsrun; the whole Dockerfile."""
    assert render_recipe(load_site("summit"), "docker") == SUMMIT_DOCKERFILE


SUMMIT_POST = r"""%environment
    export PATH="/opt/hpcai/venv/bin:$PATH"
    export CONDA_PREFIX="/opt/hpcai/venv"
    export HPCAI_SITE="summit"
    export HPCAI_PROVENANCE="/opt/hpcai/provenance.json"

%post
    set -eu

    # System packages (rhel 8.8)
    dnf install -y --setopt=install_weak_deps=False bzip2 ca-certificates curl findutils libevent which
    dnf clean all

    # Open-CE 1.10.0 conda env: tensorflow 2.13.0, horovod 0.28.0
    export PATH="/opt/hpcai/venv/bin:$PATH"
    export CONDA_PREFIX="/opt/hpcai/venv"
    . /opt/hpcai-build/options/options.sh
    curl -fsSL -o /tmp/miniforge.sh https://github.com/conda-forge/miniforge/releases/download/24.3.0-0/Miniforge3-24.3.0-0-Linux-ppc64le.sh
    bash /tmp/miniforge.sh -b -p /opt/hpcai/conda
    rm -f /tmp/miniforge.sh
    /opt/hpcai/conda/bin/conda create --yes --prefix /opt/hpcai/venv --override-channels --channel https://ftp.osuosl.org/pub/open-ce/1.10.0/ --channel conda-forge python=3.10 cudatoolkit=11.8.0 cudnn=8.9.2 nccl=2.18.3 openmpi=4.1.5 tensorflow=2.13.0 horovod=0.28.0 numpy=1.23.5 mpi4py=3.1.4 h5py=3.9.0
    /opt/hpcai/venv/bin/pip install --no-cache-dir tomli==2.2.1
    /opt/hpcai/conda/bin/conda clean --all --yes

    # Check the pinned stack
    python -c 'import importlib, sys; want = {"h5py": "3.9.0", "horovod": "0.28.0", "mpi4py": "3.1.4", "numpy": "1.23.5", "tensorflow": "2.13.0"}; got = {name: importlib.import_module(name).__version__ for name in want}; sys.exit(0 if got == want else "stack mismatch: got %s, pinned %s" % (got, want))'
    horovodrun --check-build

    # hpcai 0.1.0 and provenance under /opt/hpcai
    export HPCAI_SITE="summit"
    export HPCAI_PROVENANCE="/opt/hpcai/provenance.json"
    pip install --no-cache-dir --no-deps --no-build-isolation /opt/hpcai/src
    rm -rf /opt/hpcai/src/build /opt/hpcai/src/*.egg-info /opt/hpcai-build
    cp /opt/hpcai/recipe/provenance.json /opt/hpcai/provenance.json
    pip freeze --all > /opt/hpcai/packages.txt
    hpcai --version

"""


def test_summit_singularity_environment_and_post():
    """summit: the same steps as one %post, the run-time environment in %environment."""
    text = render_recipe(load_site("summit"), "singularity")
    assert text[text.index("%environment") : text.index("%test")] == SUMMIT_POST


def test_delta_takes_cuda_from_the_wheels():
    """delta: no cuda-libs step (no NVIDIA apt repository); tensorflow[and-cuda] and the pinned CUDA runtime, cuDNN
    and NCCL wheels, whose library directories the cuda-wheels step lists for the dynamic loader; Horovod without GPU
    operations (the wheels ship no nvcc)."""
    assert list(steps("delta")) == [
        "os-packages",
        "mpi-apt",
        "python-pip",
        "cuda-wheels",
        "horovod-pip",
        "stack-check",
        "kit",
    ]
    install = steps("delta")["python-pip"].commands[4]
    assert "tensorflow[and-cuda]==2.21.0" in install
    assert "nvidia-cuda-runtime-cu12==12.9.79 nvidia-cudnn-cu12==9.28.0.42 nvidia-nccl-cu12==2.32.3" in install
    wheels = steps("delta")["cuda-wheels"]
    assert wheels.title == (
        "CUDA 12.9.79, cuDNN 9.28.0.42 and NCCL 2.32.3 from NVIDIA's wheels, registered with the dynamic loader"
    )
    assert wheels.commands == [
        "nvidia=\"$(python -c 'import nvidia; print(nvidia.__path__[0])')\"",
        "printf '%s\\n' \"$nvidia\"/*/lib > /etc/ld.so.conf.d/hpcai-cuda-wheels.conf",
        "ldconfig",
    ]
    build = next(c for c in steps("delta")["horovod-pip"].commands if "pip wheel" in c)
    assert "HOROVOD_WITHOUT_MXNET=1 MAKEFLAGS=" in build and "HOROVOD_GPU_OPERATIONS" not in build
