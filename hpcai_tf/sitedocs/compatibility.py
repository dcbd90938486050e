"""``docs/compatibility.md``: per site stack, what it pins and what the reference machine exercises of it.

The pins come from the catalog, the Horovod patch rules from ``containers/patches/patches.toml`` (the renderer reads
the same rules), and the marks from ``containers/compatibility.toml``: each "built", "verified" or "trained" names
the test that fails when it stops being true. A site without marks is rendered only, for the reason ``hpcai build``
gives on the reference machine (:func:`hpcai_tf.image.host.build_blockers`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

from hpcai_tf.catalog import Site
from hpcai_tf.errors import KitError
from hpcai_tf.files import display_path, read_text_file
from hpcai_tf.image.host import REFERENCE_HOST, build_blockers
from hpcai_tf.paths import CONTAINERS_DIR
from hpcai_tf.recipes.patches import patch_rules, release

EVIDENCE_FILE = CONTAINERS_DIR / "compatibility.toml"
MARKS = ("built", "verified", "trained")
KERAS_API = {
    "keras2": "Keras 2 inside tf.keras",
    "tf-keras": "tf-keras {tensorflow} (Keras 2), TF_USE_LEGACY_KERAS=1",
}


@dataclass(frozen=True)
class Mark:
    """One thing the reference machine does with a site's stack, and the test that says so."""

    check: str
    ci: bool
    also: list[str] = field(default_factory=list)
    how: str = ""

    @property
    def checks(self) -> list[str]:
        return [self.check, *self.also]

    @property
    def make_target(self) -> str | None:
        """The make target a mark CI does not run names in its ``how`` (``by make test-gpu-image``), or ``None``."""
        found = re.search(r"\bby make ([a-z-]+)\b", self.how)
        return found[1] if found else None


@dataclass(frozen=True)
class Evidence:
    """``containers/compatibility.toml``: the current TensorFlow minor, each site's marks, benchmark figures."""

    current_tensorflow: str
    sites: dict[str, dict[str, Mark]]
    not_built: dict[str, str] = field(default_factory=dict)
    """``[not_built]``: a site the reference machine could build but no test builds yet -> why."""
    benchmark: dict = field(default_factory=dict)
    """``[benchmark]``: what ``bench/tf_stacks.py`` printed (when, the load, a Markdown table, the ratios)."""


def read_evidence(path: Path = EVIDENCE_FILE) -> Evidence:
    """The marks file, checked: known marks only, a check and a ``ci`` flag each."""
    shown = display_path(path)
    try:
        data = tomllib.loads(read_text_file(path, "compatibility marks file"))
    except tomllib.TOMLDecodeError as err:
        raise KitError(f"{shown}: not valid TOML: {err}") from None
    sites: dict[str, dict[str, Mark]] = {}
    for site_id, marks in data.get("sites", {}).items():
        for name, mark in marks.items():
            if name not in MARKS or not isinstance(mark, dict):
                raise KitError(f"{shown}: sites.{site_id}.{name}: expected one of {', '.join(MARKS)}")
            try:
                sites.setdefault(site_id, {})[name] = Mark(**mark)
            except TypeError:
                raise KitError(
                    f"{shown}: sites.{site_id}.{name}: expected check, ci and optionally also, how"
                ) from None
    current = data.get("current_tensorflow")
    if not isinstance(current, str):
        raise KitError(f"{shown}: current_tensorflow: expected a TensorFlow release like 2.21")
    benchmark = data.get("benchmark", {})
    if benchmark and not all(isinstance(benchmark.get(k), str) for k in ("command", "when", "load", "table")):
        raise KitError(f"{shown}: benchmark: expected strings command, when, load and table")
    not_built = data.get("not_built", {})
    if not isinstance(not_built, dict) or not all(isinstance(v, str) and v for v in not_built.values()):
        raise KitError(f"{shown}: not_built: expected site id = reason (a string) entries")
    for site_id in not_built:
        if site_id in sites:
            raise KitError(f"{shown}: not_built.{site_id}: the site has marks; expected one or the other")
    return Evidence(current_tensorflow=current, sites=sites, not_built=not_built, benchmark=benchmark)


def era(site: Site, current: str) -> str:
    """``current`` for the current TensorFlow minor, else the generation the stack reproduces."""
    tf = release(site.stack.tensorflow)[:2]
    if tf >= release(current)[:2]:
        return "current"
    if site.stack.keras == "keras2":
        return "reproduction: the paper's code path (Keras 2 inside tf.keras)"
    return "an earlier TensorFlow"


def _horovod(site: Site) -> str:
    stack = site.stack
    if stack.channel != "pip":
        return f"{stack.horovod} ({stack.channel} build)"
    if not stack.horovod_patches:
        return f"{stack.horovod}, unpatched"
    return f"{stack.horovod} + {', '.join(f'`{p}`' for p in stack.horovod_patches)}"


def _mpi(site: Site) -> str:
    mpi = site.mpi
    return f"host {mpi.flavour} {mpi.host_version}, image Open MPI {mpi.image_version} ({mpi.model})"


def _exercised(site: Site, marks: dict[str, Mark], not_built: str | None = None) -> str:
    if marks:
        done = ", ".join(name for name in MARKS if name in marks)
        targets = sorted({f"`make {m.make_target}`" for m in marks.values() if not m.ci and m.make_target})
        return done + (f" (by {', '.join(targets)}, not in CI)" if targets else "")
    blockers = build_blockers(site, REFERENCE_HOST)
    if blockers:
        return "rendered only: it " + "; and it ".join(b.reason for b in blockers)
    return "rendered only: no test builds it here" + (f" ({not_built})" if not_built else "")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def compatibility_page(sites: list[Site], evidence: Evidence | None = None) -> str:
    """The whole page."""
    evidence = evidence or read_evidence()
    unknown = sorted((set(evidence.sites) | set(evidence.not_built)) - {s.id for s in sites})
    if unknown:
        raise KitError(f"{display_path(EVIDENCE_FILE)}: sites.{unknown[0]}: not a site of the catalog")
    header = ("site", "era", "Python", "TensorFlow", "Keras API", "Horovod", "MPI", "CUDA", "on the reference machine")
    lines = [
        "# Compatibility matrix\n",
        "Generated by `hpcai docs` from `containers/sites/*.toml`, `containers/patches/patches.toml` and "
        "`containers/compatibility.toml`; do not edit. A test fails when this page differs from what they render.\n",
        f"TensorFlow {evidence.current_tensorflow} is the current release line. The reference machine is x86_64 "
        "Debian 12 with 2 cores and no GPU or registry: only x86_64 images from Debian and PyPI build there (the CPU "
        "images, and delta's GPU image with CUDA from NVIDIA's wheels, whose GPU checks cannot run there).\n",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for site in sites:
        stack = site.stack
        row = (
            f"`{site.id}`",
            era(site, evidence.current_tensorflow),
            stack.python,
            f"{stack.tensorflow_package} {stack.tensorflow}",
            KERAS_API[stack.keras].format(tensorflow=stack.tensorflow),
            _horovod(site),
            _mpi(site),
            stack.cuda,
            _exercised(site, evidence.sites.get(site.id, {}), evidence.not_built.get(site.id)),
        )
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    lines += ["", "## What fails when a mark stops being true", ""]
    lines += ["| site | mark | test | in CI | what runs |", "|---|---|---|---|---|"]
    for site in sites:
        for name, mark in evidence.sites.get(site.id, {}).items():
            tests = "<br>".join(f"`{c}`" for c in mark.checks)
            lines.append(f"| `{site.id}` | {name} | {tests} | {'yes' if mark.ci else 'no'} | {_cell(mark.how)} |")
    lines += [
        "",
        "## Horovod patches by TensorFlow release",
        "",
        "Horovod's last release is 0.28.1 (June 2023). A pip site that builds it from the sdist against a TensorFlow "
        "in one of these ranges must name the patch in `stack.horovod_patches`; `hpcai render` refuses it otherwise. "
        "Conda sites (Open-CE) take the Horovod their channel built.",
        "",
        "| patch | Horovod | TensorFlow | what it fixes | upstream |",
        "|---|---|---|---|---|",
    ]
    for rule in patch_rules():
        lines.append(
            f"| `{rule.name}` | {rule.horovod} | {rule.tensorflow_range} | {_cell(rule.fixes)} | {rule.upstream} |"
        )
    bench = evidence.benchmark
    if bench:
        lines += [
            "",
            "## TensorFlow 2.21 against 2.15 on the same work",
            "",
            f"Measured by `{bench['command']}` on the reference machine, {bench['when']} ({bench['load']}), inside "
            "the two local images, one intra-op and one inter-op thread per rank, the stacks alternating within "
            "every round and the best round of each counting:",
            "",
            bench["table"].strip(),
        ]
        if bench.get("notes"):
            lines += ["", bench["notes"].strip()]
    return "\n".join(lines) + "\n"
