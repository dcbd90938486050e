"""Retired systems (issue #18): their pages say so and name the kit's successor, or why there is none."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import assert_refused

from hpcai_tf.catalog import load_catalog, load_site
from hpcai_tf.paths import SITES_DIR
from hpcai_tf.sitedocs.site_page import site_page


def test_summit_and_bridges_ai_are_retired_and_the_others_not():
    retired = {s.id: s.retired for s in load_catalog() if s.retired}
    assert sorted(retired) == ["bridges-ai", "summit"]
    assert retired["bridges-ai"].successor == "bridges-2"
    assert retired["summit"].successor is None and retired["summit"].since == "November 2024"


def test_pages_place_the_retirement():
    summit = site_page(load_site("summit")).splitlines()
    line = next(x for x in summit if x.startswith("**Retired**"))
    assert line.startswith("**Retired** (November 2024); kept as the reproduction of the paper's runs. ")
    assert "The kit has no successor site." in line and "Frontier" in line and "2.14" in line
    bridges = next(x for x in site_page(load_site("bridges-ai")).splitlines() if x.startswith("**Retired**"))
    assert "Its successor in the kit: [`bridges-2`](bridges-2.md)." in bridges
    assert not [x for x in site_page(load_site("delta")).splitlines() if x.startswith("**Retired**")]


@pytest.mark.parametrize(
    ("new", "names"),
    [
        ('successor = "frontier"', ["retired.successor", "expected a site of the catalog", "'frontier'"]),
        ('successor = "bridges-ai"', ["retired.successor", "expected another site"]),
        ('successor = "Bridges 2"', ["retired.successor", "expected a value matching"]),
    ],
)
def test_a_successor_that_is_not_another_site_is_refused(hpcai, tmp_path: Path, new, names):
    catalog = tmp_path / "sites"
    shutil.copytree(SITES_DIR, catalog)
    path = catalog / "bridges-ai.toml"
    path.write_text(path.read_text().replace('successor = "bridges-2"', new, 1))
    result = hpcai("docs", "--out", str(tmp_path / "out"), env={"HPCAI_CATALOG": str(catalog)})
    assert_refused(result, "bridges-ai.toml", *names)
    assert not (tmp_path / "out").exists()
