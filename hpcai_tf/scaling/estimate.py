"""A performance model of data-parallel training: predicted step time, throughput, speedup and time-to-train.

Weak scaling, as Horovod runs it: each device keeps its batch, so one step processes ``devices x batch``
samples. A step costs the device's compute time plus whatever part of the gradient allreduce the backward
pass does not hide:

    t_step = t_compute + max(0, t_allreduce - overlap x backward_fraction x t_compute)

The allreduce moves the gradient (parameters x 4 bytes, 2 with fp16 compression) in ``m`` messages: the
fused buffers of Horovod's tensor fusion (``ceil(bytes / fusion_threshold)``), or one per gradient tensor
without fusion. Each message of ``n`` bytes costs, with the bandwidth-optimal ring over ``p`` devices,

    ring(n, p, B, a) = 2 (p - 1) / p x n / B + 2 (p - 1) x a

on the slowest link the ring crosses (B bytes/s, a seconds latency; across nodes, the node's ports are shared by
its devices). The hierarchical algorithm (NCCL's tree within and across nodes, Horovod's
``HOROVOD_HIERARCHICAL_ALLREDUCE``) reduce-scatters inside each node over the intra-node link, allreduces
the node's shard across the ``k`` nodes over the inter-node link, and all-gathers inside the node:

    hier(n) = 2 (g - 1) / g x n / B_intra + 2 (g - 1) a_intra + 2 (k - 1) / k x n / B_node + 2 (k - 1) a_inter

with ``B_node`` the node's inter-node bandwidth (rails x port bandwidth). See docs/performance-model.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

from hpcai_tf.catalog import Link, NodeType, Site
from hpcai_tf.errors import KitError
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
    fusion_bytes: int = 64 * 1024 * 1024
    """Horovod's HOROVOD_FUSION_THRESHOLD (default 64 MiB); 0 turns fusion off."""
    overlap: float = 1.0
    """Fraction of the backward pass under which communication can hide (0: none, 1: all of it)."""
    backward_fraction: float = 2.0 / 3.0
    """Share of the compute time spent in the backward pass."""
    fp16: bool = False
    """Horovod's fp16 compression halves the bytes on the wire."""


def bytes_per_second(link: Link, ports: int = 1) -> float:
    """A link's bandwidth in bytes/s (its figure is Gbit/s per port)."""
    return link.bandwidth_gbps * 1e9 / 8 * ports


def ring_time(nbytes: float, devices: int, bandwidth: float, latency_s: float) -> float:
    """Seconds for a ring allreduce of ``nbytes`` over ``devices`` on links of ``bandwidth`` bytes/s."""
    if devices <= 1:
        return 0.0
    return 2 * (devices - 1) / devices * nbytes / bandwidth + 2 * (devices - 1) * latency_s


def hierarchical_time(nbytes: float, per_node: int, nodes: int, site: Site) -> float:
    """Seconds for a hierarchical allreduce: inside nodes over the intra link, across nodes per node."""
    intra, inter = site.interconnect.intra_node, site.interconnect.inter_node
    inside = ring_time(nbytes, per_node, bytes_per_second(intra), intra.latency_us * 1e-6)
    across = ring_time(nbytes, nodes, bytes_per_second(inter, inter.rails), inter.latency_us * 1e-6)
    return inside + across


def flat_ring_time(nbytes: float, devices: int, per_node: int, site: Site) -> float:
    """Seconds for one ring over all devices: limited by the slowest link it crosses."""
    intra, inter = site.interconnect.intra_node, site.interconnect.inter_node
    if devices <= per_node:
        return ring_time(nbytes, devices, bytes_per_second(intra), intra.latency_us * 1e-6)
    # Across nodes, the node's ports carry its devices' traffic: a ring crosses each node boundary once,
    # so one ring gets the node's whole inter-node bandwidth, and its latency is that of the network.
    bandwidth = min(bytes_per_second(intra), bytes_per_second(inter, inter.rails))
    return ring_time(nbytes, devices, bandwidth, inter.latency_us * 1e-6)


def allreduce_time(workload: Workload, devices: int, per_node: int, site: Site, comm: Communication) -> float:
    """Seconds to allreduce one step's gradients over ``devices``."""
    if devices <= 1:
        return 0.0
    nbytes = workload.parameters * (2 if comm.fp16 else 4)
    messages = math.ceil(nbytes / comm.fusion_bytes) if comm.fusion_bytes else workload.tensors
    messages = max(1, min(messages, workload.tensors))
    per_message = nbytes / messages
    nodes = math.ceil(devices / per_node)
    if comm.algorithm == "hierarchical" and nodes > 1:
        return messages * hierarchical_time(per_message, min(devices, per_node), nodes, site)
    return messages * flat_ring_time(per_message, devices, per_node, site)


def step_time(workload: Workload, devices: int, per_node: int, site: Site, comm: Communication) -> float:
    """Predicted seconds per step: compute, plus the communication the backward pass does not hide."""
    hidden = comm.overlap * comm.backward_fraction * workload.step_time_s
    exposed = max(0.0, allreduce_time(workload, devices, per_node, site, comm) - hidden)
    return workload.step_time_s + exposed


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
        "exposed comm (ms)",
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
    workload: Workload, site: Site, node: NodeType, devices: list[int], comm: Communication
) -> list[Prediction]:
    """Predicted step time, throughput, speedup, efficiency and time-to-train for each device count."""
    check_devices(site, node, devices)
    per_node = node.devices
    counts = sorted(set(devices))
    single = workload.batch_per_device / workload.step_time_s
    rows = []
    for count in counts:
        seconds = step_time(workload, count, per_node, site, comm)
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
