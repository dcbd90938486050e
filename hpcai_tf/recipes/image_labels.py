"""The names of the labels the kit puts on images and containers, each defined once.

The recipes write them (``LABEL`` in a Dockerfile, ``%labels`` in a definition file), a build adds the build-time
ones, and ``hpcai inspect``, ``hpcai clean`` and ``hpcai verify`` find the kit's images and containers by them.
"""

from __future__ import annotations

OCI_TITLE = "org.opencontainers.image.title"
OCI_DESCRIPTION = "org.opencontainers.image.description"
OCI_VERSION = "org.opencontainers.image.version"
"""The kit's version on a site image."""
OCI_BASE_NAME = "org.opencontainers.image.base.name"

SITE_LABEL = "org.hpcai.site"
"""The site of a site image; every layer of a site build carries it from its second instruction."""
ARCH_LABEL = "org.hpcai.arch"
CHANNEL_LABEL = "org.hpcai.channel"
HOST_MPI_LABEL = "org.hpcai.host-mpi"
HOROVOD_PATCHES_LABEL = "org.hpcai.horovod-patches"
PIN_PREFIX = "org.hpcai.pin."
"""``org.hpcai.pin.<name>``: one label per pin of the stack."""
DERIVED_FROM_LABEL = "org.hpcai.derived-from"
"""The site whose image a derived image (``hpcai extend``) starts from."""
BASE_LABEL = "org.hpcai.base"
"""Label on every base image the kit made (``hpcai base``); its value is ``<suite>-minbase``."""
KIT_SOURCE_LABEL = "org.hpcai.kit-source"
"""Build-time label: sha256 of the kit source copied into the image (the tag hashes only the recipe)."""
RECIPE_LABEL = "org.hpcai.recipe-dir"
"""Build-time label of images built from a recipe directory (``hpcai build --recipe DIR``)."""
VERIFY_LABEL = "org.hpcai.verify"
"""On the containers of ``hpcai verify``: the image they run."""
INSPECT_LABEL = "org.hpcai.inspect"
"""On the containers ``hpcai inspect`` creates to read an image's recipe."""
CONTAINER_LABELS = (VERIFY_LABEL, INSPECT_LABEL)
"""The labels of every container the kit creates."""
