"""Where the kit's data lives: the checkout that holds ``containers/``, ``launch/`` and ``recipes/``.

The host-side commands (catalog, recipes, launchers, builds) run from a checkout or an editable install,
so the data directories sit next to the package. ``HPCAI_ROOT`` points elsewhere when needed.
"""

from __future__ import annotations

import os
from pathlib import Path

KIT_ROOT = Path(os.environ.get("HPCAI_ROOT") or Path(__file__).resolve().parent.parent)
CONTAINERS_DIR = KIT_ROOT / "containers"
SITES_DIR = Path(os.environ.get("HPCAI_CATALOG") or CONTAINERS_DIR / "sites")
"""The site catalog; ``HPCAI_CATALOG`` names another directory of site files (e.g. a site's own)."""
TEMPLATES_DIR = CONTAINERS_DIR / "templates"
PATCHES_DIR = CONTAINERS_DIR / "patches"
RECIPES_DIR = KIT_ROOT / "recipes"
LAUNCH_DIR = KIT_ROOT / "launch"
DOCS_DIR = KIT_ROOT / "docs"
REQUIREMENTS_DIR = KIT_ROOT / "requirements"
"""The host venv's pins; ``bootstrap.txt`` (pip, setuptools, wheel) is every image's too."""
CONSTRAINTS_DIR = CONTAINERS_DIR / "constraints"
"""``<site>.txt``: pip constraints of a pip-channel site, written by ``hpcai constraints``."""

BUILD_DIR = KIT_ROOT / "build"
"""What builds leave in the checkout (ignored by git; ``hpcai clean`` removes it)."""
CONTEXT_DIR = BUILD_DIR / "context"
"""Staged build contexts: ``<site>/`` and ``recipe-<name>/``."""
ROOTS_DIR = BUILD_DIR / "roots"
"""debootstrap roots of base images, while they are made."""
LOGS_DIR = BUILD_DIR / "logs"
IMAGES_DIR = BUILD_DIR / "images"
"""Singularity images (SIF files)."""
EXPORT_DIR = BUILD_DIR / "export"
"""``docker save`` archives and exported SIFs of ``hpcai export``."""
CACHE_DIR = KIT_ROOT / ".cache"
"""Caches of the kit: ``wheels/``, ``docker/`` (the kit's own Docker daemon)."""
WHEELS_DIR = CACHE_DIR / "wheels"
"""Prebuilt Horovod wheels of ``scripts/setup-venv.sh``, with their sidecar records."""
