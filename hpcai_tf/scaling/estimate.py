"""A performance model of data-parallel training: predicted step time, throughput, speedup and time-to-train.

Weak scaling, as Horovod runs it: each device keeps its batch, so one step processes ``devices x batch``
samples. A step costs the device's compute time (on a busy node, paced by the slowest rank) plus whatever part
of the gradients' allreduce is still running when the backward pass has produced the last gradient:

    t_step = t_compute x contention x pace + exposed

``exposed`` comes from a schedule of Horovod's background thread (:func:`allreduce_finish`): gradients become
ready during the backward pass (a calibration measures when; nominally evenly over its last ``backward_fraction``
of the step), every cycle fuses the ready ones into buffers of at most the fusion threshold and allreduces them
one after another, at the ``overlap`` share of its speed while the backward pass runs and at full speed after.

A buffer of ``n`` bytes costs, with the bandwidth-optimal ring over ``p`` devices,

    ring(n, p, B, a) = 2 (p - 1) / p x n / B + 2 (p - 1) x a

on the slowest link the ring crosses (B bytes/s, a seconds latency; across nodes, the node's ports are shared by
its devices), plus the reduction's arithmetic and the per-tensor share of the step overhead. The hierarchical
algorithm (NCCL's tree within and across nodes, Horovod's ``HOROVOD_HIERARCHICAL_ALLREDUCE``) reduce-scatters
inside each node over the intra-node link, allreduces the node's shard across the ``k`` nodes over the
inter-node link, and all-gathers inside the node:

    hier(n) = 2 (g - 1) / g x n / B_intra + 2 (g - 1) a_intra + 2 (k - 1) / k x n / B_node + 2 (k - 1) a_inter

with ``B_node`` the node's inter-node bandwidth (rails x port bandwidth). See docs/performance-model.md.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace
from typing import ClassVar, Literal

from hpcai_tf.catalog import Link, NodeType, Site
from hpcai_tf.errors import KitError
from hpcai_tf.scaling.fit import expected_slowest
from hpcai_tf.scaling.report import time_to_train_h

Algorithm = Literal["ring", "hierarchical"]


@dataclass(frozen=True)
class Workload:
    """What the model needs to know of a workload."""

    name: str
    step_time_s: float
    """Compute time of one training step on one device (forward + backward + update), no communication."""
    batch_per_device: int
    parameters: int
    tensors: int
    """Number of gradient tensors (trainable variables): the message count without fusion."""
    epochs: int
    dataset_size: int


@dataclass(frozen=True)
class Communication:
    """How gradients are exchanged."""

    algorithm: Algorithm = "ring"
    fusion_bytes: int = 128 * 1024 * 1024
    """Horovod's HOROVOD_FUSION_THRESHOLD (128 MiB by default since Horovod 0.21.0); 0 turns fusion off."""
    overlap: float | None = None
    """The allreduce's speed while the backward pass runs, as a share of its speed alone (0: it waits for the
    compute to end, 1: it runs beside it unhindered); None: a calibration's, else 1 on GPUs (the allreduce runs
    beside the GPU's compute) and 0 on CPU nodes (it needs the same cores)."""
    backward_fraction: float = 2.0 / 3.0
    """Share of the compute time spent in the backward pass, over which the gradients become ready when no
    calibration measured when (a rule of thumb for convolutional networks)."""
    fp16: bool = False
    """Horovod's fp16 compression halves the bytes on the wire."""


Source = Literal["measured", "fitted", "catalog", "nominal"]
HOROVOD_CYCLE_S = 1e-3
"""HOROVOD_CYCLE_TIME's default since Horovod 0.21.0 (its release notes: 5 ms became 1 ms): a step's tensors
wait for the next cycle of Horovod's background thread before they are negotiated."""


@dataclass(frozen=True)
class Figure:
    """One number of the model, and where it comes from."""

    value: float
    source: Source
    note: str


@dataclass(frozen=True)
class Terms:
    """The model's figures beyond the workload's: the links, and what a calibration measures (or nominal values)."""

    intra_latency_s: Figure
    intra_bandwidth: Figure
    """Bytes per second per device, inside a node."""
    inter_latency_s: Figure
    inter_bandwidth: Figure
    """Bytes per second per node (its rails), across nodes."""
    reduction_s_per_byte: Figure
    """The reduction's arithmetic, per byte reduced (a ring reduces (p - 1) / p of each message)."""
    step_overhead_s: Figure
    """Fixed cost of every multi-rank step: Horovod's cycle and negotiation, per-tensor work."""
    overlap: Figure
    contention: Figure
    """Compute time per step with ``contention_ranks`` devices of the node busy at once, over alone."""
    contention_ranks: int = 1
    spread: tuple[float, ...] = ()
    """Per-step compute times over their mean (a calibration's): the slowest of p ranks sets the pace."""
    spread_source: str = "nominal: no spread measured, every rank takes the mean step time"
    ready: tuple[tuple[float, float], ...] = ()
    """(bytes, share of the step) per gradient tensor: when in the step each becomes ready (a calibration's);
    empty: evenly over the backward pass."""
    ready_source: str = "nominal: evenly over the backward pass (its share of the step: backward_fraction)"

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(term, value, source, note) for printing beside a prediction."""
        shown = [
            ("intra-node latency", f"{self.intra_latency_s.value * 1e6:.2f} us", self.intra_latency_s),
            ("intra-node bandwidth", f"{self.intra_bandwidth.value / 1e9:.3f} GB/s", self.intra_bandwidth),
            ("inter-node latency", f"{self.inter_latency_s.value * 1e6:.2f} us", self.inter_latency_s),
            ("inter-node bandwidth", f"{self.inter_bandwidth.value / 1e9:.3f} GB/s per node", self.inter_bandwidth),
            ("reduction", f"{self.reduction_s_per_byte.value * 1e9:.3f} ns/byte", self.reduction_s_per_byte),
            ("per-step overhead", f"{self.step_overhead_s.value * 1e3:.2f} ms", self.step_overhead_s),
            ("overlap", f"{self.overlap.value:.2f}", self.overlap),
            ("contention", f"x{self.contention.value:.3f} at {self.contention_ranks} busy", self.contention),
        ]
        rows = [(name, value, figure.source, figure.note) for name, value, figure in shown]
        source, _, note = self.spread_source.partition(": ")
        pace = f"x{pace_factor(self, 2):.3f} at 2 ranks" if self.spread else "x1.000"
        ready_source, _, ready_note = self.ready_source.partition(": ")
        if self.ready:
            first, last = min(share for _, share in self.ready), max(share for _, share in self.ready)
            ready = f"{len(self.ready)} tensors, {first:.2f} to {last:.2f} of the step"
        else:
            ready = "evenly"
        return [*rows, ("slowest rank", pace, source, note), ("gradients ready", ready, ready_source, ready_note)]


def nominal_terms(site: Site, node: NodeType, comm: Communication) -> Terms:
    """The terms from the catalog's links and nominal values: what the model knows without a calibration."""
    intra, inter = site.interconnect.intra_node, site.interconnect.inter_node
    cpu = node.gpus == 0
    overlap = comm.overlap if comm.overlap is not None else (0.0 if cpu else 1.0)
    overlap_note = (
        "--overlap"
        if comm.overlap is not None
        else (
            "CPU node: the allreduce needs the cores the compute uses" if cpu else "GPU: the allreduce runs beside it"
        )
    )
    return Terms(
        intra_latency_s=Figure(intra.latency_us * 1e-6, "catalog", link_note(site, "intra_node", "latency_us")),
        intra_bandwidth=Figure(bytes_per_second(intra), "catalog", link_note(site, "intra_node", "bandwidth_gbps")),
        inter_latency_s=Figure(inter.latency_us * 1e-6, "catalog", link_note(site, "inter_node", "latency_us")),
        inter_bandwidth=Figure(
            bytes_per_second(inter, inter.rails), "catalog", link_note(site, "inter_node", "bandwidth_gbps")
        ),
        reduction_s_per_byte=Figure(
            0.0, "nominal", "not measured (hpcai calibrate)" if cpu else "NCCL reduces on the GPU, within the transfer"
        ),
        step_overhead_s=Figure(HOROVOD_CYCLE_S, "nominal", "one HOROVOD_CYCLE_TIME (1 ms, Horovod >= 0.21)"),
        overlap=Figure(overlap, "nominal", overlap_note),
        contention=Figure(1.0, "nominal", "not measured (hpcai calibrate)"),
    )


def link_note(site: Site, level: str, field: str) -> str:
    """Where a catalog link figure comes from: the link's name (x its rails for the bandwidth across nodes), the
    page it cites for a bandwidth, and "unconfirmed" when the site lists the figure (or the whole link) so."""
    link: Link = getattr(site.interconnect, level)
    note = f"{link.name} x {link.rails}" if (level, field) == ("inter_node", "bandwidth_gbps") else link.name
    if field == "bandwidth_gbps" and link.source:
        note += f", {link.source}"
    if {f"interconnect.{level}", f"interconnect.{level}.{field}"} & site.unconfirmed.keys():
        note += ", unconfirmed"
    return note


def calibrated_terms(nominal: Terms, calibration, workload: str) -> Terms:
    """``nominal`` with what ``calibration`` (a :class:`~hpcai_tf.scaling.calibration.Calibration`) measured of
    the node and of ``workload``."""
    link, entry = calibration.link, calibration.workloads.get(workload)
    where = calibration.path.name if calibration.path else calibration.site
    if entry is None:
        raise KitError(f"{where}: no calibration of {workload} (hpcai calibrate --site {calibration.site} {workload})")
    overlap = nominal.overlap
    if not overlap.note.startswith("--overlap"):
        overlap = Figure(entry.beside_rate, "fitted", f"{workload}'s step beside its allreduces, {where}")
    across = calibration.link_across_nodes
    if across is not None:
        note = f"all-gathers across 2 emulated nodes, {where}"
        nominal = replace(
            nominal,
            inter_latency_s=Figure(across.latency_s, "fitted", note),
            inter_bandwidth=Figure(across.bandwidth, "fitted", note),
        )
    return replace(
        nominal,
        overlap=overlap,
        intra_latency_s=Figure(link.latency_s, "fitted", f"all-gathers over {link.ranks} ranks, {where}"),
        intra_bandwidth=Figure(link.bandwidth, "fitted", f"all-gathers over {link.ranks} ranks, {where}"),
        reduction_s_per_byte=Figure(link.reduction_s_per_byte, "fitted", f"allreduce beyond 2 all-gathers, {where}"),
        step_overhead_s=Figure(entry.step_overhead_s, "fitted", f"{workload}'s gradients allreduced, {where}"),
        contention=Figure(
            entry.shared_step_time_s / entry.step_time_s, "measured", f"{link.ranks} runs at once, {where}"
        ),
        contention_ranks=link.ranks,
        spread=tuple(q / mean for epoch, mean in _with_means(entry.shared_step_quantiles_s) for q in epoch),
        spread_source=f"measured: per-step times of {link.ranks} runs at once, each epoch's over its own mean, {where}",
        ready=tuple((float(size), float(share)) for size, share in entry.gradient_ready),
        ready_source=f"measured: Horovod's enqueue of each gradient in a 1-rank step, {where}",
    )


def _with_means(epochs: list[list[float]]) -> list[tuple[list[float], float]]:
    """Each epoch's per-step quantiles with their mean (computed once per epoch)."""
    return [(epoch, statistics.fmean(epoch)) for epoch in epochs]


def bytes_per_second(link: Link, ports: int = 1) -> float:
    """A link's bandwidth in bytes/s (its figure is Gbit/s per port)."""
    return link.bandwidth_gbps * 1e9 / 8 * ports


def ring_time(nbytes: float, devices: int, bandwidth: float, latency_s: float) -> float:
    """Seconds for a ring allreduce of ``nbytes`` over ``devices`` on links of ``bandwidth`` bytes/s."""
    if devices <= 1:
        return 0.0
    return 2 * (devices - 1) / devices * nbytes / bandwidth + 2 * (devices - 1) * latency_s


def hierarchical_time(nbytes: float, per_node: int, nodes: int, terms: Terms) -> float:
    """Seconds for a hierarchical allreduce: inside nodes over the intra link, across nodes per node."""
    inside = ring_time(nbytes, per_node, terms.intra_bandwidth.value, terms.intra_latency_s.value)
    across = ring_time(nbytes, nodes, terms.inter_bandwidth.value, terms.inter_latency_s.value)
    return inside + across


def flat_ring_time(nbytes: float, devices: int, per_node: int, terms: Terms) -> float:
    """Seconds for one ring over all devices: limited by the slowest link it crosses."""
    if devices <= per_node:
        return ring_time(nbytes, devices, terms.intra_bandwidth.value, terms.intra_latency_s.value)
    # Across nodes, the node's ports carry its devices' traffic: a ring crosses each node boundary once,
    # so one ring gets the node's whole inter-node bandwidth, and its latency is that of the network.
    bandwidth = min(terms.intra_bandwidth.value, terms.inter_bandwidth.value)
    return ring_time(nbytes, devices, bandwidth, terms.inter_latency_s.value)


def message_time(nbytes: float, devices: int, per_node: int, comm: Communication, terms: Terms) -> float:
    """Seconds for one allreduce message of ``nbytes`` (a fused buffer, or one tensor) over ``devices``: the
    transfers, and the reduction's arithmetic on the ``(p - 1) / p`` of it each device reduces."""
    nodes = math.ceil(devices / per_node)
    if comm.algorithm == "hierarchical" and nodes > 1:
        transfer = hierarchical_time(nbytes, min(devices, per_node), nodes, terms)
    else:
        transfer = flat_ring_time(nbytes, devices, per_node, terms)
    return transfer + terms.reduction_s_per_byte.value * (devices - 1) / devices * nbytes


def wire_bytes(workload: Workload, comm: Communication) -> int:
    """The bytes of one step's gradients on the wire: 4 per parameter, 2 with Horovod's fp16 compression."""
    return workload.parameters * (2 if comm.fp16 else 4)


def allreduce_time(
    workload: Workload, devices: int, per_node: int, site: Site, comm: Communication, terms: Terms | None = None
) -> float:
    """Seconds to allreduce one step's gradients over ``devices`` all at once (every tensor ready, fused into
    ``ceil(bytes / threshold)`` buffers, or one message per tensor without fusion): transfers and reduction."""
    if devices <= 1:
        return 0.0
    terms = terms or nominal_terms(site, site.node_type(), comm)
    nbytes = wire_bytes(workload, comm)
    messages = math.ceil(nbytes / comm.fusion_bytes) if comm.fusion_bytes else workload.tensors
    messages = max(1, min(messages, workload.tensors))
    return messages * message_time(nbytes / messages, devices, per_node, comm, terms)


def gradient_arrivals(
    workload: Workload, comm: Communication, terms: Terms, compute_s: float
) -> list[tuple[float, float]]:
    """(seconds into the step, bytes) of each gradient tensor, in the order they become ready: the calibration's
    shares of the step (its bytes scaled to the workload's gradient, e.g. halved by fp16 compression), else
    ``workload.tensors`` equal tensors evenly over the backward pass, the last one at the step's end."""
    nbytes = wire_bytes(workload, comm)
    if terms.ready:
        scale = nbytes / sum(size for size, _ in terms.ready)
        return sorted((share * compute_s, size * scale) for size, share in terms.ready)
    count, backward = workload.tensors, comm.backward_fraction * compute_s
    return [(compute_s - backward + (i + 1) / count * backward, nbytes / count) for i in range(count)]


def _advance(start: float, work: float, compute_end: float, rate: float) -> float:
    """When ``work`` seconds of communication (at full speed) begun at ``start`` end: at ``rate`` of full speed
    while the compute runs (until ``compute_end``), at full speed after."""
    if start >= compute_end:
        return start + work
    if rate > 0 and start + work / rate <= compute_end:
        return start + work / rate
    return compute_end + work - rate * (compute_end - start)


def allreduce_finish(
    arrivals: list[tuple[float, float]],
    message_s,
    *,
    fusion_bytes: int,
    per_tensor_s: float,
    rate: float,
    cycle_s: float = HOROVOD_CYCLE_S,
) -> float:
    """Seconds into the step at which Horovod's background thread has allreduced every gradient.

    ``arrivals`` are (ready time, bytes) in order; ``message_s(nbytes)`` is one message's time at full speed.
    Every cycle (at most one per ``cycle_s``; an idle thread wakes on the ticks of its cycle, so a gradient that
    finds it idle waits for the next tick) takes the gradients ready by its start, packs them in order into
    buffers of at most ``fusion_bytes`` (each tensor its own message with 0) and allreduces the buffers one after
    another, each costing ``message_s`` plus ``per_tensor_s`` per tensor in it; at ``rate`` of that speed until
    the last gradient is ready (the backward pass's end), at full speed after."""
    compute_end = arrivals[-1][0]
    clock, last_cycle, index = 0.0, -cycle_s, 0
    while index < len(arrivals):
        clock = max(clock, last_cycle + cycle_s)
        if arrivals[index][0] > clock and cycle_s > 0:  # idle: the thread wakes on its cycle's ticks
            clock = last_cycle + cycle_s * math.ceil((arrivals[index][0] - last_cycle) / cycle_s - 1e-9)
        clock = max(clock, arrivals[index][0])
        last_cycle = clock
        taken = index
        while taken < len(arrivals) and arrivals[taken][0] <= clock:
            taken += 1
        buffer, count = 0.0, 0
        for _, nbytes in arrivals[index:taken]:
            if count and (not fusion_bytes or buffer + nbytes > fusion_bytes):
                clock = _advance(clock, message_s(buffer) + count * per_tensor_s, compute_end, rate)
                buffer, count = 0.0, 0
            buffer, count = buffer + nbytes, count + 1
        clock = _advance(clock, message_s(buffer) + count * per_tensor_s, compute_end, rate)
        index = taken
    return clock


def exposed_communication(
    workload: Workload, devices: int, per_node: int, comm: Communication, terms: Terms, compute_s: float
) -> float:
    """Seconds the step waits for its allreduces after the backward pass has produced the last gradient."""
    arrivals = gradient_arrivals(workload, comm, terms, compute_s)
    finish = allreduce_finish(
        arrivals,
        lambda nbytes: message_time(nbytes, devices, per_node, comm, terms),
        fusion_bytes=comm.fusion_bytes,
        per_tensor_s=terms.step_overhead_s.value / len(arrivals),
        rate=terms.overlap.value,
    )
    return max(0.0, finish - arrivals[-1][0])


def pace_factor(terms: Terms, devices: int) -> float:
    """How much longer than the mean step the slowest of ``devices`` ranks takes (1 without a measured spread)."""
    if devices <= 1 or not terms.spread:
        return 1.0
    return expected_slowest(terms.spread, devices) / (sum(terms.spread) / len(terms.spread))


def contention_factor(terms: Terms, busy: int) -> float:
    """Compute time with ``busy`` devices of a node working over alone: the measured factor at its rank count,
    linear in between from 1 at one device."""
    measured = terms.contention.value
    if busy <= 1:
        return 1.0
    if busy >= terms.contention_ranks or terms.contention_ranks <= 1:
        return measured
    return 1.0 + (measured - 1.0) * (busy - 1) / (terms.contention_ranks - 1)


def step_time(
    workload: Workload, devices: int, per_node: int, site: Site, comm: Communication, terms: Terms | None = None
) -> float:
    """Predicted seconds per step: the slowest rank's compute on a busy node, and the allreduces still running
    when its backward pass ends."""
    terms = terms or nominal_terms(site, site.node_type(), comm)
    if devices <= 1:
        return workload.step_time_s
    compute = workload.step_time_s * contention_factor(terms, min(devices, per_node)) * pace_factor(terms, devices)
    return compute + exposed_communication(workload, devices, per_node, comm, terms, compute)


def check_devices(site: Site, node: NodeType, devices: list[int]) -> None:
    """Refuse a device count the site does not have."""
    if not devices:
        raise KitError("--gpus: give at least one device count, e.g. --gpus 1,8,64")
    most = node.devices * node.count
    for count in devices:
        if count < 1:
            raise KitError(f"--gpus: expected positive counts, got {count}")
        if count > most:
            raise KitError(
                f"--gpus: {count} is more than site {site.id} has ({node.count} {node.name} nodes x "
                f"{node.devices} {node.device_kind} = {most})"
            )


@dataclass(frozen=True)
class Prediction:
    """The model's line for one device count: step time, how much communication shows, and what follows."""

    HEADER: ClassVar[tuple[str, ...]] = (
        "site",
        "model",
        "devices",
        "step (ms)",
        "over 1 device (ms)",
        "samples/s",
        "speedup",
        "efficiency",
        "full-data epoch (s)",
        "time to train (h)",
    )
    site: str
    model: str
    devices: int
    step_time_s: float
    exposed_comm_s: float
    """The step's time beyond one device's compute: contention, the slowest rank, exposed communication and
    the per-step overhead."""
    throughput: float
    speedup: float
    efficiency: float
    epoch_time_s: float
    """One pass over the workload's full data set (``dataset_size``), not the measured run's."""
    time_to_train_h: float

    @property
    def label(self) -> str:
        return f"{self.site} ({self.model})"

    @property
    def workers(self) -> int:
        return self.devices

    def cells(self) -> tuple[str, ...]:
        return (
            self.site,
            self.model,
            str(self.devices),
            f"{self.step_time_s * 1000:.1f}",
            f"{self.exposed_comm_s * 1000:.1f}",
            f"{self.throughput:.2f}",
            f"{self.speedup:.3f}",
            f"{self.efficiency:.3f}",
            f"{self.epoch_time_s:.2f}",
            f"{self.time_to_train_h:.2f}",
        )


def predict(
    workload: Workload,
    site: Site,
    node: NodeType,
    devices: list[int],
    comm: Communication,
    terms: Terms | None = None,
) -> list[Prediction]:
    """Predicted step time, throughput, speedup, efficiency and time-to-train for each device count."""
    check_devices(site, node, devices)
    terms = terms or nominal_terms(site, node, comm)
    per_node = node.devices
    counts = sorted(set(devices))
    single = workload.batch_per_device / workload.step_time_s
    rows = []
    for count in counts:
        seconds = step_time(workload, count, per_node, site, comm, terms)
        throughput = count * workload.batch_per_device / seconds
        speedup = throughput / single
        rows.append(
            Prediction(
                site=site.id,
                model=f"model ({comm.algorithm})",
                devices=count,
                step_time_s=seconds,
                exposed_comm_s=seconds - workload.step_time_s,
                throughput=throughput,
                speedup=speedup,
                efficiency=speedup / count,
                epoch_time_s=workload.dataset_size / throughput,
                time_to_train_h=time_to_train_h(workload.epochs, workload.dataset_size, throughput),
            )
        )
    return rows
