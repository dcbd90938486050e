"""What a build of a site's image takes from the recipe step, decided once and handed down to :mod:`hpcai_tf.image`.

The image step never asks the catalog or the renderer again: it stages :attr:`BuildInputs.files`, the constraints
and the patches named here, and tags the image with :attr:`BuildInputs.tag`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hpcai_tf.catalog import Site
from hpcai_tf.recipes.constraints import check_constraints
from hpcai_tf.recipes.render import constraints_file, files_digest, patch_files, render_site, sif_path_for, tag_for


@dataclass(frozen=True)
class BuildInputs:
    """A site's rendered recipes and the files they copy from the build context."""

    site: Site
    files: dict[str, str]
    """``recipes/<site>/``: file name -> text (Dockerfile, Singularity.def, provenance.json)."""
    constraints: Path | None
    """``containers/constraints/<site>.txt``, checked against the pins; ``None`` for a conda site."""
    patches: list[Path]
    """The Horovod patch files the site names, each checked to exist."""
    digest: str
    """sha256 of :attr:`files`: the tag and the SIF name carry its first 12 hex digits."""

    @property
    def tag(self) -> str:
        """The Docker tag, as :func:`hpcai_tf.recipes.render.image_tag` gives it."""
        return tag_for(self.site.id, self.digest)

    @property
    def sif_path(self) -> Path:
        """The SIF, as :func:`hpcai_tf.recipes.render.sif_path` gives it."""
        return sif_path_for(self.site.id, self.digest)


def build_inputs(site: Site) -> BuildInputs:
    """Check and render everything a build of ``site`` needs: patches, constraints (not stale), recipe files."""
    patches = patch_files(site)
    check_constraints(site)
    constraints = constraints_file(site)
    files = render_site(site)
    return BuildInputs(site=site, files=files, constraints=constraints, patches=patches, digest=files_digest(files))
