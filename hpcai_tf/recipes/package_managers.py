"""How each distribution family installs packages in one image layer: data the templates place.

Python picks the package manager from the site's ``base.os`` and writes the commands; the step and derived
templates only place them, so no template branches on the distribution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hpcai_tf.catalog import Site


@dataclass(frozen=True)
class PackageManager:
    """The commands before an install (non-interactive, index update), the install itself, and the clean-up after."""

    update: tuple[str, ...]
    install: str
    change_held: str
    """The install's flag that lets it change a held package ("" when the family holds none)."""
    clean: tuple[str, ...]

    def install_commands(self, packages: Sequence[str], change_held: bool = False) -> list[str]:
        """The commands of one layer that installs ``packages`` and leaves no package index behind."""
        flags = f" {self.change_held}" if change_held and self.change_held else ""
        return [*self.update, f"{self.install}{flags} {' '.join(packages)}", *self.clean]


APT = PackageManager(
    update=("export DEBIAN_FRONTEND=noninteractive", "apt-get update"),
    install="apt-get install -y --no-install-recommends",
    change_held="--allow-change-held-packages",
    clean=("rm -rf /var/lib/apt/lists/*",),
)
DNF = PackageManager(
    update=(),
    install="dnf install -y --setopt=install_weak_deps=False",
    change_held="",
    clean=("dnf clean all",),
)
BY_OS = {"debian": APT, "ubuntu": APT, "rhel": DNF}
"""``base.os`` of the catalog -> its package manager."""


def package_manager(site: Site) -> PackageManager:
    """The package manager of the site's base image."""
    return BY_OS[site.base.os]
