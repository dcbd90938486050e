"""Which Horovod patches a TensorFlow release needs is data (containers/patches/patches.toml), and the renderer
refuses a pip site that does not name them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hpcai_tf.catalog import load_site
from hpcai_tf.errors import KitError
from hpcai_tf.paths import SITES_DIR
from hpcai_tf.recipes.patches import PatchRule, missing_patches, needed_patches, patch_rules

BOTH = ["horovod-0.28.1-no-xla-ops", "horovod-0.28.1-tf-keras-backend"]


def _local_on(tmp_path: Path, tensorflow: str, keras: str, patches: list[str]) -> Path:
    """A catalog holding the local site with another TensorFlow pin and patch list."""
    text = (SITES_DIR / "local.toml").read_text()
    text = re.sub(r'(?m)^tensorflow = ".*"$', f'tensorflow = "{tensorflow}"', text)
    text = re.sub(r'(?m)^keras = ".*"$', f'keras = "{keras}"', text)
    text = re.sub(r"(?m)^horovod_patches = .*\n", "", text)
    listed = ", ".join(f'"{p}"' for p in patches)
    text = re.sub(r'(?m)^(horovod = ".*")$', rf"\1\nhorovod_patches = [{listed}]", text)
    sites = tmp_path / "sites"
    sites.mkdir()
    (sites / "local.toml").write_text(text)
    return sites


def test_the_rules_name_both_patches_from_tensorflow_2_16():
    rules = patch_rules()
    assert [r.name for r in rules] == BOTH
    assert {r.tensorflow_range for r in rules} == {">= 2.16"}
    assert needed_patches("0.28.1", "2.15.1") == []
    assert needed_patches("0.28.1", "2.16.0") == BOTH
    assert needed_patches("0.28.1", "2.21.0") == BOTH
    assert needed_patches("0.28.0", "2.21.0") == []


def test_an_upper_bound_ends_the_range():
    rule = PatchRule("p", "0.28.1", "2.16", "fixes", "https://example.org", tensorflow_below="2.20")
    assert [rule.needed_by("0.28.1", v) for v in ("2.15.1", "2.16.0", "2.19.1", "2.20.0")] == [False, True, True, False]
    assert rule.tensorflow_range == ">= 2.16, < 2.20"


def test_a_site_missing_a_needed_patch_is_refused_and_nothing_is_written(tmp_path: Path, hpcai):
    """TensorFlow 2.21 with only one of the two patches: one line naming the field and the missing patch."""
    catalog = _local_on(tmp_path, "2.21.0", "tf-keras", BOTH[:1])
    assert missing_patches(load_site("local", catalog)) == BOTH[1:]
    out = tmp_path / "out"
    result = hpcai("render", "--out", str(out), env={"HPCAI_CATALOG": str(catalog)})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith("hpcai: error: site local: stack.horovod_patches: Horovod 0.28.1 built against ")
    assert "TensorFlow 2.21.0 needs 'horovod-0.28.1-tf-keras-backend' (" in lines[0]
    assert not out.exists()


def test_a_site_naming_every_needed_patch_renders(tmp_path: Path):
    from hpcai_tf.recipes.render import patch_files

    site = load_site("local", _local_on(tmp_path, "2.21.0", "tf-keras", BOTH))
    assert [p.stem for p in patch_files(site)] == BOTH


def test_conda_sites_need_no_patch():
    """HAL's Open-CE channel builds Horovod itself: the sdist rules do not apply."""
    assert missing_patches(load_site("hal")) == []


def test_a_rule_without_its_patch_file_is_refused(tmp_path: Path):
    rules = tmp_path / "patches.toml"
    rules.write_text(
        '[[patch]]\nname = "absent"\nhorovod = "0.28.1"\ntensorflow_from = "2.16"\nfixes = "x"\nupstream = "y"\n'
    )
    with pytest.raises(KitError, match=r"patch\.0: no file containers/patches/absent\.patch"):
        patch_rules(rules)
