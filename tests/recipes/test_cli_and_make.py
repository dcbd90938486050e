"""The CLI and the Makefile targets a user runs first: `hpcai --version`, `hpcai sites`, `make help`, `make recipes`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from hpcai_tf import __version__
from hpcai_tf.catalog import load_catalog
from hpcai_tf.recipes.render import render_site

REPO = Path(__file__).resolve().parents[2]


def test_version(hpcai):
    """`hpcai --version` prints the kit's version."""
    result = hpcai("--version")
    assert result.returncode == 0 and result.stdout == f"hpcai {__version__}\n"


def test_sites_table_lists_each_site_and_its_pins(hpcai):
    """`hpcai sites` prints one row per site with its TensorFlow and Horovod pins."""
    result = hpcai("sites")
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| `")]
    ids = ["bridges-2", "bridges-ai", "delta", "hal", "local", "local-tf215", "summit"]
    assert [row.split("|")[1].strip() for row in rows] == [f"`{i}`" for i in ids]
    local = next(row for row in rows if "`local`" in row)
    assert "tensorflow-cpu 2.21.0" in local and "| 0.28.1 +2 patches |" in local
    old = next(row for row in rows if "`local-tf215`" in row)
    assert "tensorflow-cpu 2.15.1" in old and "| 0.28.1 |" in old


def test_every_command_has_help(hpcai):
    """Each sub-command answers --help with a usage line."""
    top = hpcai("--help")
    assert top.returncode == 0
    for command in ("sites", "render", "constraints", "extend", "docs"):
        result = hpcai(command, "--help")
        assert result.returncode == 0 and result.stdout.startswith(f"usage: hpcai {command}"), command


def _make(*targets: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    return subprocess.run(
        ["make", "--no-print-directory", *targets],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )


def test_make_help_lists_the_targets():
    """`make help` names every target a user runs, with a line each."""
    result = _make("help")
    assert result.returncode == 0, result.stderr
    for target in ("setup", "demo", "test", "recipes", "constraints", "image", "base-image", "bench", "clean", "help"):
        assert f"make {target} " in result.stdout, target


def test_make_recipes_renders_every_site(tmp_path: Path):
    """`make recipes` writes recipes/<site>/ and the generated docs (here into a temporary directory, so that the
    checkout stays as committed); what it writes equals the committed files."""
    recipes, docs = tmp_path / "recipes", tmp_path / "docs"
    result = _make("recipes", f"RECIPES_OUT={recipes}", f"DOCS_OUT={docs}")
    assert result.returncode == 0, result.stderr
    for site in load_catalog():
        for name, text in render_site(site).items():
            path = recipes / site.id / name
            assert str(path) in result.stdout
            assert path.read_text() == text == (REPO / "recipes" / site.id / name).read_text()
    assert str(docs / "stack.md") in result.stdout
    for page in sorted(docs.rglob("*.md")):
        assert page.read_text() == (REPO / "docs" / page.relative_to(docs)).read_text(), page
