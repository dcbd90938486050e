"""The committed recipes and generated docs are exactly what the catalog and templates render now."""

from __future__ import annotations

import shutil
from pathlib import Path

from hpcai_tf.catalog import load_catalog
from hpcai_tf.recipes.render import image_tag

REPO = Path(__file__).resolve().parents[2]
SITES = [s.id for s in load_catalog()]


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_committed_recipes_match_a_fresh_render(hpcai, tmp_path: Path):
    """recipes/ holds exactly what `hpcai render` writes now (rendered elsewhere, so the check can fail); run
    `make recipes` after changing a site or template."""
    out = tmp_path / "recipes"
    result = hpcai("render", "--out", str(out))
    assert result.returncode == 0, result.stderr
    rendered, committed = _files(out), _files(REPO / "recipes")
    assert sorted(committed) == sorted(rendered)
    stale = [name for name in rendered if committed[name] != rendered[name]]
    assert stale == [], f"stale: {', '.join('recipes/' + s for s in stale)}: run `make recipes`"


def test_committed_docs_match_a_fresh_render(hpcai, tmp_path: Path):
    """Every page `hpcai docs` generates is committed as it renders now, and docs/sites/ has no other page."""
    out = tmp_path / "docs"
    result = hpcai("docs", "--out", str(out))
    assert result.returncode == 0, result.stderr
    rendered = _files(out)
    assert {"stack.md", "catalog.md", "compatibility.md"} <= set(rendered)
    assert sorted(p.stem for p in (REPO / "docs/sites").glob("*.md")) == SITES
    stale = [name for name, data in rendered.items() if (REPO / "docs" / name).read_bytes() != data]
    assert stale == [], f"stale: {', '.join('docs/' + s for s in stale)}: run `make recipes`"


def test_the_sync_check_sees_an_edited_template(hpcai, tmp_path: Path):
    """A template edited without re-rendering: the fresh render differs from the committed recipes."""
    root = tmp_path / "kit"
    for name in ("containers", "requirements", "launch", "docs"):
        shutil.copytree(REPO / name, root / name)
    (root / "recipes").mkdir()
    template = root / "containers/templates/Dockerfile.j2"
    template.write_text(template.read_text().replace("SHELL [", "# edited\nSHELL [", 1))
    out = tmp_path / "recipes"
    assert hpcai("render", "--out", str(out), env={"HPCAI_ROOT": str(root)}).returncode == 0
    rendered, committed = _files(out), _files(REPO / "recipes")
    assert sorted(rendered) == sorted(committed)
    assert {n for n in rendered if rendered[n] != committed[n]} == {f"{s}/Dockerfile" for s in SITES}


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
