"""``hpcai verify``: run the self-test inside a built image and say, check by check, what holds.

The host side runs each check as one container (``docker run``) or one ``apptainer exec``; the image side
is :mod:`hpcai_tf.train.selftest`. The checks:

=================  ==================================================================================
``kit``            ``hpcai --version`` answers inside the image
``versions``       Python and each package of the stack answer with the image's pins
``check-build``    ``horovodrun --check-build`` lists TensorFlow, the MPI controller and MPI operations
                   (and NCCL operations when the site builds Horovod with them)
``cuda-build``     GPU sites: ``tf.sysconfig.get_build_info()`` names a CUDA build whose CUDA and cuDNN are the
                   pins' majors and not newer than the pins (and, with CUDA from NVIDIA's wheels, the floors of
                   TensorFlow's ``and-cuda`` extra, ``containers/cuda-wheels.toml``)
``cuda-libs``      GPU sites: the CUDA runtime, cuDNN and NCCL load by soname (ctypes) and report the pins
``allreduce``      ``mpirun -np 2``: Horovod's allreduce sums right, and a broadcast arrives, on every rank
``train``          ``mpirun -np 2``: a tiny Keras model trains under Horovod; loss falls; ranks agree
``gpu``            GPU sites, on a host with NVIDIA GPUs: TensorFlow sees them all, training steps run on the
                   first, an NCCL all-reduce across all of them sums right (``NCCL_DEBUG=INFO`` names the version)
``gpu-allreduce``  the same host: ``mpirun``, one rank per GPU, Horovod's allreduce of GPU tensors
=================  ==================================================================================

The 2-rank checks run the image's own ``mpirun`` inside one container, on the CPU. The two GPU checks run only
where :func:`host_gpus` finds NVIDIA GPUs (those ``CUDA_VISIBLE_DEVICES`` names when it is set; ``--gpus`` in
Docker, ``--nv`` in Apptainer, which passes the variable on); elsewhere one line says they did not run and why.
The kit's development machine has no GPU: they have never run there.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hpcai_tf import __version__
from hpcai_tf.catalog import Site
from hpcai_tf.errors import KitError
from hpcai_tf.recipes.cuda_wheels import and_cuda_ranges
from hpcai_tf.recipes.image_labels import VERIFY_LABEL
from hpcai_tf.recipes.patches import release
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
TIMEOUTS = {
    "kit": 120,
    "versions": 300,
    "check-build": 300,
    "cuda-build": 300,
    "cuda-libs": 300,
    "allreduce": 300,
    "train": 600,
    "gpu": 600,
    "gpu-allreduce": 600,
}
NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")
"""One directory per NVIDIA GPU (its PCI address) while the NVIDIA driver is loaded."""
VISIBLE_DEVICES = "CUDA_VISIBLE_DEVICES"
GPU_CHECK_ENV = {"NCCL_DEBUG": "INFO"}
"""The GPU checks' extra environment: NCCL prints its version when it starts a communicator."""
NCCL_VERSION_LINE = re.compile(r"NCCL INFO NCCL version (\d+\.\d+\.\d+)")


@dataclass(frozen=True)
class Check:
    """One check of the plan: its name, the command run in the image, the judge of its output, whether it needs GPUs."""

    name: str
    argv: list[str]
    judge: Callable[[str], tuple[bool, str]]
    gpu: bool = False


@dataclass(frozen=True)
class CheckResult:
    """One check: whether it held, one line on what was seen, and the output when it did not."""

    name: str
    ok: bool
    detail: str
    output: str = ""


@dataclass
class VerifyReport:
    """Every check of one image, and the GPU checks that did not run with the reason."""

    image: str
    checks: list[CheckResult] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)
    not_run_reason: str = ""

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


def one_record(output: str, check: str) -> tuple[dict | None, str]:
    """The one record of a one-process check, or ``None`` and why it does not count (none printed, or an error)."""
    records = selftest_records(output, check)
    if not records:
        return None, "no result line in the output"
    if "error" in records[0]:
        return None, records[0]["error"]
    return records[0], ""


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


def _driver_gpus(driver_dir: Path) -> int:
    try:
        return sum(1 for entry in driver_dir.iterdir() if entry.is_dir())
    except OSError:
        return 0


def visible_gpu_ids(env: Mapping[str, str]) -> list[str] | None:
    """The GPUs ``CUDA_VISIBLE_DEVICES`` names (Slurm sets it to a job's GPUs), or ``None`` when it is not set."""
    if VISIBLE_DEVICES not in env:
        return None
    return [device.strip() for device in env[VISIBLE_DEVICES].split(",") if device.strip()]


def host_gpus(driver_dir: Path = NVIDIA_GPUS, env: Mapping[str, str] = os.environ) -> int:
    """How many NVIDIA GPUs the GPU checks may use: the entries of ``/proc/driver/nvidia/gpus`` (0 without the
    driver), or fewer when ``CUDA_VISIBLE_DEVICES`` names fewer."""
    present = _driver_gpus(driver_dir)
    ids = visible_gpu_ids(env)
    return present if ids is None else min(present, len(ids))


def no_gpu_reason(driver_dir: Path = NVIDIA_GPUS, env: Mapping[str, str] = os.environ) -> str:
    """Why the GPU checks cannot run on a host where :func:`host_gpus` found none, in a few words."""
    if _driver_gpus(driver_dir):
        return f"{VISIBLE_DEVICES} names no GPU on this host"
    where = driver_dir.as_posix()
    return f"no NVIDIA GPU on this host ({where} {'lists none' if driver_dir.is_dir() else 'does not exist'})"


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


def missing_ranks(records: list[dict], ranks: int) -> str | None:
    """Why a multi-rank check's records do not come from ranks 0 to ``ranks - 1`` (with the first error one
    reported), or None when they do."""
    reported = sorted(r.get("rank", -1) for r in records)
    if reported == list(range(ranks)):
        return None
    errors = [r["error"] for r in records if "error" in r]
    why = f": {errors[0]}" if errors else ""
    return f"ranks reporting {reported}, expected {list(range(ranks))}{why}"


def judge_ranks(check: str, output: str, ranks: int) -> tuple[bool, str]:
    """A multi-rank check holds when every rank reported, each with ``ok``."""
    records = selftest_records(output, check)
    if missing := missing_ranks(records, ranks):
        return False, missing
    bad = [r for r in records if not r.get("ok") or r.get("size") != ranks]
    if check == "allreduce":
        detail = f"sum {records[0]['sum']:g} (expected {records[0]['expected']:g}) on ranks {list(range(ranks))}"
    else:
        detail = "; ".join(
            f"rank {r['rank']} loss {r['loss'][0]:.3g} -> {r['loss'][-1]:.3g}"
            for r in sorted(records, key=lambda r: r["rank"])
        ) + (", weights agree" if all(r.get("weights_agree") for r in records) else ", weights DIFFER")
    if bad:
        detail = f"failed on ranks {[r.get('rank') for r in bad]}: " + detail
    return not bad, detail


def _shown(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)


def _floor(specifier: str) -> tuple[int, ...]:
    """The lower bound of a range like ``>=12.5.82,<13.0``."""
    return release(next(p.strip()[2:] for p in specifier.split(",") if p.strip().startswith(">=")))


def judge_cuda_build(site: Site, output: str) -> tuple[bool, str]:
    """TensorFlow's build (``get_build_info``) against the pins: a CUDA build; CUDA and cuDNN of the pins' majors and
    not newer than the pins (CUDA's minor-version compatibility, cuDNN's within a major); with CUDA from NVIDIA's
    wheels, the build's versions are the floors of TensorFlow's ``and-cuda`` ranges, as far as the build names them."""
    record, failure = one_record(output, "cuda-build")
    if record is None:
        return False, failure
    if not record["is_cuda_build"]:
        return False, "TensorFlow in the image is not a CUDA build (tf.sysconfig.get_build_info())"
    stack = site.stack
    built = {"cuda": release(str(record["cuda_version"])), "cudnn": release(str(record["cudnn_version"]))}
    problems = []
    for pin, version in built.items():
        pinned = release(getattr(stack, pin))
        if version[0] != pinned[0] or pinned[: len(version)] < version:
            problems.append(f"{pin} built {_shown(version)}, pinned {_shown(pinned)}")
    detail = (
        f"TensorFlow {stack.tensorflow} built with CUDA {_shown(built['cuda'])} and cuDNN {_shown(built['cudnn'])}; "
        f"pinned CUDA {stack.cuda} and cuDNN {stack.cudnn}"
    )
    ranges = and_cuda_ranges(stack.tensorflow) if stack.cuda_source == "pypi-wheels" else None
    if ranges:
        floors = {pin: _floor(ranges[pin]) for pin in built}
        # CUDA compared on major.minor: the build names its toolkit release (12.5.1), the wheel its own (12.5.82)
        depth = {"cuda": 2, "cudnn": len(built["cudnn"])}
        problems += [
            f"and-cuda floor of {pin} {_shown(floors[pin])} is not the build's {_shown(built[pin])}"
            for pin in built
            if floors[pin][: depth[pin]] != built[pin][: depth[pin]]
        ]
        detail += f" (and-cuda floors {_shown(floors['cuda'])} and {_shown(floors['cudnn'])})"
    if problems:
        return False, "; ".join(problems) + ": " + detail
    return True, detail + ": same majors, the pins not older"


def _library_dir(path: str) -> str:
    """A loaded library's directory, below site-packages when a wheel holds it (``nvidia/cudnn/lib``)."""
    if not path:
        return "an unknown place"
    parts = Path(path).parent.parts
    if "site-packages" in parts:
        return "/".join(parts[parts.index("site-packages") + 1 :])
    return Path(path).parent.as_posix()


def judge_cuda_libraries(output: str) -> tuple[bool, str]:
    """The CUDA runtime, cuDNN and NCCL each loaded by soname at the pinned version; where each came from."""
    record, failure = one_record(output, "cuda-libs")
    if record is None:
        return False, failure
    parts = []
    for entry in record["libraries"].values():
        if "error" in entry:
            parts.append(f"{entry['soname']} does not load: {entry['error']}")
            continue
        where = _library_dir(entry["path"])
        seen = f"{entry['soname']} {entry['version']} from {where}"
        parts.append(seen if entry["ok"] else f"{seen}, pinned {entry['pin']}")
    return bool(record["ok"]), "; ".join(parts)


def judge_gpu(output: str, site: Site) -> tuple[bool, str]:
    """GPUs seen, training steps on the first, the NCCL all-reduce's sums; NCCL's version line when 2+ GPUs."""
    record, failure = one_record(output, "gpu")
    if record is None:
        return False, failure
    detail = (
        f"{record['gpus']} GPUs; loss {record['loss'][0]:.3g} -> {record['loss'][-1]:.3g} with weights on "
        f"{record['weights_device']}; NCCL all-reduce sums {record['sums']} (expected {record['expected_sum']:g})"
    )
    ok = bool(record["ok"])
    if record["gpus"] > 1:
        versions = set(NCCL_VERSION_LINE.findall(output))
        if versions != {site.stack.nccl}:
            ok = False
            detail += f"; NCCL version lines {sorted(versions)}, pinned {site.stack.nccl}"
        else:
            detail += f"; NCCL {site.stack.nccl}"
    return ok, detail


def judge_gpu_allreduce(output: str, ranks: int) -> tuple[bool, str]:
    """Every rank reported the right sum of tensors held on its GPU; whether Horovod used NCCL."""
    records = selftest_records(output, "gpu-allreduce")
    if missing := missing_ranks(records, ranks):
        return False, missing
    bad = [r["rank"] for r in records if not r.get("ok")]
    route = "NCCL" if all(r["nccl_built"] for r in records) else "MPI through host memory (Horovod has no NCCL)"
    detail = f"sum {records[0].get('sum', 0):g} (expected {records[0].get('expected', 0):g}) over {ranks} GPUs, {route}"
    return not bad, (f"failed on ranks {bad}: " if bad else "") + detail


def judge_single(check: str, output: str) -> tuple[bool, str]:
    """The ``versions`` check holds when its record says ``ok``; the line lists what answered."""
    record, failure = one_record(output, check)
    if record is None:
        return False, failure
    got = record["got"]
    detail = ", ".join(f"{k} {got[k]}" for k in ("python", *STACK_PACKAGES))
    if "keras" in got:
        detail += f"; tf.keras is {got['keras']}"
    if record["mismatches"]:
        detail = "pins differ for " + ", ".join(record["mismatches"]) + ": " + detail
    return bool(record["ok"]), detail


class DockerRunner:
    """Runs one command per container of a Docker image, removing the container afterwards."""

    def __init__(self, client, image: str, env: dict[str, str], gpu_ids: list[str] | None = None):
        self.client, self.image, self.env, self.gpu_ids = client, image, env, gpu_ids

    def run(self, argv: Sequence[str], timeout: int, gpu: bool = False) -> tuple[int, str]:
        """Exit code and output; ``gpu``: with the GPUs ``CUDA_VISIBLE_DEVICES`` names, else every GPU of the host
        (``--gpus all``), and the GPU checks' env."""
        import docker
        import requests

        env = {**self.env, **GPU_CHECK_ENV} if gpu else self.env
        options: dict = {"environment": env, "shm_size": "1g", "labels": {VERIFY_LABEL: self.image}}
        if gpu:
            which = {"device_ids": self.gpu_ids} if self.gpu_ids is not None else {"count": -1}
            options["device_requests"] = [docker.types.DeviceRequest(capabilities=[["gpu"]], **which)]
        try:
            container = self.client.containers.run(self.image, list(argv), detach=True, **options)
        except docker.errors.APIError as err:
            if gpu:
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

    def run(self, argv: Sequence[str], timeout: int, gpu: bool = False) -> tuple[int, str]:
        """Exit code and output; ``gpu``: with the site's GPU flag (``--nv``) and the GPU checks' env."""
        from hpcai_tf.image.singularity import exec_in_sif

        if gpu:
            return exec_in_sif(self.executable, self.sif, argv, {**self.env, **GPU_CHECK_ENV}, self.gpu_flag)
        return exec_in_sif(self.executable, self.sif, argv, self.env)


def _runner(site: Site, runtime: str, image: str | None):
    env = run_environment(site, runtime)
    if runtime == "docker":
        from hpcai_tf.image.docker_engine import docker_client, find_image

        client = docker_client()
        image = image or image_tag(site)
        if find_image(client, image) is None:
            raise KitError(f"no image {image} in the Docker engine: build it with `hpcai build --site {site.id}`")
        return image, DockerRunner(client, image, env, visible_gpu_ids(os.environ))
    from hpcai_tf.image.singularity import find_runtime
    from hpcai_tf.recipes.render import sif_path

    executable = find_runtime()
    sif = Path(image) if image else sif_path(site)
    if not sif.is_file():
        raise KitError(f"no SIF {sif}: build it with `hpcai build --site {site.id} --runtime singularity`")
    return str(sif), SifRunner(executable, sif, env, site.runtime.gpu_flag)


def checks(site: Site, ranks: int, steps: int, allocated: bool = False, gpus: int = 0) -> list[Check]:
    """The checks for a site; ``allocated`` as for :func:`mpirun`; ``gpus``: the host's GPUs, which the GPU checks
    of a GPU site use (one rank each for ``gpu-allreduce``)."""
    kit_line = f"hpcai {__version__}"
    plan = [
        Check(
            "kit",
            ["hpcai", "--version"],
            lambda out: (kit_line in out, out.strip().splitlines()[-1] if out.strip() else ""),
        ),
        Check("versions", [*SELFTEST, "versions"], lambda out: judge_single("versions", out)),
        Check("check-build", ["horovodrun", "--check-build"], lambda out: judge_check_build(site, out)),
    ]
    if site.gpu:
        plan += [
            Check("cuda-build", [*SELFTEST, "cuda-build"], lambda out: judge_cuda_build(site, out)),
            Check("cuda-libs", [*SELFTEST, "cuda-libs"], judge_cuda_libraries),
        ]
    plan += [
        Check(
            "allreduce",
            mpirun(ranks, [*SELFTEST, "allreduce"], allocated=allocated),
            lambda out: judge_ranks("allreduce", out, ranks),
        ),
        Check(
            "train",
            mpirun(ranks, [*SELFTEST, "train", "--steps", str(steps)], allocated=allocated),
            lambda out: judge_ranks("train", out, ranks),
        ),
    ]
    if site.gpu:
        per_gpu = max(gpus, 1)
        plan += [
            Check("gpu", [*SELFTEST, "gpu", "--gpus", str(gpus)], lambda out: judge_gpu(out, site), gpu=True),
            Check(
                "gpu-allreduce",
                mpirun(per_gpu, [*SELFTEST, "gpu-allreduce"], allocated=allocated),
                lambda out: judge_gpu_allreduce(out, per_gpu),
                gpu=True,
            ),
        ]
    return plan


def verify_image(
    site: Site,
    runtime: str = "docker",
    image: str | None = None,
    ranks: int = 2,
    steps: int = 5,
    out: Callable[[str], None] = print,
    gpu_dir: Path = NVIDIA_GPUS,
) -> VerifyReport:
    """Run every check in the site's image, print one line each (one for the GPU checks that cannot run here); a
    one-line error when any failed. ``gpu_dir``: where the host's GPUs are listed (:func:`host_gpus`)."""
    if ranks < 2:
        raise KitError(f"--ranks: expected at least 2 (the checks are of communication), got {ranks}")
    name, runner = _runner(site, runtime, image)
    report = VerifyReport(image=name)
    out(f"verify {name} (site {site.id}, {runtime}, {ranks} ranks)")
    allocated = runtime != "docker" and in_allocation(os.environ)  # a container of Docker sees no job
    gpus = host_gpus(gpu_dir)
    for check in checks(site, ranks, steps, allocated, gpus):
        if check.gpu and not gpus:
            report.not_run.append(check.name)
            continue
        code, output = runner.run(check.argv, TIMEOUTS[check.name], gpu=check.gpu)
        ok, detail = check.judge(output)
        if code != 0 and ok:
            ok, detail = False, f"exit code {code}; {detail}"
        result = CheckResult(check.name, ok, detail, "" if ok else output)
        report.checks.append(result)
        out(f"  {'PASS' if ok else 'FAIL'}  {check.name:<12} {detail}")
        if not ok:
            for line in output.strip().splitlines()[-15:]:
                out(f"        | {line}")
    if report.not_run:
        report.not_run_reason = no_gpu_reason(gpu_dir)
        out(f"  SKIP  {', '.join(report.not_run)}: did not run: {report.not_run_reason}")
    failed = [c.name for c in report.checks if not c.ok]
    if failed:
        raise KitError(f"verify {name}: {len(failed)} of {len(report.checks)} checks failed: {', '.join(failed)}")
    skipped = f"; {len(report.not_run)} GPU checks did not run" if report.not_run else ""
    out(f"verify {name}: all {len(report.checks)} checks passed{skipped}")
    return report
