"""The pins and constraints of every image resolve on PyPI, as binaries, for the image's Python, arch and markers.

This is what can be checked here of images that cannot be built here (Bridges-AI needs a CUDA base image, HAL and
Summit are ppc64le): pip's resolver, run for the image's platform, must find a wheel for every pin and no conflict.
"""

from __future__ import annotations

import pytest

from hpcai_tf.catalog import load_catalog
from hpcai_tf.recipes.constraints import canonical, pinned_versions, read_constraints, resolve, stack_requirements
from hpcai_tf.recipes.render import constraints_path

PIP_SITES = [s for s in load_catalog() if s.stack.channel == "pip"]
CONDA_SITES = [s for s in load_catalog() if s.stack.channel != "pip" and s.stack.extra_pip]


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("site", PIP_SITES, ids=[s.id for s in PIP_SITES])
def test_pip_pins_resolve_under_the_committed_constraints(site):
    """The image's stack under its constraints: every pin and every constraint, and nothing that floats."""
    resolution = resolve(site, stack_requirements(site), constraints=constraints_path(site))
    committed = read_constraints(constraints_path(site)).versions
    resolved = pinned_versions(site, resolution)  # checks each top-level pin resolved to itself
    assert {canonical(n): v for n, v in resolved.items()} == {canonical(n): v for n, v in committed.items()}


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("site", CONDA_SITES, ids=[s.id for s in CONDA_SITES])
def test_conda_sites_extra_pip_pulls_in_nothing_unpinned(site):
    """A conda site's pip step (extra_pip into the conda env) has a ppc64le wheel and no dependency of its own.

    Such a site has no constraints file (conda solves its env); should an extra_pip package need others, pip would
    choose them unpinned, and this test says so.
    """
    resolution = resolve(site, site.stack.extra_pip)
    pins = dict(spec.split("==") for spec in site.stack.extra_pip)
    assert {canonical(n): v for n, v in resolution.versions.items()} == {canonical(n): v for n, v in pins.items()}
