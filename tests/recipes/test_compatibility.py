"""docs/compatibility.md: the marks name tests that exist, and only what builds here is marked as exercised."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from hpcai_tf.catalog import load_catalog, load_site
from hpcai_tf.errors import KitError
from hpcai_tf.image.host import REFERENCE_HOST, build_blockers
from hpcai_tf.sitedocs.compatibility import MARKS, compatibility_page, era, read_evidence

REPO = Path(__file__).resolve().parents[2]
MAKEFILE = (REPO / "Makefile").read_text()


def _test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def test_every_named_check_is_a_test_of_the_suite():
    """A mark that names a test which does not exist could never fail: each one is checked here."""
    evidence = read_evidence()
    named = [check for marks in evidence.sites.values() for mark in marks.values() for check in mark.checks]
    assert named
    for check in named:
        file, _, function = check.partition("::")
        path = REPO / file
        assert path.is_file(), check
        assert function in _test_functions(path), check


def test_exactly_the_sites_that_build_here_are_marked():
    """A site the reference machine can build has every mark, or says in [not_built] why no test builds it yet; one
    it cannot build has none (rendered only). A mark that CI does not run names the make target that does."""
    evidence = read_evidence()
    for site in load_catalog():
        buildable = not build_blockers(site, REFERENCE_HOST)
        marks = evidence.sites.get(site.id, {})
        if buildable and site.id in evidence.not_built:
            assert marks == {}, site.id
        else:
            assert (sorted(marks) == sorted(MARKS)) if buildable else (marks == {}), site.id
            assert site.id not in evidence.not_built, site.id
        for mark in marks.values():
            assert mark.ci or re.search(rf"^{mark.make_target}:", MAKEFILE, re.M), (site.id, mark)


def test_eras_follow_the_current_tensorflow():
    assert era(load_site("local"), "2.21") == "current"
    assert era(load_site("hal"), "2.21") == "reproduction: the paper's code path (Keras 2 inside tf.keras)"


def test_the_matrix_rows_of_the_two_local_stacks_and_hal():
    page = compatibility_page(load_catalog())
    matrix = page.split("\n## ")[0]
    rows = {line.split(" | ")[0][2:]: line for line in matrix.splitlines() if line.startswith("| `")}
    assert rows["`local`"] == (
        "| `local` | current | 3.11.2 | tensorflow-cpu 2.21.0 | tf-keras 2.21.0 (Keras 2), TF_USE_LEGACY_KERAS=1 | "
        "0.28.1 + `horovod-0.28.1-no-xla-ops`, `horovod-0.28.1-tf-keras-backend` | "
        "host openmpi 4.1.4, image Open MPI 4.1.4 (hybrid) | none | built, verified, trained |"
    )
    assert rows["`local-tf215`"] == (
        "| `local-tf215` | reproduction: the paper's code path (Keras 2 inside tf.keras) | 3.11.2 | "
        "tensorflow-cpu 2.15.1 | Keras 2 inside tf.keras | 0.28.1, unpatched | "
        "host openmpi 4.1.4, image Open MPI 4.1.4 (hybrid) | none | built, verified, trained |"
    )
    assert rows["`hal`"].endswith(
        "| 11.8.0 | rendered only: it builds a ppc64le image and the reference machine is x86_64 with no ppc64le "
        "emulation; and it builds FROM registry.access.redhat.com/ubi8/ubi:8.8, which is not in the Docker engine "
        "and cannot be pulled (no registry is reachable there) |"
    )
    assert "| `horovod-0.28.1-no-xla-ops` | 0.28.1 | >= 2.16 |" in page


def test_a_mark_for_a_site_that_does_not_exist_is_refused(tmp_path: Path):
    path = tmp_path / "compatibility.toml"
    path.write_text('current_tensorflow = "2.21"\n[sites.nowhere.built]\ncheck = "x"\nci = true\n')
    with pytest.raises(KitError, match=r"sites\.nowhere: not a site of the catalog"):
        compatibility_page(load_catalog(), read_evidence(path))


def test_an_unknown_mark_is_refused(tmp_path: Path):
    path = tmp_path / "compatibility.toml"
    path.write_text('current_tensorflow = "2.21"\n[sites.local.benchmarked]\ncheck = "x"\nci = true\n')
    with pytest.raises(KitError, match=r"sites\.local\.benchmarked: expected one of built, verified, trained"):
        read_evidence(path)
