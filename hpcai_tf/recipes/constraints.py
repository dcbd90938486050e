"""Pip constraints per site: what pip's resolver chose for the packages an image's pins pull in.

The site file pins an image's top-level packages (TensorFlow, NumPy, mpi4py, h5py, ``extra_pip``, Horovod; pip,
setuptools and wheel in requirements/bootstrap.txt). What they depend on (protobuf, grpcio, certifi, ...) would
float from build to build. ``hpcai constraints --site S`` runs pip's real resolver for the image's Python and
platform and writes ``containers/constraints/S.txt``: every other package of the stack at the version chosen, under
a header saying how and when. The recipes copy it into the build and pass it as ``--constraint`` to each
``pip install`` of the stack; provenance.json records its sha256.

pip evaluates environment markers (``python_version < "3.11"``) against the Python that runs it, not the one
``--python-version`` names (pypa/pip#10050, #13296). As pex does, the resolver runs pip with the image's marker
environment put in place of the host's; pip's report records the environment it used, and the header repeats it.

Only pip-channel sites get a file: a conda site's env is solved by conda (Open-CE, conda-forge), which pip
constraints cannot pin and must not fight; see docs/images.md.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hpcai_tf.catalog import Site
from hpcai_tf.errors import KitError
from hpcai_tf.files import display_path
from hpcai_tf.recipes.horovod_build import horovod_build_vars
from hpcai_tf.recipes.render import (
    bootstrap_pins,
    constraints_path,
    patch_files,
    pip_packages,
    write_atomic,
)

PYPI = "https://pypi.org/simple"
PATCH_RELEASES = range(40)
"""Patch releases of a Python minor over which a marker on ``python_full_version`` must not change its value."""
MANYLINUX = ("2014", "_2_17", "_2_27", "_2_28")
"""manylinux tags the resolver accepts: glibc 2.28 and older, which every base of the catalog (glibc >= 2.28) runs.
pip matches each tag exactly, so 2_27 is listed for the wheels tagged with it (TensorFlow 2.21)."""
KEPT_PIP_VARIABLES = ("PIP_CERT", "PIP_CLIENT_CERT", "PIP_PROXY", "PIP_DEFAULT_TIMEOUT", "PIP_RETRIES")
"""The host's network plumbing for pip; every other pip setting (index, find-links, constraints) is dropped."""
PINNED = "# pinned: "
RESOLVER = "# resolver: "
MARKERS = "# markers: "
WRITTEN = "# Written by "

_PIP_FOR_IMAGE = """\
import json, sys
from pip._vendor.packaging import markers
image = json.loads(sys.argv.pop(1))
host = markers.default_environment
markers.default_environment = lambda: {**host(), **image}
from pip._internal.cli.main import main
sys.exit(main(sys.argv[1:]))
"""
"""pip with the image's marker environment: ``python -c THIS ENV_JSON ARGS...``."""


@dataclass(frozen=True)
class Resolution:
    """What pip's resolver chose: metadata name -> version, the pip that chose it and its marker environment."""

    versions: dict[str, str]
    pip_version: str
    environment: dict[str, str]


def canonical(name: str) -> str:
    """A project name as PEP 503 compares it (extras dropped: ``tensorflow[and-cuda]`` is ``tensorflow``)."""
    return name.split("[")[0].lower().replace("_", "-").replace(".", "-")


def python_minor(site: Site) -> str:
    """The image's Python as ``major.minor``."""
    return ".".join(site.stack.python.split(".")[:2])


def resolver_platforms(site: Site) -> list[str]:
    """The ``--platform`` tags of the site's image."""
    return [f"manylinux{tag}_{site.arch}" for tag in MANYLINUX]


def marker_environment(site: Site) -> dict[str, str]:
    """PEP 508 marker values of the image that differ from the host's: its Python and machine.

    When the catalog pins only ``major.minor``, ``python_full_version`` is ``major.minor.0`` and :func:`resolve`
    checks that every marker reading it comes out the same for each patch release.
    """
    full = site.stack.python if site.stack.python.count(".") == 2 else f"{python_minor(site)}.0"
    return {
        "python_version": python_minor(site),
        "python_full_version": full,
        "implementation_version": full,
        "platform_machine": site.arch,
    }


def markers_description(site: Site) -> str:
    """The marker environment as the header's ``# markers:`` line says it (``3.10.*`` for any patch release)."""
    env = marker_environment(site)
    if site.stack.python.count(".") != 2:
        env["python_full_version"] = env["implementation_version"] = f"{python_minor(site)}.*"
    return " ".join(f"{name}={value}" for name, value in sorted(env.items()))


def check_patch_markers(site: Site, report: dict) -> None:
    """Refuse a resolution that a marker on the full Python version would change within the pinned minor."""
    if site.stack.python.count(".") == 2:
        return
    from pip._vendor.packaging.requirements import Requirement

    env = report["environment"]
    for item in report["install"]:
        meta = item["metadata"]
        for text in meta.get("requires_dist", []):
            if "python_full_version" not in text and "implementation_version" not in text:
                continue
            marker = Requirement(text).marker
            for extra in ["", *meta.get("provides_extra", [])]:
                outcomes = {
                    marker.evaluate({**env, "python_full_version": v, "implementation_version": v, "extra": extra})
                    for v in (f"{python_minor(site)}.{patch}" for patch in PATCH_RELEASES)
                }
                if len(outcomes) > 1:
                    raise KitError(
                        f"site {site.id}: {meta['name']} requires {text!r}, which depends on the patch "
                        f"release of Python {site.stack.python}; pin it in stack.python"
                    )


def top_level_pins(site: Site) -> list[str]:
    """What the image pins itself (site file, bootstrap.txt): never repeated in the constraints."""
    stack = site.stack
    pins = [*pip_packages(site), f"horovod=={stack.horovod}"]
    if stack.keras == "tf-keras":
        pins.append(f"tf-keras=={stack.tensorflow}")
    return pins + [f"{name}=={version}" for name, version in bootstrap_pins().items()]


def _pip_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k in KEPT_PIP_VARIABLES}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra}


def pip_report(site: Site, args: list[str], index_url: str, env: dict[str, str] | None = None) -> dict:
    """``pip install --dry-run --report`` with the image's markers; the report, or a one-line error."""
    with tempfile.TemporaryDirectory(prefix="hpcai-resolve-") as tmp:
        report = Path(tmp) / "report.json"
        command = [
            sys.executable,
            "-c",
            _PIP_FOR_IMAGE,
            json.dumps(marker_environment(site)),
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--report",
            str(report),
            "--index-url",
            index_url,
            *args,
        ]
        result = subprocess.run(
            command, capture_output=True, text=True, env=_pip_env(env or {}), cwd=tmp, timeout=900, check=False
        )
        if result.returncode != 0:
            errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]
            last = (errors or result.stderr.strip().splitlines() or ["no output"])[-1]
            raise KitError(f"site {site.id}: pip's resolver failed: {last}")
        return json.loads(report.read_text())


def horovod_requirements(site: Site, index_url: str = PYPI) -> list[str]:
    """Horovod's requirements as its sdist declares them under the image's build switches (``Requires-Dist``).

    Horovod has no wheel on PyPI: its setup.py is run for metadata with the site's ``HOROVOD_*`` variables (without
    ``HOROVOD_WITHOUT_PYTORCH`` it would add cffi). Patches that touch setup.py are refused: their metadata differs.
    """
    for patch in patch_files(site):
        touched = [line for line in patch.read_text().splitlines() if line.startswith("+++ ")]
        if any(line.split()[1].endswith("/setup.py") for line in touched if len(line.split()) > 1):
            raise KitError(f"{display_path(patch)}: patches Horovod's setup.py; its requirements cannot be read here")
    build_vars = horovod_build_vars(site)
    key = (site.stack.horovod, tuple(sorted(build_vars.items())), index_url)
    if key not in _HOROVOD_REQUIRES:  # one sdist download per Horovod release and switches in a process
        args = ["--no-deps", "--no-build-isolation", "--no-binary=horovod", f"horovod=={site.stack.horovod}"]
        report = pip_report(site, args, index_url, build_vars)
        _HOROVOD_REQUIRES[key] = report["install"][0]["metadata"].get("requires_dist", [])
    return list(_HOROVOD_REQUIRES[key])


_HOROVOD_REQUIRES: dict[tuple, list[str]] = {}


def resolve(site: Site, requirements: list[str], constraints: Path | None = None, index_url: str = PYPI) -> Resolution:
    """pip's resolver for the site's image: wheels only, for its Python, platform and markers."""
    args = [
        "--only-binary=:all:",
        "--python-version",
        python_minor(site),
        *[arg for tag in resolver_platforms(site) for arg in ("--platform", tag)],
    ]
    if constraints is not None:
        args += ["--constraint", str(constraints)]
    report = pip_report(site, [*args, *requirements], index_url)
    check_patch_markers(site, report)
    versions = {item["metadata"]["name"]: item["metadata"]["version"] for item in report["install"]}
    return Resolution(versions=versions, pip_version=report["pip_version"], environment=report["environment"])


def stack_requirements(site: Site, index_url: str = PYPI) -> list[str]:
    """What the image's pip installs resolve together: its PyPI pins, Horovod's requirements, setuptools and wheel.

    tf-keras is installed with ``--no-deps`` (it would pull the full TensorFlow wheel) and so is not resolved.
    """
    bootstrap = [f"{name}=={version}" for name, version in bootstrap_pins().items() if name != "pip"]
    return [*pip_packages(site), *horovod_requirements(site, index_url), *bootstrap]


def pinned_versions(site: Site, resolution: Resolution) -> dict[str, str]:
    """The resolution without the top-level pins, each of which is checked to have resolved to itself."""
    top = {}
    for spec in top_level_pins(site):
        name, version = spec.split("==")
        top[canonical(name)] = version
    rest = {}
    for name, version in resolution.versions.items():
        if canonical(name) not in top:
            rest[name] = version
        elif top[canonical(name)] != version:
            raise KitError(f"site {site.id}: pip resolved {name} {version}, the catalog pins {top[canonical(name)]}")
    return dict(sorted(rest.items(), key=lambda item: canonical(item[0])))


def render_constraints(site: Site, resolution: Resolution, index_url: str, day: str) -> str:
    """The text of ``containers/constraints/<site>.txt``."""
    lines = [
        f'# pip constraints of the "{site.id}" image: the versions pip\'s resolver chose for what its pins pull in.',
        f"{WRITTEN}`hpcai constraints --site {site.id}` on {day}; do not edit. After changing a pin in",
        f"# containers/sites/{site.id}.toml, run `make constraints` (this file, then recipes/ and docs/).",
        f"{RESOLVER}{resolver_description(site, index_url, resolution.pip_version)}",
        f"{MARKERS}{markers_description(site)}",
        f"{PINNED}" + " ".join(top_level_pins(site)),
    ]
    lines += [f"{name}=={version}" for name, version in pinned_versions(site, resolution).items()]
    return "\n".join(lines) + "\n"


def resolver_description(site: Site, index_url: str, pip_version: str) -> str:
    """How the resolver ran, as the header's ``# resolver:`` line says it."""
    platforms = " ".join(f"--platform {tag}" for tag in resolver_platforms(site))
    return (
        f"pip {pip_version} install --dry-run --only-binary=:all: --python-version {python_minor(site)} "
        f"{platforms} --index-url {index_url}"
    )


@dataclass(frozen=True)
class ConstraintsFile:
    """A parsed constraints file: its header lines and its pins (metadata name -> version)."""

    header: dict[str, str]
    versions: dict[str, str]


def read_constraints(path: Path) -> ConstraintsFile:
    """Parse a constraints file written by :func:`render_constraints`."""
    header: dict[str, str] = {}
    versions: dict[str, str] = {}
    shown = display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KitError(f"{shown}: missing; write it with `hpcai constraints`") from None
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("#"):
            for prefix in (PINNED, RESOLVER, MARKERS, WRITTEN):
                if line.startswith(prefix):
                    header[prefix] = line.removeprefix(prefix)
        elif line.count("==") == 1:
            name, version = line.split("==")
            versions[name] = version
        else:
            raise KitError(f"{shown}:{number}: expected NAME==VERSION, got {line!r}")
    return ConstraintsFile(header=header, versions=versions)


def stale_reason(site: Site) -> str | None:
    """Why the committed constraints do not fit the site's pins now, or ``None`` when they do (no network)."""
    path = constraints_path(site)
    committed = read_constraints(path)
    pinned = committed.header.get(PINNED, "").split()
    if pinned != top_level_pins(site):
        differ = sorted(set(top_level_pins(site)) - set(pinned)) or ["their order"]
        return f"{display_path(path)} was resolved for other pins (the catalog now has {', '.join(differ)})"
    resolver = committed.header.get(RESOLVER, "")
    platforms = " ".join(f"--platform {tag}" for tag in resolver_platforms(site))
    if f"--python-version {python_minor(site)} {platforms} " not in resolver:
        return f"{display_path(path)} was resolved for another Python or platform"
    top = {canonical(spec.split("==")[0]) for spec in pinned}
    repeated = sorted(name for name in committed.versions if canonical(name) in top)
    if repeated:
        return f"{display_path(path)} repeats top-level pins: {', '.join(repeated)}"
    return None


def check_constraints(site: Site) -> None:
    """Refuse a pip site whose constraints were resolved for other pins, in one line."""
    if site.stack.channel != "pip":
        return
    reason = stale_reason(site)
    if reason:
        raise KitError(f"site {site.id}: {reason}; run `hpcai constraints --site {site.id}` (make constraints)")


def _without_date(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith(WRITTEN)]


def write_constraints(site: Site, index_url: str = PYPI, today: datetime.date | None = None) -> tuple[Path, bool]:
    """Resolve the site's stack and write its constraints file; ``(path, changed)``.

    A resolution equal to the committed one leaves the file as it is, date included, so that the recipe digest
    (and the image tag) move only when a version does.
    """
    if site.stack.channel != "pip":
        raise KitError(
            f"site {site.id}: stack.channel is {site.stack.channel!r}: conda solves its env, pip "
            "constraints cannot pin it; only pip sites have a constraints file (docs/images.md)"
        )
    resolution = resolve(site, stack_requirements(site, index_url), index_url=index_url)
    day = (today or datetime.datetime.now(datetime.timezone.utc).date()).isoformat()
    text = render_constraints(site, resolution, index_url, day)
    path = constraints_path(site)
    if path.is_file() and _without_date(path.read_text(encoding="utf-8")) == _without_date(text):
        return path, False
    write_atomic(path, text)
    return path, True
