"""A site's job script with its stand-ins for the emulated cluster, and the swaps as a unified diff.

The script a user would submit at the site is rendered by :func:`render_job_script` as ``hpcai launch`` renders
it, with the site's container runtime (``--runtime none`` names the stand-in here, not the site's script). What
cannot run here is swapped for its stand-in by rendering the same request again with:

- ``--runtime none`` (the default): the ``hpcai`` beside this Python for the site's container line; with
  ``--runtime apptainer|singularity --image IMG`` the container line stays, with the image given (a local image
  that every emulated node runs, e.g. the local site's SIF), as ``hpcai launch --image IMG`` renders it;
- ``module load ...`` as the no-op ``: module load ...`` (no environment modules here);
- the run root on the site's shared filesystem (``--run-root /projects/...``) moved under the emulated cluster's
  shared directory (``<shared>/projects/...``); without one, runs go below the submit directory, which is the
  shared directory.

GPUs need no line: the emulated nodes have the site's ``Gres=gpu`` backed by stand-in devices
(:mod:`hpcai_tf.launch.emulated_cluster`), so ``--gres`` is honoured and the ranks run on the cores. Every line
that differs between the two scripts must be one of :data:`SWAPPABLE` (:data:`IN_IMAGE_SWAPPABLE` in an image;
checked by :func:`rehearsal_script`), so the submitted script differs from the site's by the swaps only.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from hpcai_tf.errors import KitError
from hpcai_tf.launch.job_script import HOST_SITE_VARIABLE, LaunchRequest, render_job_script

SWAPPABLE: dict[str, re.Pattern[str]] = {
    "summary comment (where the ranks run)": re.compile(r"^# \S+ on .* started by \S+, (in \S+|on the host)$"),
    "container line (host hpcai instead)": re.compile(r"^  (singularity|apptainer) exec .*\\$"),
    "hpcai train line (host hpcai)": re.compile(r"^  (\S*/)?hpcai train .*&$|^\S*/hpcai train .*&$"),
    f"{HOST_SITE_VARIABLE} (names the site of a host run)": re.compile(
        rf"^export {HOST_SITE_VARIABLE}=\S+$|^  -x .*-x {HOST_SITE_VARIABLE} \\$"
    ),
    "run directory (shared filesystem)": re.compile(r"^run_dir=.*$"),
    "module load (no environment modules here)": re.compile(r"^:? ?module load .*$"),
    "blank line before the exports": re.compile(r"^$"),
}
"""Kinds of line a swap may change on the host (``--runtime none``), by what they are (the pattern a changed line
must match)."""
IN_IMAGE_SWAPPABLE: dict[str, re.Pattern[str]] = {
    kind: SWAPPABLE[kind] for kind in ("run directory (shared filesystem)", "module load (no environment modules here)")
}
"""Kinds of line a swap may change when the ranks run in an image (``--runtime apptainer|singularity --image``):
the container line is the site's, with the image given (``hpcai launch --image`` renders the same)."""


@dataclass(frozen=True)
class Rehearsal:
    """The site's script, the submitted one, the swaps between them as a unified diff, and what each swap is."""

    site_script: str
    submitted: str
    diff: str
    swaps: tuple[str, ...]


def shared_path(path: str, shared: Path) -> str:
    """A path on the site's shared filesystem, moved under the emulated shared directory."""
    return str(shared / os.path.abspath(path).lstrip("/"))


def in_image(request: LaunchRequest) -> bool:
    """Whether the ranks run in an image (``--runtime apptainer|singularity``) rather than on the host."""
    return request.runtime not in (None, "none")


def rehearsal_request(request: LaunchRequest, shared: Path, host_hpcai: str | None = None) -> LaunchRequest:
    """``request`` with its stand-ins: the host's hpcai (or the given image), the run root under ``shared``."""
    run_root = shared_path(request.run_root, shared) if request.run_root else None
    if in_image(request):
        if not request.image:
            raise KitError(
                f"--image: --runtime {request.runtime} runs the ranks in an image on every emulated node; expected "
                "the image here to run (e.g. the local site's SIF, hpcai build --site local --runtime singularity)"
            )
        return replace(request, run_root=run_root)
    return replace(request, runtime="none", run_root=run_root, image=None, host_hpcai=host_hpcai)


def without_modules(script: str) -> str:
    """``module load X`` made a no-op (``: module load X``): there are no environment modules here, and what a
    site loads for its jobs is its container runtime, which a host run does not use."""
    return re.sub(r"^module load ", ": module load ", script, flags=re.MULTILINE)


def unified_diff(site_script: str, submitted: str, site_id: str) -> str:
    """The unified diff from the site's script to the submitted one."""
    lines = difflib.unified_diff(
        site_script.splitlines(keepends=True),
        submitted.splitlines(keepends=True),
        fromfile=f"job script for {site_id} (hpcai launch)",
        tofile="job script submitted to the emulated cluster",
        n=1,
    )
    return "".join(lines)


def changed_lines(diff: str) -> list[str]:
    """The removed and added lines of a unified diff (without their ``-``/``+``)."""
    return [
        line[1:].rstrip("\n")
        for line in diff.splitlines(keepends=True)
        if line[:1] in "-+" and not line.startswith(("---", "+++"))
    ]


def classify(line: str, swappable: dict[str, re.Pattern[str]] = SWAPPABLE) -> str | None:
    """The kind of swap a changed line is, or None if it is none of ``swappable``."""
    for kind, pattern in swappable.items():
        if pattern.match(line):
            return kind
    return None


def rehearsal_script(request: LaunchRequest, shared: Path, host_hpcai: str | None = None) -> Rehearsal:
    """The site's script for ``request``, the one to submit here, and the swaps (a KitError if the site refuses)."""
    submitted = without_modules(render_job_script(rehearsal_request(request, shared, host_hpcai)))
    site_script = render_job_script(request if in_image(request) else replace(request, runtime=None))
    diff = unified_diff(site_script, submitted, request.site.id)
    changed = changed_lines(diff)
    swappable = IN_IMAGE_SWAPPABLE if in_image(request) else SWAPPABLE
    kinds: list[str] = []
    for line in changed:
        kind = classify(line, swappable)
        if kind is None and line.startswith("  -x ") and _forwarding_site(line) in changed:
            kind = classify(_forwarding_site(line))  # mpirun's -x list before HPCAI_SITE joined it
        if kind is None:  # a bug of the kit, not of the user's request
            raise RuntimeError(f"rehearse: the submitted script changes a line no swap accounts for: {line!r}")
        if kind not in kinds and line:
            kinds.append(kind)
    return Rehearsal(site_script, submitted, diff, tuple(kinds))


def _forwarding_site(line: str) -> str:
    """An mpirun ``-x`` line with ``-x HPCAI_SITE`` added before its continuation."""
    return line.removesuffix(" \\") + f" -x {HOST_SITE_VARIABLE} \\"
