"""What every image of the kit holds and where: the recipes write it on the host, the code inside the image reads it.

The stack's Python packages, the in-image paths and the environment variables an image sets are defined here once.
The module is pure data and imports nothing, so that the host side (recipes, image, sitedocs) may import exactly this
module of ``train/`` (``tests/test_import_layers.py``) while the self-test and provenance read it inside the image.
"""

from __future__ import annotations

from dataclasses import dataclass

STACK_PACKAGES = ("tensorflow", "horovod", "numpy", "mpi4py", "h5py")
"""The Python packages of every image's stack, in the order the recipes name them. Each is pinned by the catalog's
``stack`` field of the same name, imported under that name, and its ``__version__`` answers with the pin. TensorFlow's
distribution is ``stack.tensorflow_package`` (``tensorflow`` or ``tensorflow-cpu``); the others' is their name."""


@dataclass(frozen=True)
class ImagePaths:
    """Where things are inside an image; the templates read these as ``paths.<name>``."""

    kit: str = "/opt/hpcai"
    """What stays at run time: the venv, the recipe, the provenance, the package list."""
    venv: str = "/opt/hpcai/venv"
    """The stack's Python environment (a venv on pip sites, a conda env on conda sites)."""
    conda: str = "/opt/hpcai/conda"
    """The conda installation of a conda site."""
    kit_source: str = "/opt/hpcai/src"
    """The kit's source, installed into the venv by the last step."""
    recipe: str = "/opt/hpcai/recipe"
    """The image's own rendered recipe (Dockerfile, Singularity.def, provenance.json)."""
    provenance: str = "/opt/hpcai/provenance.json"
    """The image's provenance record (``$HPCAI_PROVENANCE``)."""
    packages: str = "/opt/hpcai/packages.txt"
    """``pip freeze --all`` of the built image."""
    kept_constraints: str = "/opt/hpcai/constraints.txt"
    """A pip site's constraints, kept at run time; derived images install under them too."""
    derived: str = "/opt/hpcai/derived"
    """What a derived image adds: its constraints and its package list."""
    build_only: str = "/opt/hpcai-build"
    """Build-only inputs, removed by the last step so that nothing refers to them at run time."""
    options: str = "/opt/hpcai-build/options"
    """Where the build context's ``build/options/`` lands (``options.sh``: CA bundle, mirrors). Not under /tmp:
    Apptainer binds the host's /tmp over the image's during %post, which would hide what %files put there."""
    constraints: str = "/opt/hpcai-build/constraints"
    """Where the build context's ``constraints/`` lands; every pip install of the stack reads it."""
    wheels: str = "/opt/hpcai-build/wheels"
    """Where the build context's ``build/wheels/`` lands (a staged Horovod wheel, or nothing)."""
    patches: str = "/opt/hpcai-build/patches"
    """Where the build context's ``patches/`` lands (the site's Horovod patches)."""
    cuda_wheels_ld_conf: str = "/etc/ld.so.conf.d/hpcai-cuda-wheels.conf"
    """A ``pypi-wheels`` image's list of the library directories of NVIDIA's wheels for the dynamic loader, so that
    the pinned CUDA runtime, cuDNN and NCCL load by soname."""


IMAGE_PATHS = ImagePaths()


@dataclass(frozen=True)
class ContextPaths:
    """Where a staged build context holds each input, relative to the context: `hpcai build` writes them there and
    the recipes copy them from there into :class:`ImagePaths`."""

    options: str = "build/options"
    """``options.sh`` (CA bundle, pip index) and the CA bundle."""
    wheels: str = "build/wheels"
    """Prebuilt wheels the recipe may install (the host's Horovod wheel when its record matches)."""
    recipe: str = "recipe"
    """The rendered recipe and its provenance record."""
    kit: str = "kit"
    """The kit's source."""
    constraints: str = "constraints"
    """The site's pip constraints file."""
    patches: str = "patches"
    """The site's Horovod patches."""


CONTEXT_PATHS = ContextPaths()

PROVENANCE_VARIABLE = "HPCAI_PROVENANCE"
"""Names the provenance file; images set it to :attr:`ImagePaths.provenance`."""
SITE_VARIABLE = "HPCAI_SITE"
"""Names the site an image (or a host run) belongs to."""
WORKER_ADDRESS_VARIABLE = "HPCAI_WORKER_ADDRESS"
"""``--backend mwms``: when set, the address at which every worker is reached (the emulated cluster sets 127.0.0.1:
its nodes' names do not resolve)."""
