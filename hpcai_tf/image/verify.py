"""``hpcai verify``: run the self-test inside a built image and say, check by check, what holds.

The host side runs each check as one container (``docker run``) or one ``apptainer exec``; the image side
is :mod:`hpcai_tf.train.selftest`. The checks:

==============  =====================================================================================
``kit``         ``hpcai --version`` answers inside the image
``versions``    Python and each package of the stack answer with the image's pins
``check-build`` ``horovodrun --check-build`` lists TensorFlow, the MPI controller and MPI operations
                (and NCCL operations on a GPU site)
``allreduce``   ``mpirun -np 2``: Horovod's allreduce sums right, and a broadcast arrives, on every rank
``train``       ``mpirun -np 2``: a tiny Keras model trains under Horovod; loss falls; ranks agree
``gpu``         GPU sites only: GPUs visible to TensorFlow, NCCL built into Horovod
==============  =====================================================================================

The 2-rank checks run the image's own ``mpirun`` inside one container. ``gpu`` and the NCCL line of
``check-build`` cannot run on the kit's development machine (no GPU, no NVIDIA container toolkit).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hpcai_tf import __version__
from hpcai_tf.catalog import Site
from hpcai_tf.errors import KitError
from hpcai_tf.recipes.image_labels import VERIFY_LABEL
from hpcai_tf.recipes.render import image_tag
from hpcai_tf.train.image_contract import STACK_PACKAGES
from hpcai_tf.train.mpirun_line import (
    OPEN_MPI_AS_ROOT,
    OPEN_MPI_IN_CONTAINER,
    OPEN_MPI_SHARED_NODE,
    in_allocation,
    mpirun_line,
)

SELFTEST = ["python", "-m", "hpcai_tf.train.selftest"]
RECORD = re.compile(r"HPCAI-SELFTEST (\{.*\})")
TIMEOUTS = {"kit": 120, "versions": 300, "check-build": 300, "allreduce": 300, "train": 600, "gpu": 300}


@dataclass(frozen=True)
class CheckResult:
    """One check: whether it held, one line on what was seen, and the output when it did not."""

    name: str
    ok: bool
    detail: str
    output: str = ""


@dataclass
class VerifyReport:
    """Every check of one image."""

    image: str
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)


def run_environment(site: Site, runtime: str) -> dict[str, str]:
    """Environment of the checks: the site's job environment, plus what root and containers need for MPI."""
    env = dict(site.env)
    env.update(OPEN_MPI_AS_ROOT)  # docker runs the checks as root
    env.update(OPEN_MPI_SHARED_NODE)  # no busy-wait: ranks share the cores
    env.update({"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"})
    if runtime == "docker":
        env.update(OPEN_MPI_IN_CONTAINER)  # no ptrace/CMA inside a container
    return env


def mpirun(ranks: int, argv: Sequence[str], *, allocated: bool = False, cores: int | None = None) -> list[str]:
    """The image's ``mpirun`` over ``ranks`` local ranks, by the kit's one rule (:mod:`hpcai_tf.train.mpirun_line`).

    ``allocated``: whether the container sees a batch allocation (Apptainer passes the job's environment in).
    """
    return mpirun_line(ranks, allocated=allocated, cores=cores).argv(argv)


def selftest_records(output: str, check: str) -> list[dict]:
    """The ``HPCAI-SELFTEST`` records of one check in a run's output."""
    records = []
    for match in RECORD.finditer(output):
        try:
            record = json.loads(match[1])
        except json.JSONDecodeError:
            continue
        if record.get("check") == check:
            records.append(record)
    return records


def parse_check_build(output: str) -> dict[str, dict[str, bool]]:
    """``horovodrun --check-build`` as {section: {item: built}}, e.g. {"Available Controllers": {"MPI": True}}."""
    sections: dict[str, dict[str, bool]] = {}
    current = None
    for line in output.splitlines():
        header = re.match(r"^(Available [A-Za-z ]+):\s*$", line.strip())
        item = re.match(r"^\s*\[( |X)\]\s+(\S+)", line)
        if header:
            current = sections.setdefault(header[1], {})
        elif item and current is not None:
            current[item[2]] = item[1] == "X"
    return sections


def expected_check_build(site: Site) -> dict[str, list[str]]:
    """What ``--check-build`` must list as built for this site's image."""
    operations = ["MPI"] + (["NCCL"] if site.stack.horovod_gpu_operations == "NCCL" else [])
    return {
        "Available Frameworks": ["TensorFlow"],
        "Available Controllers": ["MPI"],
        "Available Tensor Operations": operations,
    }


def judge_check_build(site: Site, output: str) -> tuple[bool, str]:
    """Whether the check-build output lists what the site needs; a line naming what is built or missing."""
    seen = parse_check_build(output)
    missing = [
        f"{section.split()[-1].lower()} {name}"
        for section, names in expected_check_build(site).items()
        for name in names
        if not seen.get(section, {}).get(name)
    ]
    if missing:
        return False, "not built: " + ", ".join(missing) if seen else "no check-build listing in the output"
    built = {s.split()[-1].lower(): [n for n, ok in items.items() if ok] for s, items in seen.items()}
    return True, "; ".join(f"{kind}: {', '.join(names)}" for kind, names in built.items())


def judge_ranks(check: str, output: str, ranks: int) -> tuple[bool, str]:
    """A multi-rank check holds when every rank reported, each with ``ok``."""
    records = selftest_records(output, check)
    reported = sorted(r.get("rank", -1) for r in records)
    if reported != list(range(ranks)):
        errors = [r["error"] for r in records if "error" in r]
        why = f": {errors[0]}" if errors else ""
        return False, f"ranks reporting {reported}, expected {list(range(ranks))}{why}"
    bad = [r for r in records if not r.get("ok") or r.get("size") != ranks]
    if check == "allreduce":
        detail = f"sum {records[0]['sum']:g} (expected {records[0]['expected']:g}) on ranks {reported}"
    else:
        detail = "; ".join(
            f"rank {r['rank']} loss {r['loss'][0]:.3g} -> {r['loss'][-1]:.3g}"
            for r in sorted(records, key=lambda r: r["rank"])
        ) + (", weights agree" if all(r.get("weights_agree") for r in records) else ", weights DIFFER")
    if bad:
        detail = f"failed on ranks {[r.get('rank') for r in bad]}: " + detail
    return not bad, detail


def judge_single(check: str, output: str) -> tuple[bool, str]:
    """A one-process self-test check holds when its record says ``ok``."""
    records = selftest_records(output, check)
    if not records:
        return False, "no result line in the output"
    record = records[0]
    if "error" in record:
        return False, record["error"]
    if check == "versions":
        got = record["got"]
        detail = ", ".join(f"{k} {got[k]}" for k in ("python", *STACK_PACKAGES))
        if "keras" in got:
            detail += f"; tf.keras is {got['keras']}"
        if record["mismatches"]:
            detail = "pins differ for " + ", ".join(record["mismatches"]) + ": " + detail
        return bool(record["ok"]), detail
    return bool(record["ok"]), f"{record['gpus']} GPUs, NCCL built: {record['nccl_built']}"


class DockerRunner:
    """Runs one command per container of a Docker image, removing the container afterwards."""

    def __init__(self, client, image: str, env: dict[str, str], gpu: bool):
        self.client, self.image, self.env, self.gpu = client, image, env, gpu

    def run(self, argv: Sequence[str], timeout: int) -> tuple[int, str]:
        import docker
        import requests

        options: dict = {"environment": self.env, "shm_size": "1g", "labels": {VERIFY_LABEL: self.image}}
        if self.gpu:
            options["device_requests"] = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
        try:
            container = self.client.containers.run(self.image, list(argv), detach=True, **options)
        except docker.errors.APIError as err:
            if self.gpu:
                raise KitError(
                    f"cannot start {self.image} with GPUs ({err.explanation}): verifying a GPU image needs NVIDIA "
                    "GPUs and the NVIDIA container toolkit on this host"
                ) from None
            raise KitError(f"cannot start {self.image}: {err.explanation}") from None
        try:
            try:
                code = int(container.wait(timeout=timeout)["StatusCode"])
            except requests.exceptions.ConnectionError:  # the SDK's read timeout
                container.kill()
                code = -1
            output = container.logs(stdout=True, stderr=True).decode(errors="replace")
            if code == -1:
                output += f"\n(timed out after {timeout} s)"
            return code, output
        finally:
            container.remove(force=True)


class SifRunner:
    """Runs one command per ``apptainer exec`` of a SIF (spython takes no timeout)."""

    def __init__(self, executable: str, sif: Path, env: dict[str, str], gpu_flag: str):
        self.executable, self.sif, self.env, self.gpu_flag = executable, sif, env, gpu_flag

    def run(self, argv: Sequence[str], timeout: int) -> tuple[int, str]:
        from hpcai_tf.image.singularity import exec_in_sif

        return exec_in_sif(self.executable, self.sif, argv, self.env, self.gpu_flag)


def _runner(site: Site, runtime: str, image: str | None):
    env = run_environment(site, runtime)
    if runtime == "docker":
        from hpcai_tf.image.docker_engine import docker_client, find_image

        client = docker_client()
        image = image or image_tag(site)
        if find_image(client, image) is None:
            raise KitError(f"no image {image} in the Docker engine: build it with `hpcai build --site {site.id}`")
        return image, DockerRunner(client, image, env, site.gpu)
    from hpcai_tf.image.singularity import find_runtime
    from hpcai_tf.recipes.render import sif_path

    executable = find_runtime()
    sif = Path(image) if image else sif_path(site)
    if not sif.is_file():
        raise KitError(f"no SIF {sif}: build it with `hpcai build --site {site.id} --runtime singularity`")
    return str(sif), SifRunner(executable, sif, env, site.runtime.gpu_flag)


def checks(
    site: Site, ranks: int, steps: int, allocated: bool = False
) -> list[tuple[str, list[str], Callable[[str], tuple[bool, str]]]]:
    """The checks for a site: (name, command, judge of its output); ``allocated`` as for :func:`mpirun`."""
    kit_line = f"hpcai {__version__}"
    plan = [
        (
            "kit",
            ["hpcai", "--version"],
            lambda out: (kit_line in out, out.strip().splitlines()[-1] if out.strip() else ""),
        ),
        ("versions", [*SELFTEST, "versions"], lambda out: judge_single("versions", out)),
        ("check-build", ["horovodrun", "--check-build"], lambda out: judge_check_build(site, out)),
        (
            "allreduce",
            mpirun(ranks, [*SELFTEST, "allreduce"], allocated=allocated),
            lambda out: judge_ranks("allreduce", out, ranks),
        ),
        (
            "train",
            mpirun(ranks, [*SELFTEST, "train", "--steps", str(steps)], allocated=allocated),
            lambda out: judge_ranks("train", out, ranks),
        ),
    ]
    if site.gpu:
        plan.append(("gpu", [*SELFTEST, "gpu"], lambda out: judge_single("gpu", out)))
    return plan


def verify_image(
    site: Site,
    runtime: str = "docker",
    image: str | None = None,
    ranks: int = 2,
    steps: int = 5,
    out: Callable[[str], None] = print,
) -> VerifyReport:
    """Run every check in the site's image, print one line each; a one-line error when any failed."""
    if ranks < 2:
        raise KitError(f"--ranks: expected at least 2 (the checks are of communication), got {ranks}")
    name, runner = _runner(site, runtime, image)
    report = VerifyReport(image=name)
    out(f"verify {name} (site {site.id}, {runtime}, {ranks} ranks)")
    allocated = runtime != "docker" and in_allocation(os.environ)  # a container of Docker sees no job
    for check, argv, judge in checks(site, ranks, steps, allocated):
        code, output = runner.run(argv, TIMEOUTS[check])
        ok, detail = judge(output)
        if code != 0 and ok:
            ok, detail = False, f"exit code {code}; {detail}"
        result = CheckResult(check, ok, detail, "" if ok else output)
        report.checks.append(result)
        out(f"  {'PASS' if ok else 'FAIL'}  {check:<12} {detail}")
        if not ok:
            for line in output.strip().splitlines()[-15:]:
                out(f"        | {line}")
    failed = [c.name for c in report.checks if not c.ok]
    if failed:
        raise KitError(f"verify {name}: {len(failed)} of {len(report.checks)} checks failed: {', '.join(failed)}")
    out(f"verify {name}: all {len(report.checks)} checks passed")
    return report
