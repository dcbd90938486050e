"""``hpcai calibrate``: measure a site's node with the kit's own training and Horovod, fit the model's terms.

On the node it runs on, with the host's stack or inside the site's image (``--image``: a SIF run by Apptainer or
Singularity, every process below started in it, ``mpirun`` included):

1. **Compute alone**: ``hpcai train W --ranks 1`` with the given training arguments: the step time of one device
   with the rest of the node idle.
2. **Compute with the node full**: ``ranks`` such runs at once, independent (no communication): each device's
   step time when all share the node's memory, caches and cores, and the spread of per-step times from which the
   slowest of p ranks is taken.
3. **Gradients ready**: :mod:`hpcai_tf.scaling.backward_probe` under ``mpirun -np 1``: when in one step each
   gradient's allreduce is enqueued, from a Horovod timeline of the workload's forward and backward passes.
4. **Collectives**: :mod:`hpcai_tf.scaling.collective_probe` under the site's launcher (``mpirun -np ranks``):
   all-gathers and allreduces over message sizes, the workload's gradients allreduced as one step does, and the
   workload's forward and backward pass alone and with its allreduces.
5. **Fits** (:mod:`hpcai_tf.scaling.fit`): the link's latency and bandwidth, the reduction's seconds per byte,
   the per-step overhead (the gradients' measured allreduce beyond the fitted time of their fused buffers), and
   the allreduce's speed beside the backward pass (:func:`solve_beside_rate`);
6. **Across nodes** (``--across-nodes``): the collective probe's message sizes with one rank on each of two
   nodes, run by the caller's :data:`AcrossNodes` (the command layer's emulated nodes), fitted as in step 5.

On a CPU node the devices are cores: every rank runs one intra-op and one inter-op thread. None of the runs
above is a multi-rank training run: those are what the calibration is checked against (``make bench``).
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hpcai_tf.catalog import Site
from hpcai_tf.errors import KitError
from hpcai_tf.scaling.backward_probe import RESULT
from hpcai_tf.scaling.calibration import (
    Calibration,
    LinkCalibration,
    WorkloadCalibration,
    parse_calibration,
    site_pins,
)
from hpcai_tf.scaling.estimate import HOROVOD_CYCLE_S, allreduce_finish
from hpcai_tf.scaling.fit import fit_link, fit_reduction, gather_time
from hpcai_tf.train.image_contract import IMAGE_PATHS
from hpcai_tf.train.metrics_log import METRICS_FILE, read_records
from hpcai_tf.train.mpirun_spawn import find_mpirun, mpirun_command, mpirun_environment
from hpcai_tf.train.provenance import now_iso

DEFAULT_SIZES = (4096, 65536, 1 << 20, 16 << 20, 64 << 20, 256 << 20)
"""Message sizes of the probe, bytes: 4 KiB (latency) to 256 MiB (bandwidth)."""
FUSION_BYTES = 128 * 1024 * 1024
"""Horovod's default HOROVOD_FUSION_THRESHOLD since 0.21.0 (its release notes: 64 MB became 128 MB)."""
ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}


def link_message_time(nbytes: float, ranks: int, link: LinkCalibration) -> float:
    """The fitted link's time for one allreduce message of ``nbytes``: two all-gather transfers plus the
    reduction of ``(p - 1) / p`` of it."""
    return 2 * gather_time(nbytes, ranks, link.latency_s, link.bandwidth) + (
        link.reduction_s_per_byte * (ranks - 1) / ranks * nbytes
    )


def fused_allreduce_time(nbytes: int, ranks: int, link: LinkCalibration, fusion_bytes: int = FUSION_BYTES) -> float:
    """The fitted link's time for ``nbytes`` of gradients in Horovod's fused buffers."""
    buffers = max(1, -(-nbytes // fusion_bytes))
    return buffers * link_message_time(nbytes / buffers, ranks, link)


def solve_beside_rate(
    ready: Sequence[Sequence[float]],
    compute_s: float,
    exposed_s: float,
    ranks: int,
    link: LinkCalibration,
    per_tensor_s: float,
) -> float:
    """The allreduce's speed beside the backward pass (a share of its speed alone, 0 to 1) at which the model's
    schedule (:func:`~hpcai_tf.scaling.estimate.allreduce_finish`), with the gradients ready at ``ready``'s shares
    of ``compute_s``, exposes ``exposed_s`` after the last one: the probe's pass with its allreduces beyond the
    pass alone. 1 when even that exposes more than measured, 0 when even waiting for the compute to end
    exposes less. Bisection: the exposed time falls as the rate grows."""
    arrivals = sorted((share * compute_s, size) for size, share in ready)

    def exposed(rate: float) -> float:
        finish = allreduce_finish(
            arrivals,
            lambda nbytes: link_message_time(nbytes, ranks, link),
            fusion_bytes=FUSION_BYTES,
            per_tensor_s=per_tensor_s,
            rate=rate,
        )
        return finish - arrivals[-1][0]

    if exposed_s <= exposed(1.0):
        return 1.0
    if exposed_s >= exposed(0.0):
        return 0.0
    low, high = 0.0, 1.0
    for _ in range(40):
        middle = (low + high) / 2
        low, high = (middle, high) if exposed(middle) > exposed_s else (low, middle)
    return (low + high) / 2


IMAGE_PYTHON = [f"{IMAGE_PATHS.venv}/bin/python3", "-P"]
"""The stack's Python in every image, by its path (mpirun's ranks get the caller's PATH, not the image's)."""


@dataclass(frozen=True)
class Place:
    """Where the calibration's processes run: with this Python (the host), or inside an image through
    ``RUNTIME exec IMAGE``, with the image's Python and its ``mpirun``."""

    runtime: str | None = None
    image: Path | None = None

    @property
    def where(self) -> str:
        return f"the image {self.image}" if self.image else "this Python"

    @property
    def container(self) -> list[str]:
        """``RUNTIME exec IMAGE``, what a command inside the image starts with; nothing on the host."""
        return [str(self.runtime), "exec", str(self.image)] if self.image else []

    @property
    def inner_python(self) -> list[str]:
        """The Python as seen where the processes run: this one, or the image's (:data:`IMAGE_PYTHON`)."""
        return IMAGE_PYTHON if self.image else [sys.executable]

    def python(self) -> list[str]:
        """The Python to run ``-m`` modules with, from the host. In an image ``-P``: the working directory (where
        the caller's relative paths point, and maybe a kit checkout) is not put on sys.path, so the image's own kit
        runs."""
        return [*self.container, *self.inner_python]

    def mpirun(self, ranks: int, program: Sequence[str], env: Mapping[str, str]) -> list[str]:
        """``mpirun -np ranks PROGRAM`` as the kit runs it: the host's mpirun, or the image's inside the image."""
        if self.image is None:
            return mpirun_command(ranks, program, env, mpirun=find_mpirun(env))
        return [*self.container, *mpirun_command(ranks, program, env)]


STACK_PROBE = (
    "import json, platform, sys; from importlib import metadata as m\n"
    "def v(p):\n    try: return m.version(p)\n    except m.PackageNotFoundError: return None\n"
    "print(json.dumps({'python': platform.python_version(), 'tensorflow': v(sys.argv[1]), 'horovod': v('horovod')}))"
)
"""What :func:`check_stack` runs with the place's Python, TensorFlow's distribution name as its argument: its
Python, TensorFlow and Horovod versions as JSON."""


def check_stack(site: Site, place: Place = Place()) -> dict[str, str]:
    """The TensorFlow and Horovod where the calibration runs, refused if they are not the site's pins (another
    stack, another fit)."""
    probe = [*place.python(), "-c", STACK_PROBE, site.stack.tensorflow_package]
    done = subprocess.run(probe, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [""])[-1]
        raise KitError(f"calibrate: could not read the versions of {place.where} (exit {done.returncode}): {last}")
    found = json.loads(done.stdout.strip().splitlines()[-1])
    fix = "pass --image with the site's image" if place.image is None else "pass the site's own image"
    for field, package in (("tensorflow", site.stack.tensorflow_package), ("horovod", "horovod")):
        pinned = getattr(site.stack, field)
        if found[field] is None:
            raise KitError(f"--site {site.id}: {place.where} has no {package}; run from the kit's .venv or {fix}")
        if found[field] != pinned:
            raise KitError(
                f"--site {site.id}: the site pins {package} {pinned}, {place.where} has {found[field]}; "
                f"{fix} (or calibrate another site)"
            )
    return found


def image_record(place: Place) -> str | dict:
    """The provenance's ``image``: ``host``, or the SIF's path and size and what its own provenance record says
    (site, kit version, constraints file and digest)."""
    if place.image is None:
        return "host"
    shown = [*place.container, "cat", IMAGE_PATHS.provenance]
    done = subprocess.run(shown, capture_output=True, text=True)
    inside = json.loads(done.stdout) if done.returncode == 0 and done.stdout.strip().startswith("{") else {}
    return {
        "path": str(place.image.resolve()),
        "bytes": place.image.stat().st_size,
        "site": inside.get("site"),
        "kit_version": inside.get("kit_version"),
        "constraints": inside.get("constraints"),
    }


def _train(
    workload: str, run_dir: Path, train_args: Sequence[str], env: Mapping[str, str], place: Place
) -> subprocess.Popen:
    """Start ``hpcai train WORKLOAD --ranks 1`` into ``run_dir``; its stderr goes to ``run_dir``.stderr."""
    argv = [*place.python(), "-m", "hpcai_tf", "train", workload, "--ranks", "1", "--run-dir", str(run_dir)]
    with open(f"{run_dir}.stderr", "w", encoding="utf-8") as err:
        return subprocess.Popen([*argv, *train_args], env=dict(env), stdout=subprocess.DEVNULL, stderr=err)


def _finish(processes: list[subprocess.Popen], run_dirs: list[Path], what: str) -> None:
    """Wait for every process; the first failure's last stderr line as a one-line error."""
    codes = [process.wait() for process in processes]
    for code, run_dir in zip(codes, run_dirs, strict=True):
        if code != 0:
            lines = Path(f"{run_dir}.stderr").read_text(encoding="utf-8", errors="replace").strip().splitlines()
            raise KitError(f"calibrate: {what} exited {code}: {(lines or [''])[-1]}")


def _measured_epochs(run_dir: Path) -> list[dict]:
    epochs = [r for r in read_records(run_dir / METRICS_FILE) if r.get("type") == "epoch"]
    if len(epochs) < 2:
        raise KitError(f"calibrate: {run_dir} ran {len(epochs)} epoch(s); give --epochs 2 or more (the first warms up)")
    return epochs[1:]


def epoch_steps(run_dir: Path) -> tuple[list[float], int]:
    """(seconds per step of each epoch after the first, batch) of a 1-rank run: batch / samples per second."""
    epochs = _measured_epochs(run_dir)
    batch = int(epochs[-1]["batch_per_rank"])
    rates = [float(e.get("samples_per_sec_per_rank") or 0) for e in epochs]
    if min(rates) <= 0:
        raise KitError(f"calibrate: {run_dir} recorded an epoch without samples_per_sec_per_rank")
    return [batch / rate for rate in rates], batch


def epoch_quantiles(run_dir: Path) -> list[list[float]]:
    """The per-step time quantiles of each epoch after the first."""
    quantiles = [[float(q) for q in e.get("step_time_quantiles_s") or []] for e in _measured_epochs(run_dir)]
    if not all(quantiles):
        raise KitError(f"calibrate: {run_dir} has an epoch without step_time_quantiles_s (a run of an older kit)")
    return quantiles


def measure_compute(
    workload: str,
    ranks: int,
    train_args: Sequence[str],
    env: Mapping[str, str],
    work: Path,
    say: Callable,
    place: Place = Place(),
) -> dict:
    """Steps 1 and 2: the step time alone, and of ``ranks`` independent runs at once with their spread."""
    say(f"calibrate: {workload} alone on the node (hpcai train --ranks 1)")
    solo = work / "solo"
    _finish([_train(workload, solo, train_args, env, place)], [solo], f"hpcai train {workload} (alone)")
    say(f"calibrate: {ranks} independent {workload} runs at once (the node's devices all busy)")
    shared = [work / f"shared-{i}" for i in range(ranks)]
    started = [_train(workload, d, train_args, env, place) for d in shared]
    _finish(started, shared, f"hpcai train {workload} (shared node)")
    steps, batch = epoch_steps(solo)
    shared_steps = [epoch_steps(d)[0] for d in shared]
    quantiles = [epoch_quantiles(d) for d in shared]
    if len({len(s) for s in shared_steps}) != 1:
        raise KitError(f"calibrate: the {ranks} shared runs measured different numbers of epochs")
    # the runs start together and do the same work, so their k-th epochs are paired by position
    pooled = [[q for run in by_epoch for q in run] for by_epoch in zip(*quantiles, strict=True)]
    return {
        "batch_per_device": batch,
        "step_time_epochs_s": steps,
        "shared_step_time_epochs_s": [statistics.fmean(epoch) for epoch in zip(*shared_steps, strict=True)],
        "shared_step_quantiles_s": pooled,
    }


def run_backward_probe(
    workload: str, config: Path, batch: int, env: Mapping[str, str], place: Place = Place()
) -> list[list[float]]:
    """Step 3: the backward probe under ``mpirun -np 1``; [bytes, share of the step] per gradient tensor."""
    program = [*place.inner_python, "-m", "hpcai_tf.scaling.backward_probe", workload]
    program += ["--config", str(config), "--batch", str(batch)]
    return _probe(program, 1, env, place, "the backward probe")["gradients"]


def run_probe(
    site: Site,
    ranks: int,
    sizes: Sequence[int],
    repeats: int,
    workload: str,
    config: Path,
    batch: int,
    env: Mapping[str, str],
    place: Place = Place(),
) -> dict:
    """Step 4: the collective probe under ``mpirun -np ranks``; its rank 0's result."""
    if site.scheduler.launcher == "jsrun":
        raise KitError(f"--site {site.id}: its launcher is jsrun (LSF), which cannot run here")
    program = [*place.inner_python, "-m", "hpcai_tf.scaling.collective_probe", "--sizes", ",".join(map(str, sizes))]
    program += ["--repeats", str(repeats), "--workload", workload, "--config", str(config), "--batch", str(batch)]
    return _probe(program, ranks, env, place, "the collective probe")


def _probe(program: list[str], ranks: int, env: Mapping[str, str], place: Place, what: str) -> dict:
    """Run a probe under ``mpirun -np ranks``; the JSON of its ``RESULT`` line, or a one-line error."""
    run_env = mpirun_environment(env, {})
    done = subprocess.run(place.mpirun(ranks, program, run_env), env=run_env, capture_output=True, text=True)
    return _result(done, what)


def _result(done: subprocess.CompletedProcess, what: str) -> dict:
    """The JSON of a finished probe's ``RESULT`` line, or a one-line error with its last line of stderr."""
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or [""])[-1]
        raise KitError(f"calibrate: {what} exited {done.returncode}: {last}")
    return json.loads(lines[-1][len(RESULT) :])


AcrossNodes = Callable[[Sequence[str]], subprocess.CompletedProcess]
"""Runs a probe's argv with one rank on each of two nodes and returns the finished process: the command layer's
two emulated nodes (:func:`hpcai_tf.commands.scaling.emulated_pair`)."""


def run_probe_across_nodes(across: AcrossNodes, sizes: Sequence[int], repeats: int, env: Mapping[str, str]) -> dict:
    """Step 6 (``--across-nodes``): the collective probe's message sizes with one rank on each of two nodes, with
    this Python and the calibration's thread settings; rank 0's result."""
    own = [f"{name}={env[name]}" for name in (*ONE_THREAD, "TF_CPP_MIN_LOG_LEVEL") if name in env]
    program = ["env", *own, sys.executable, "-m", "hpcai_tf.scaling.collective_probe"]
    program += ["--sizes", ",".join(map(str, sizes)), "--repeats", str(repeats)]
    return _result(across(program), "the collective probe across two nodes")


def fit_probe(result: dict, level: str = "intra_node") -> LinkCalibration:
    """Step 5: the link and the reduction from the probe's points, each less one Horovod cycle.

    The probe enqueues every timed operation just after a barrier's cycle, so the operation waits for the next
    one: a 4 KiB all-gather and allreduce both take about 1.2 ms here, 1 ms of it the cycle. The model's schedule
    counts the cycles itself (:func:`~hpcai_tf.scaling.estimate.allreduce_finish`), so the link is fitted on what
    is left: the transfer's latency and bandwidth."""
    ranks, points = int(result["ranks"]), result["points"]
    sizes = [float(p["bytes"]) for p in points]
    link = fit_link(sizes, [_less_a_cycle(p["allgather_s"]) for p in points], ranks)
    reduction = fit_reduction(sizes, [_less_a_cycle(p["allreduce_s"]) for p in points], ranks, link)
    return LinkCalibration(
        level=level,
        ranks=ranks,
        latency_s=link.latency_s,
        bandwidth=link.bandwidth,
        reduction_s_per_byte=reduction,
        worst_residual=link.worst_residual,
        points=points,
    )


def _less_a_cycle(seconds: float) -> float:
    """A probe's timing of one Horovod operation without the cycle it waited for (at least a microsecond)."""
    return max(1e-6, float(seconds) - HOROVOD_CYCLE_S)


def calibrate(
    site: Site,
    workload: str,
    train_args: Sequence[str],
    *,
    ranks: int,
    previous: Path | None,
    sizes: Sequence[int] = DEFAULT_SIZES,
    repeats: int = 5,
    say: Callable[[str], None] = print,
    place: Place = Place(),
    across_nodes: AcrossNodes | None = None,
) -> Calibration:
    """Measure ``workload`` and the node's link on ``site`` (this host, with this Python or inside ``place``'s
    image), and with ``across_nodes`` the link between two nodes (with this Python); workloads of ``previous``
    measured with the same stack on the same host and image are kept beside it, and so is its link across nodes
    unless this run measures one."""
    node = site.node_type()
    if ranks < 2 or ranks > node.devices:
        raise KitError(f"--ranks: expected 2 to {node.devices} (the devices of one {node.name} node), got {ranks}")
    if across_nodes is not None and place.image is not None:
        raise KitError("--across-nodes: runs with this Python on two nodes; leave out --image")
    stack = check_stack(site, place)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}
    if node.gpus == 0:
        env.update(ONE_THREAD)
    for word in train_args:
        if word.split("=")[0] in ("--ranks", "--run-dir", "--resume"):
            raise KitError(
                f"calibrate: {word.split('=')[0]} is set by hpcai calibrate; leave it out of the training arguments"
            )
    with tempfile.TemporaryDirectory(prefix="hpcai-calibrate-") as tmp:
        work = Path(tmp)
        compute = measure_compute(workload, ranks, train_args, env, work, say, place)
        first = read_records(work / "solo" / METRICS_FILE)[0]
        if place.image is not None and not first.get("image"):
            raise KitError(f"calibrate: the run in {place.image} recorded no image provenance (not a kit image?)")
        config = work / "config.json"
        config.write_text(json.dumps(first["config"]), encoding="utf-8")
        say(f"calibrate: when each of {workload}'s gradients becomes ready (mpirun -np 1, a Horovod timeline)")
        ready = run_backward_probe(workload, config, compute["batch_per_device"], env, place)
        say(f"calibrate: Horovod collectives over {ranks} ranks ({len(sizes)} message sizes, {workload}'s gradients)")
        probe = run_probe(site, ranks, sizes, repeats, workload, config, compute["batch_per_device"], env, place)
    across = None
    if across_nodes is not None:
        say(f"calibrate: Horovod collectives across two nodes of {site.id} ({len(sizes)} message sizes)")
        across = fit_probe(run_probe_across_nodes(across_nodes, sizes, repeats, env), level="inter_node")
    link = fit_probe(probe)
    grads = probe["gradients"][workload]
    step_allreduce = _less_a_cycle(grads["allreduce_s"])
    overhead = max(0.0, step_allreduce - fused_allreduce_time(int(grads["bytes"]), ranks, link))
    probe_step, with_allreduce = float(grads["compute_s"]), float(grads["compute_and_allreduce_s"])
    rate = solve_beside_rate(ready, probe_step, with_allreduce - probe_step, ranks, link, overhead / max(1, len(ready)))
    entry = WorkloadCalibration(
        **compute,
        gradient_bytes=int(grads["bytes"]),
        gradient_tensors=int(grads["tensors"]),
        gradient_allreduce_s=float(grads["allreduce_s"]),
        gradient_ready=ready,
        probe_step_s=probe_step,
        probe_step_with_allreduce_s=with_allreduce,
        beside_rate=rate,
        step_overhead_s=overhead,
        train_args=list(train_args),
    )
    provenance = {
        "host": socket.gethostname(),
        "date": now_iso(),
        "image": image_record(place),
        "threads_per_rank": {"intra_op": 1, "inter_op": 1} if node.gpus == 0 else "tensorflow default",
        "ranks": ranks,
        "stack": stack,
        "pins": site_pins(site),
        "node_type": node.name,
    }
    workloads = {workload: entry}
    if previous is not None and previous.is_file():
        try:
            old = parse_calibration(json.loads(previous.read_text(encoding="utf-8")), str(previous))
        except (KitError, json.JSONDecodeError) as err:
            say(f"calibrate: replacing {previous} whole ({str(err).splitlines()[0]})")
            old = None  # a file that does not parse (another format, say) is not this calibration's to keep
        same = old and old.site == site.id and old.provenance.get("pins") == provenance["pins"]
        same = same and old.provenance.get("image") == provenance["image"]
        if same and old.provenance.get("host") == provenance["host"] and old.provenance.get("ranks") == ranks:
            workloads = {**old.workloads, workload: entry}
            across = across or old.link_across_nodes
    return Calibration(site.id, provenance, link, workloads, link_across_nodes=across)
