"""The pip pins of every pip-channel image resolve on PyPI, as binaries, for the image's Python and arch.

This is what can be checked here of images that cannot be built here (Bridges-AI needs a CUDA base image):
pip's resolver, run for the image's platform, must find a wheel for every pin and no conflict between them.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hpcai_tf.catalog import load_catalog
from hpcai_tf.recipes import pip_packages

PIP_SITES = [s for s in load_catalog() if s.stack.channel == "pip"]

@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("site", PIP_SITES, ids=[s.id for s in PIP_SITES])
def test_pip_pins_resolve_for_the_image_platform(site, tmp_path):
    """`pip install --dry-run --only-binary=:all:` for the image's Python and arch installs exactly the pins."""
    python = ".".join(site.stack.python.split(".")[:2])
    platforms = [f"manylinux{tag}_{site.arch}" for tag in ("2014", "_2_17", "_2_28")]
    packages = pip_packages(site)
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
               "--report", str(tmp_path / "report.json"), "--target", str(tmp_path / "target"),
               "--python-version", python, "--only-binary=:all:",
               *[arg for p in platforms for arg in ("--platform", p)], *packages]
    result = subprocess.run(command, capture_output=True, text=True, timeout=550, check=False)
    assert result.returncode == 0, result.stderr[-2000:]

    installed = {i["metadata"]["name"].lower(): i["metadata"]["version"]
                 for i in json.loads((tmp_path / "report.json").read_text())["install"]}
    for spec in packages:
        name, version = spec.split("==")
        assert installed[name.lower()] == version, spec
