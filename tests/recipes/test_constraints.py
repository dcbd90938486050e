"""Pip constraints per site: committed files in sync with the catalog, their exact text, and where builds use them.

No network here: the resolver itself runs in test_pins_resolve.py.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from hpcai_tf.catalog import load_catalog, load_site
from hpcai_tf.errors import KitError
from hpcai_tf.image.context import BuildOptions, stage_context
from hpcai_tf.paths import SITES_DIR
from hpcai_tf.recipes.build_inputs import build_inputs
from hpcai_tf.recipes.constraints import (
    MARKERS,
    PINNED,
    RESOLVER,
    Resolution,
    canonical,
    check_constraints,
    check_patch_markers,
    markers_description,
    pip_report,
    python_minor,
    read_constraints,
    render_constraints,
    stale_reason,
    top_level_pins,
)
from hpcai_tf.recipes.render import CONSTRAINTS_DIR, constraints_path, render_provenance

PIP_SITES = [s.id for s in load_catalog() if s.stack.channel == "pip"]
CONDA_SITES = [s.id for s in load_catalog() if s.stack.channel != "pip"]


@pytest.mark.parametrize("site_id", PIP_SITES)
def test_committed_constraints_are_in_sync_with_the_catalog(site_id: str):
    """Resolved for the site's pins, Python and platform; no top-level pin repeated; sorted NAME==VERSION lines."""
    site = load_site(site_id)
    assert stale_reason(site) is None
    committed = read_constraints(constraints_path(site))
    assert committed.header[PINNED].split() == top_level_pins(site)
    assert committed.header[MARKERS] == markers_description(site)
    assert f"--python-version {python_minor(site)} " in committed.header[RESOLVER]
    names = list(committed.versions)
    assert names == sorted(names, key=canonical) and len(names) > 20
    assert all(re.fullmatch(r"[0-9][0-9A-Za-z.+!]*", v) for v in committed.versions.values())


def test_only_pip_sites_have_a_constraints_file(hpcai):
    """Conda sites are solved by conda: no file, and `hpcai constraints` refuses them in one line."""
    assert sorted(p.stem for p in CONSTRAINTS_DIR.glob("*.txt")) == PIP_SITES
    result = hpcai("constraints", "--site", CONDA_SITES[0])
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "conda solves its env" in result.stderr


def test_provenance_records_the_constraints_digest():
    """provenance.json: the file and its sha256 on a pip site, null on a conda site."""
    local = load_site("local")
    record = json.loads(render_provenance(local))["constraints"]
    assert record == {
        "file": "containers/constraints/local.txt",
        "sha256": hashlib.sha256(constraints_path(local).read_bytes()).hexdigest(),
    }
    assert json.loads(render_provenance(load_site("summit")))["constraints"] is None


@pytest.fixture
def bumped_catalog(tmp_path: Path) -> Path:
    """The local site with NumPy moved to 2.4.5 and nothing resolved again."""
    sites = tmp_path / "sites"
    sites.mkdir()
    text = (SITES_DIR / "local.toml").read_text()
    (sites / "local.toml").write_text(text.replace('numpy = "2.4.6"', 'numpy = "2.4.5"'))
    return sites


def test_a_changed_pin_makes_the_build_refuse_the_stale_constraints(bumped_catalog: Path, tmp_path: Path):
    """A pin changed without `make constraints`: staging the build stops in one line that names the pin."""
    site = load_site("local", bumped_catalog)
    with pytest.raises(KitError) as err:
        check_constraints(site)
    assert str(err.value).startswith("site local: ") and str(err.value).endswith(
        "constraints/local.txt was resolved for other pins (the catalog now has numpy==2.4.5); "
        "run `hpcai constraints --site local` (make constraints)"
    )
    with pytest.raises(KitError, match=re.escape("numpy==2.4.5")):
        stage_context(build_inputs(site), BuildOptions(wheels_dir=None), dest=tmp_path / "ctx")
    assert not (tmp_path / "ctx").exists()


LOCAL_CONSTRAINTS = """\
# pip constraints of the "local" image: the versions pip's resolver chose for what its pins pull in.
# Written by `hpcai constraints --site local` on 2026-11-22; do not edit. After changing a pin in
# containers/sites/local.toml, run `make constraints` (this file, then recipes/ and docs/).
# resolver: pip 25.3 install --dry-run --only-binary=:all: --python-version 3.11 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 --index-url https://pypi.org/simple
# markers: implementation_version=3.11.2 platform_machine=x86_64 python_full_version=3.11.2 python_version=3.11
# pinned: tensorflow-cpu==2.21.0 numpy==2.4.6 mpi4py==4.1.2 h5py==3.14.0 lalsuite==7.26.16 galsim==2.8.5 horovod==0.28.1 tf-keras==2.21.0 pip==25.3 setuptools==80.9.0 wheel==0.45.1
LSSTDESC.Coord==1.3.1
protobuf==7.36.2
typing_extensions==4.16.0
"""


def test_constraints_text_holds_only_what_the_pins_pull_in():
    """local: the header says how and when; the body is the resolution less the top-level pins, by name."""
    versions = {
        "tensorflow-cpu": "2.21.0",
        "protobuf": "7.36.2",
        "numpy": "2.4.6",
        "typing_extensions": "4.16.0",
        "mpi4py": "4.1.2",
        "h5py": "3.14.0",
        "lalsuite": "7.26.16",
        "GalSim": "2.8.5",
        "LSSTDESC.Coord": "1.3.1",
        "setuptools": "80.9.0",
        "wheel": "0.45.1",
    }
    resolution = Resolution(versions=versions, pip_version="25.3", environment={})
    text = render_constraints(load_site("local"), resolution, "https://pypi.org/simple", "2026-11-22")
    assert text == LOCAL_CONSTRAINTS


def test_a_top_level_pin_resolved_elsewhere_is_refused():
    """pip's answer must hold every catalog pin; one that moved is a one-line error."""
    resolution = Resolution(versions={"numpy": "1.26.3"}, pip_version="25.3", environment={})
    with pytest.raises(KitError, match=r"^site local: pip resolved numpy 1.26.3, the catalog pins 2.4.6$"):
        render_constraints(load_site("local"), resolution, "https://pypi.org/simple", "2026-11-22")


def _report(requires: str) -> dict:
    env = {
        "python_version": "3.10",
        "python_full_version": "3.10.0",
        "implementation_version": "3.10.0",
        "platform_machine": "x86_64",
        "sys_platform": "linux",
        "os_name": "posix",
        "platform_system": "Linux",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_version": "",
    }
    return {"environment": env, "install": [{"metadata": {"name": "pkg", "requires_dist": [requires]}}]}


def test_a_marker_on_the_patch_release_of_an_unpinned_python_is_refused():
    """bridges-ai pins Python 3.10: `< '3.11'` holds for every 3.10.z, `< '3.10.5'` does not."""
    site = load_site("bridges-ai")
    check_patch_markers(site, _report("typing-extensions>=4.13.2; python_full_version < '3.11'"))
    with pytest.raises(KitError, match=r"depends on the patch release of Python 3.10; pin it in stack.python$"):
        check_patch_markers(site, _report("foo; python_full_version < '3.10.5'"))


def test_pip_runs_with_the_image_markers_not_the_hosts():
    """A requirement for Python < 3.11 is sought for bridges-ai (3.10) and ignored for local (3.11); no index."""
    requirement = 'hpcai-no-such-package==1; python_version < "3.11"'
    with pytest.raises(KitError, match="No matching distribution found for hpcai-no-such-package==1"):
        pip_report(load_site("bridges-ai"), ["--no-index", requirement], "https://pypi.org/simple")
    report = pip_report(load_site("local"), ["--no-index", requirement], "https://pypi.org/simple")
    assert report["install"] == [] and report["environment"]["python_full_version"] == "3.11.2"
