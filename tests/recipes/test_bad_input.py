"""Bad input to the catalog and recipe commands, tried as a user would: exit 2, one line naming the field or file,
no traceback, nothing written, replaced or left over (issue #14)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import assert_refused, tree

from hpcai_tf.catalog import MAX_VALUE_LENGTH
from hpcai_tf.paths import SITES_DIR


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    """A private copy of the catalog that a test may break."""
    sites = tmp_path / "sites"
    shutil.copytree(SITES_DIR, sites)
    return sites


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


# ------------------------------------------------------------------------------------------ output paths
def _special_targets(where: Path) -> dict[str, Path]:
    """A regular file, a symlink to it, a FIFO and a dangling symlink, each a wrong --out for a directory."""
    where.mkdir()
    (where / "file").write_text("keep me\n")
    (where / "link").symlink_to("file")
    os.mkfifo(where / "fifo")
    (where / "dangling").symlink_to("nowhere")
    return {name: where / name for name in ("file", "link", "fifo", "dangling")}


@pytest.mark.parametrize(
    "command", [["render", "--site", "local"], ["docs"], ["extend", "--site", "local", "--name", "x", "--pip", "a==1"]]
)
@pytest.mark.parametrize("target", ["file", "link", "fifo", "dangling", "/dev/full", "/proc/hpcai"])
def test_out_that_is_not_a_directory(hpcai, tmp_path: Path, command, target):
    """--out naming a file, a symlink, a FIFO, a device or a place under /proc: refused, nothing touched."""
    targets = _special_targets(tmp_path / "t")
    out = targets.get(target, Path(target))
    before = tree(tmp_path)
    result = hpcai(*command, "--out", str(out))
    assert_refused(result, str(out) if target.startswith("/") else target)
    assert tree(tmp_path) == before


def test_render_out_whose_site_directory_is_a_symlink(hpcai, tmp_path: Path):
    """recipes/<site>/Dockerfile as a symlink to a file elsewhere is not replaced by a regular file."""
    out = tmp_path / "out"
    (out / "local").mkdir(parents=True)
    (tmp_path / "elsewhere").write_text("not a recipe\n")
    (out / "local" / "Dockerfile").symlink_to(tmp_path / "elsewhere")
    before = tree(tmp_path)
    result = hpcai("render", "--site", "local", "--out", str(out))
    assert_refused(result, "Dockerfile", "symbolic link")
    assert tree(tmp_path) == before


# ------------------------------------------------------------------------------------ encodings and sizes
BAD_VALUES = [
    # (site file, text to replace, replacement, fragments of the message)
    ("local", 'summary = "', 'summary = "\\u0000', ["summary", "control characters", "\\x00"]),
    ("local", 'summary = "', 'summary = "\\u001b[31m', ["summary", "control characters", "\\x1b"]),
    ("local", 'summary = "', 'summary = "a\\nb', ["summary"]),
    ("local", 'summary = "', 'summary = "\\u2028', ["summary", "control characters"]),
    ("local", 'summary = "', 'summary = "' + "x" * 100_000, ["summary", f"at most {MAX_VALUE_LENGTH} characters"]),
    ("local", 'summary = "', 'summary = "' + "x" * 3_000_000, ["bytes", "at most 1048576"]),
    ("local", 'kind = "slurm"', 'kind = "slurm\\u0000"', ["scheduler.kind"]),
]


@pytest.mark.parametrize(("site", "old", "new", "names"), BAD_VALUES, ids=[str(i) for i in range(len(BAD_VALUES))])
def test_catalog_value_with_control_characters_or_too_long(hpcai, catalog: Path, tmp_path: Path, site, old, new, names):
    """NUL, ESC, newlines, line separators and multi-megabyte strings never reach a recipe."""
    _edit(catalog / f"{site}.toml", old, new)
    out = tmp_path / "out"
    result = hpcai("render", "--out", str(out), env={"HPCAI_CATALOG": str(catalog)})
    assert_refused(result, f"{site}.toml", *names)
    assert not out.exists()


def test_site_file_that_is_not_utf8(hpcai, catalog: Path, tmp_path: Path):
    """Invalid UTF-8 in a site file: the file, the line and what was expected."""
    path = catalog / "local.toml"
    path.write_bytes(path.read_bytes().replace(b'summary = "', b'summary = "\xff\xfe', 1))
    result = hpcai("render", "--out", str(tmp_path / "out"), env={"HPCAI_CATALOG": str(catalog)})
    line = assert_refused(result, "local.toml:", "not valid UTF-8")
    assert len(line) < 300
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------- types
BAD_TYPES = [
    ("local", "cores = 2\n", 'cores = "2"\n', ["node_types.0.cores", "expected a valid integer", "'2'"]),
    ("local", "cores = 2\n", "cores = true\n", ["node_types.0.cores", "expected a valid integer", "True"]),
    ("local", "cores = 2\n", "cores = 2.0\n", ["node_types.0.cores", "expected a valid integer"]),
    ("local", "bandwidth_gbps = 40.0", "bandwidth_gbps = inf", ["interconnect.intra_node.bandwidth_gbps", "finite"]),
    ("local", "bandwidth_gbps = 40.0", "bandwidth_gbps = nan", ["interconnect.intra_node.bandwidth_gbps", "finite"]),
    (
        "local",
        'launcher = "mpirun"',
        'launcher = "mpirun"\naccount_required = 0',
        ["scheduler.account_required", "boolean"],
    ),
    ("bridges-ai", 'name = "dgx2"', 'name = "apollo6500"', ["node_types.1.name", "unique", "'apollo6500'"]),
]


@pytest.mark.parametrize(("site", "old", "new", "names"), BAD_TYPES, ids=[str(i) for i in range(len(BAD_TYPES))])
def test_catalog_types_are_exact(hpcai, catalog: Path, tmp_path: Path, site, old, new, names):
    """No "2" for 2, no true for 1, no inf or nan, no node-type name twice."""
    _edit(catalog / f"{site}.toml", old, new)
    out = tmp_path / "out"
    result = hpcai("render", "--out", str(out), env={"HPCAI_CATALOG": str(catalog)})
    assert_refused(result, f"{site}.toml", *names)
    assert not out.exists()


@pytest.mark.parametrize("command", [["sites"], ["render"], ["docs"]])
@pytest.mark.parametrize("case", ["missing", "empty", "a-file", "toml-directory"])
def test_catalog_directory_that_holds_no_sites(hpcai, tmp_path: Path, command, case):
    """HPCAI_CATALOG pointing at nothing, at an empty directory, at a file, or holding a directory x.toml."""
    catalog = tmp_path / "sites"
    if case == "empty":
        catalog.mkdir()
    elif case == "a-file":
        catalog.write_text("")
    elif case == "toml-directory":
        shutil.copytree(SITES_DIR, catalog)
        (catalog / "x.toml").mkdir()
    out = tmp_path / "out"
    before = tree(tmp_path)
    result = (
        hpcai(*command, "--out", str(out), env={"HPCAI_CATALOG": str(catalog)})
        if command != ["sites"]
        else (hpcai(*command, env={"HPCAI_CATALOG": str(catalog)}))
    )
    assert_refused(result, "x.toml" if case == "toml-directory" else "sites")
    assert result.stdout == ""
    assert tree(tmp_path) == before


@pytest.mark.parametrize("site", ["../sites/local", "/etc/passwd", "local.toml", "Local", "local\n", ""])
def test_site_is_an_id_not_a_path(hpcai, tmp_path: Path, site):
    """--site takes a site id; a path to a file anywhere is refused."""
    result = hpcai("render", "--site", site, "--out", str(tmp_path / "out"))
    assert_refused(result, "--site", "site id")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------- patterns
@pytest.mark.parametrize(
    ("flag", "value"),
    [("--name", "tools\n"), ("--pip", "astropy==6.0.1\n"), ("--apt", "vim\n"), ("--name", "tools\nRUN id")],
)
def test_extend_matches_the_whole_string(hpcai, tmp_path: Path, flag, value):
    """A trailing newline does not get past a pattern check and into a derived recipe."""
    values = {"--name": "tools", "--pip": "astropy==6.0.1", "--apt": "vim", flag: value}
    out = tmp_path / "out"
    args = [item for key, val in values.items() for item in (key, val)]
    result = hpcai("extend", "--site", "local", *args, "--out", str(out))
    assert_refused(result, flag)
    assert not out.exists()
