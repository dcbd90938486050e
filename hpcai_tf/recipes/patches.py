"""Which Horovod patches a TensorFlow release needs, from ``containers/patches/patches.toml``.

The renderer refuses a pip site whose TensorFlow needs a patch the site does not name (:func:`missing_patches`);
the compatibility matrix prints the same rules. Conda sites take a Horovod their channel built and need none.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import tomllib

from hpcai_tf.catalog import Site
from hpcai_tf.errors import KitError
from hpcai_tf.files import display_path, read_text_file
from hpcai_tf.paths import PATCHES_DIR

PATCH_RULES = PATCHES_DIR / "patches.toml"
FIELDS = {"name", "horovod", "tensorflow_from", "tensorflow_below", "fixes", "upstream"}
REQUIRED = FIELDS - {"tensorflow_below"}


def patch_path(name: str) -> Path:
    """The file of patch ``name``: ``containers/patches/<name>.patch``."""
    return PATCHES_DIR / f"{name}.patch"


def release(version: str) -> tuple[int, ...]:
    """``"2.21.0"`` -> ``(2, 21, 0)``."""
    return tuple(int(part) for part in version.split("."))


@dataclass(frozen=True)
class PatchRule:
    """One patch file and the Horovod release and TensorFlow range that need it."""

    name: str
    horovod: str
    tensorflow_from: str
    fixes: str
    upstream: str
    tensorflow_below: str | None = None

    def needed_by(self, horovod: str, tensorflow: str) -> bool:
        """True when a build of Horovod ``horovod`` against TensorFlow ``tensorflow`` needs this patch."""
        tf = release(tensorflow)[:2]
        above = tf >= release(self.tensorflow_from)[:2]
        below = self.tensorflow_below is None or tf < release(self.tensorflow_below)[:2]
        return horovod == self.horovod and above and below

    @property
    def tensorflow_range(self) -> str:
        """``>= 2.16`` or ``>= 2.16, < 2.22``."""
        return f">= {self.tensorflow_from}" + (f", < {self.tensorflow_below}" if self.tensorflow_below else "")


@cache
def _rules(path: Path) -> tuple[PatchRule, ...]:
    shown = display_path(path)
    try:
        entries = tomllib.loads(read_text_file(path, "Horovod patch rules file")).get("patch", [])
    except tomllib.TOMLDecodeError as err:
        raise KitError(f"{shown}: not valid TOML: {err}") from None
    rules = []
    for i, entry in enumerate(entries):
        keys = set(entry)
        if not REQUIRED <= keys <= FIELDS or not all(isinstance(v, str) for v in entry.values()):
            raise KitError(f"{shown}: patch.{i}: expected string fields {sorted(REQUIRED)} (and tensorflow_below)")
        try:
            release(entry["tensorflow_from"]), release(entry.get("tensorflow_below", "0"))
        except ValueError:
            raise KitError(f"{shown}: patch.{i}: expected TensorFlow releases like 2.16") from None
        if not patch_path(entry["name"]).is_file():
            raise KitError(f"{shown}: patch.{i}: no file containers/patches/{entry['name']}.patch")
        rules.append(PatchRule(**entry))
    return tuple(rules)


def patch_rules(path: Path = PATCH_RULES) -> list[PatchRule]:
    """Every rule of the patch file, checked: string fields, releases, and a patch file for each."""
    return list(_rules(path))


def needed_patches(horovod: str, tensorflow: str, path: Path = PATCH_RULES) -> list[str]:
    """The patches a build of Horovod ``horovod`` from its sdist against TensorFlow ``tensorflow`` needs."""
    return [rule.name for rule in patch_rules(path) if rule.needed_by(horovod, tensorflow)]


def missing_patches(site: Site, path: Path = PATCH_RULES) -> list[str]:
    """The patches the site's TensorFlow needs and ``stack.horovod_patches`` does not name (none on conda sites)."""
    stack = site.stack
    if stack.channel != "pip":
        return []
    return [name for name in needed_patches(stack.horovod, stack.tensorflow, path) if name not in stack.horovod_patches]
