"""jsrun resource-set arithmetic (Summit's LSF cannot run here: this is tested as arithmetic and as text)."""

from __future__ import annotations

import pytest

from hpcai_tf.catalog import load_site
from hpcai_tf.errors import KitError
from hpcai_tf.launch.jsrun import ResourceSets, resource_sets

SUMMIT = load_site("summit").node_type()


@pytest.mark.parametrize(
    ("nodes", "ranks", "layout", "flags"),
    [
        (1, 6, "gpu", "-n6 -r6 -a1 -g1 -c7 -bpacked:7"),  # OLCF: one rank per GPU
        (2, 6, "gpu", "-n12 -r6 -a1 -g1 -c7 -bpacked:7"),
        (4608, 6, "gpu", "-n27648 -r6 -a1 -g1 -c7 -bpacked:7"),  # the whole machine
        (3, 3, "gpu", "-n9 -r3 -a1 -g1 -c7 -bpacked:7"),  # half the GPUs, each with its own 7 cores
        (1, 6, "node", "-n1 -r1 -a6 -g6 -c42 -bpacked:7"),  # OLCF's advice for deep learning
        (2, 6, "node", "-n2 -r1 -a6 -g6 -c42 -bpacked:7"),
        (2, 3, "node", "-n2 -r1 -a3 -g6 -c42 -bpacked:14"),
        (5, 1, "node", "-n5 -r1 -a1 -g6 -c42 -bpacked:42"),
    ],
)
def test_flags(nodes, ranks, layout, flags):
    """The jsrun flags for a node count, ranks per node and layout."""
    assert " ".join(resource_sets(nodes, SUMMIT, ranks, layout).flags()) == flags


@pytest.mark.parametrize("layout", ["gpu", "node"])
@pytest.mark.parametrize("nodes", [1, 2, 7, 100])
@pytest.mark.parametrize("ranks", range(1, 7))
def test_sets_fit_the_node(layout, nodes, ranks):
    """Every layout starts nodes x ranks ranks, each with a GPU, and never asks a node for more than it has."""
    sets = resource_sets(nodes, SUMMIT, ranks, layout)
    assert sets.ranks == nodes * ranks
    assert sets.sets == nodes * sets.per_node
    assert sets.per_node * sets.gpus <= SUMMIT.gpus
    assert sets.per_node * sets.cores <= SUMMIT.cores
    assert sets.tasks * sets.bind_cores <= sets.cores
    assert sets.gpus >= sets.tasks  # at least one GPU per rank


def test_resource_sets_value():
    """The dataclass holds the arithmetic, the flags are only its text."""
    assert resource_sets(2, SUMMIT, 6) == ResourceSets(sets=12, per_node=6, tasks=1, gpus=1, cores=7, bind_cores=7)


@pytest.mark.parametrize(
    ("nodes", "ranks", "message"),
    [
        (0, 6, "--nodes: expected at least 1, got 0"),
        (1, 7, "--ranks-per-node: expected 1..6 (one GPU per rank on node type ac922), got 7"),
        (1, 0, "--ranks-per-node: expected 1..6 (one GPU per rank on node type ac922), got 0"),
    ],
)
def test_refusals(nodes, ranks, message):
    with pytest.raises(KitError) as err:
        resource_sets(nodes, SUMMIT, ranks)
    assert str(err.value) == message


def test_cpu_nodes_have_no_resource_sets():
    with pytest.raises(KitError, match="node type cpu has no GPUs"):
        resource_sets(1, load_site("local").node_type(), 1)
