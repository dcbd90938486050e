"""The committed recipes and generated docs are exactly what the catalog and templates render now."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcai_tf.catalog import load_catalog
from hpcai_tf.recipes.render import image_tag, render_site
from hpcai_tf.sitedocs.site_page import site_page
from hpcai_tf.sitedocs.stack_table import catalog_reference, stack_page

REPO = Path(__file__).resolve().parents[2]
SITES = [s.id for s in load_catalog()]


@pytest.mark.parametrize("site", SITES)
def test_committed_recipes_match_templates(site: str):
    """recipes/<site>/ holds what `hpcai render` writes; run `make recipes` after changing a site or template."""
    rendered = render_site(next(s for s in load_catalog() if s.id == site))
    committed = {p.name: p.read_text() for p in (REPO / "recipes" / site).iterdir()}
    assert committed.keys() == rendered.keys()
    for name, text in rendered.items():
        assert committed[name] == text, f"recipes/{site}/{name} is stale: run `make recipes`"


def test_generated_docs_match_catalog():
    """docs/stack.md, docs/catalog.md and docs/sites/*.md are regenerated from the catalog (`make recipes`)."""
    assert (REPO / "docs/stack.md").read_text() == stack_page(load_catalog())
    assert (REPO / "docs/catalog.md").read_text() == catalog_reference()
    assert sorted(p.stem for p in (REPO / "docs/sites").glob("*.md")) == SITES
    for site in load_catalog():
        assert (REPO / f"docs/sites/{site.id}.md").read_text() == site_page(site), f"docs/sites/{site.id}.md is stale"


def test_rendering_is_deterministic(hpcai, tmp_path: Path):
    """Two renders through the CLI are byte-identical."""
    first, second = tmp_path / "a", tmp_path / "b"
    assert hpcai("render", "--out", str(first)).returncode == 0
    assert hpcai("render", "--out", str(second)).returncode == 0
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert len(files) == 3 * len(SITES)
    for rel in files:
        assert (first / rel).read_bytes() == (second / rel).read_bytes()


def test_a_changed_pin_is_a_new_tag(tmp_path: Path):
    """The image tag follows the rendered recipe: change a pin, get another tag."""
    local = next(s for s in load_catalog() if s.id == "local")
    bumped = local.model_copy(update={"stack": local.stack.model_copy(update={"numpy": "1.26.3"})})
    assert image_tag(local).startswith("hpcai/local:")
    assert image_tag(bumped) != image_tag(local)
