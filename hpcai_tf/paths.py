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
