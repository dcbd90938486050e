"""jsrun resource sets (LSF on IBM AC922 systems such as Summit): how many, and what each one holds.

A resource set (RS) is a slice of a node: some GPUs, some cores, some tasks (ranks). ``jsrun -n`` counts the
resource sets of the whole job, ``-r`` those per node, ``-a`` the tasks per set, ``-g`` its GPUs, ``-c`` its
cores, and ``-bpacked:K`` binds each task to K cores of its set. Two layouts, both from OLCF's documentation:

- ``gpu`` (the default): one rank per GPU, one resource set per rank, holding that GPU and the GPU's share of
  the cores; on Summit ``-n 6N -r6 -a1 -g1 -c7 -bpacked:7``.
- ``node``: one resource set per node holding all its GPUs and cores, with the ranks inside it; OLCF's advice
  for deep learning, ``-n N -r1 -g6 -a6 -c42 -bpacked:7``.

Pure arithmetic over a node type; no LSF runs on this machine, so this is tested as arithmetic and exact text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hpcai_tf.catalog import NodeType
from hpcai_tf.errors import KitError

Layout = Literal["gpu", "node"]
LAYOUTS: tuple[Layout, ...] = ("gpu", "node")


@dataclass(frozen=True)
class ResourceSets:
    """One jsrun layout: ``sets`` resource sets in all, ``per_node`` on each node, each with the rest."""

    sets: int
    per_node: int
    tasks: int
    gpus: int
    cores: int
    bind_cores: int

    @property
    def ranks(self) -> int:
        """Ranks of the whole job."""
        return self.sets * self.tasks

    def flags(self) -> list[str]:
        """The jsrun flags, in OLCF's order: ``-n -r -a -g -c -b``."""
        return [
            f"-n{self.sets}",
            f"-r{self.per_node}",
            f"-a{self.tasks}",
            f"-g{self.gpus}",
            f"-c{self.cores}",
            f"-bpacked:{self.bind_cores}",
        ]


def resource_sets(nodes: int, node: NodeType, ranks_per_node: int, layout: Layout = "gpu") -> ResourceSets:
    """The resource sets for ``nodes`` nodes of type ``node`` running ``ranks_per_node`` ranks, one GPU each.

    ``gpu`` layout: ``ranks_per_node`` sets per node, each with 1 GPU, 1 task and ``cores // gpus`` cores (the
    cores that sit beside one GPU, so that every set fits on one socket). ``node`` layout: one set per node with
    every GPU and core of the node and ``ranks_per_node`` tasks, each bound to ``cores // ranks_per_node`` cores.
    """
    if nodes < 1:
        raise KitError(f"--nodes: expected at least 1, got {nodes}")
    if node.gpus < 1:
        raise KitError(f"node type {node.name} has no GPUs; jsrun resource sets here hold one GPU per rank")
    if not 1 <= ranks_per_node <= node.gpus:
        raise KitError(
            f"--ranks-per-node: expected 1..{node.gpus} (one GPU per rank on node type {node.name}), "
            f"got {ranks_per_node}"
        )
    if layout == "gpu":
        cores = node.cores // node.gpus
        return ResourceSets(nodes * ranks_per_node, ranks_per_node, 1, 1, cores, cores)
    if layout == "node":
        return ResourceSets(nodes, 1, ranks_per_node, node.gpus, node.cores, node.cores // ranks_per_node)
    raise KitError(f"--jsrun-layout: expected one of {', '.join(LAYOUTS)}, got {layout!r}")
