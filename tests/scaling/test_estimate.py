"""The performance model's arithmetic on known inputs (docs/performance-model.md)."""

from __future__ import annotations

import pytest

from hpcai_tf.catalog import load_site
from hpcai_tf.errors import KitError
from hpcai_tf.scaling.estimate import (
    Communication,
    Workload,
    allreduce_time,
    bytes_per_second,
    predict,
    ring_time,
    step_time,
)

SUMMIT = load_site("summit")
RESNET = Workload(
    "resnet50",
    step_time_s=0.25,
    batch_per_device=64,
    parameters=25_557_032,
    tensors=161,
    epochs=90,
    dataset_size=1_281_167,
)


def test_ring_allreduce_formula():
    """2 (p-1)/p n/B + 2 (p-1) a."""
    assert ring_time(1e8, 1, 1e10, 1e-6) == 0.0
    assert ring_time(1e8, 4, 1e10, 1e-6) == pytest.approx(2 * 3 / 4 * 1e-2 + 6e-6)


def test_link_bandwidth_in_bytes():
    """Catalog figures are Gbit/s per port; dual-rail doubles the node's bandwidth."""
    inter = SUMMIT.interconnect.inter_node
    assert bytes_per_second(inter) == 12.5e9
    assert bytes_per_second(inter, inter.rails) == 25e9


def test_fusion_sets_the_message_count():
    """Horovod's default 128 MiB sends ResNet-50's 102 MB of fp32 gradients in 1 message, 64 MiB in 2; no fusion
    sends 161."""
    nbytes = RESNET.parameters * 4
    intra = SUMMIT.interconnect.intra_node
    whole = ring_time(nbytes, 6, bytes_per_second(intra), intra.latency_us * 1e-6)
    assert allreduce_time(RESNET, 6, 6, SUMMIT, Communication()) == pytest.approx(whole)
    one_message = ring_time(nbytes / 2, 6, bytes_per_second(intra), intra.latency_us * 1e-6)
    assert allreduce_time(RESNET, 6, 6, SUMMIT, Communication(fusion_bytes=64 << 20)) == pytest.approx(2 * one_message)
    unfused = ring_time(nbytes / 161, 6, bytes_per_second(intra), intra.latency_us * 1e-6)
    assert allreduce_time(RESNET, 6, 6, SUMMIT, Communication(fusion_bytes=0)) == pytest.approx(161 * unfused)


def test_fp16_halves_the_bandwidth_term():
    """fp16 compression puts half the bytes on the wire."""
    comm32, comm16 = Communication(fusion_bytes=0), Communication(fusion_bytes=0, fp16=True)
    t32 = allreduce_time(RESNET, 12, 6, SUMMIT, comm32)
    t16 = allreduce_time(RESNET, 12, 6, SUMMIT, comm16)
    latency = 161 * 2 * 11 * SUMMIT.interconnect.inter_node.latency_us * 1e-6
    assert t16 - latency == pytest.approx((t32 - latency) / 2)


def test_hierarchical_across_nodes():
    """Reduce inside nodes over NVLink, across nodes over the dual-rail network, one message when fused."""
    comm = Communication(algorithm="hierarchical", fusion_bytes=1 << 30)
    nbytes = RESNET.parameters * 4
    intra, inter = SUMMIT.interconnect.intra_node, SUMMIT.interconnect.inter_node
    expected = (2 * 5 / 6 * nbytes / 50e9 + 2 * 5 * 5e-6) + (2 * 3 / 4 * nbytes / 25e9 + 2 * 3 * 1e-6)
    assert intra.bandwidth_gbps == 400 and inter.rails == 2
    assert allreduce_time(RESNET, 24, 6, SUMMIT, comm) == pytest.approx(expected)


def test_overlap_hides_communication_under_the_backward_pass():
    """With full overlap (a GPU node's default), up to 2/3 of the compute time of communication costs nothing but
    the nominal per-step overhead (one Horovod cycle, 1 ms)."""
    comm = Communication(fusion_bytes=1 << 30)
    exposed = allreduce_time(RESNET, 6, 6, SUMMIT, comm)
    assert exposed < 2 / 3 * RESNET.step_time_s
    assert step_time(RESNET, 6, 6, SUMMIT, comm) == pytest.approx(RESNET.step_time_s + 0.001)
    no_overlap = Communication(fusion_bytes=1 << 30, overlap=0.0)
    assert step_time(RESNET, 6, 6, SUMMIT, no_overlap) == pytest.approx(RESNET.step_time_s + exposed + 0.001)


def test_predict_rows():
    """Throughput = devices x batch / step; speedup and efficiency against one device; time-to-train."""
    comm = Communication(fusion_bytes=1 << 30, overlap=0.0)
    rows = predict(RESNET, SUMMIT, SUMMIT.node_type(), [1, 6, 12], comm)
    assert [r.devices for r in rows] == [1, 6, 12]
    assert rows[0].throughput == pytest.approx(64 / 0.25)
    assert rows[0].efficiency == 1.0
    for row in rows[1:]:
        step = step_time(RESNET, row.devices, 6, SUMMIT, comm)
        assert row.throughput == pytest.approx(row.devices * 64 / step)
        assert row.efficiency == pytest.approx(0.25 / step)
        assert row.time_to_train_h == pytest.approx(90 * 1_281_167 / row.throughput / 3600)
        assert (row.step_time_s, row.exposed_comm_s) == pytest.approx((step, step - 0.25))
        assert row.epoch_time_s == pytest.approx(1_281_167 / row.throughput)  # the full data set, not a run's
    assert rows[2].efficiency < rows[1].efficiency < 1.0


def test_more_gpus_than_the_site_has_is_refused():
    """HAL has 16 nodes x 4 GPUs."""
    hal = load_site("hal")
    with pytest.raises(KitError, match=r"--gpus: 128 is more than site hal has \(16 ac922 nodes x 4 GPUs = 64\)"):
        predict(RESNET, hal, hal.node_type(), [1, 128], Communication())


def test_estimate_cli_with_a_supplied_gpu_step_time(hpcai):
    """`hpcai estimate` with a V100 figure supplied (not measured here) and explicit model size."""
    result = hpcai(
        "estimate",
        "resnet50",
        "--site",
        "summit",
        "--gpus",
        "1,6,48",
        "--step-time",
        "0.25",
        "--batch",
        "64",
        "--params",
        "25557032",
        "--tensors",
        "161",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "# resnet50 on summit (ac922): 25,557,032 parameters in 161 tensors, 250.0 ms/step at batch 64 "
        "per device (supplied: --step-time), ring allreduce"
    )
    assert (
        "| intra-node bandwidth | 50.000 GB/s | catalog | NVLink 2.0, "
        "https://docs.olcf.ornl.gov/systems/summit_user_guide.html, unconfirmed |"
    ) in lines
    assert "| intra-node latency | 5.00 us | catalog | NVLink 2.0, unconfirmed |" in lines
    assert (
        "| inter-node bandwidth | 25.000 GB/s per node | catalog | EDR InfiniBand x 2, "
        "https://docs.olcf.ornl.gov/systems/summit_user_guide.html |"
    ) in lines
    assert "| overlap | 1.00 | nominal | GPU: the allreduce runs beside it |" in lines
    header = lines.index(
        "| site | model | devices | step (ms) | over 1 device (ms) | samples/s | speedup | efficiency "
        "| full-data epoch (s) | time to train (h) |"
    )
    assert lines[header + 2].startswith("| summit | model (ring) | 1 | 250.0 | 0.0 | 256.00 | 1.000 | 1.000 |")
    assert lines[header + 3].startswith("| summit | model (ring) | 6 | 251.0 | 1.0 |")
    assert "cloud-equivalent cost of the full training at USD 3.06 per device-hour:" in result.stdout


def test_estimate_cli_refuses_a_gpu_count_the_site_lacks(hpcai):
    """One line, exit 2."""
    result = hpcai(
        "estimate",
        "gw",
        "--site",
        "bridges-ai",
        "--node-type",
        "dgx2",
        "--gpus",
        "32",
        "--step-time",
        "0.1",
        "--batch",
        "64",
        "--params",
        "1000",
        "--tensors",
        "10",
    )
    assert result.returncode == 2
    assert result.stderr == "hpcai: error: --gpus: 32 is more than site bridges-ai has (1 dgx2 nodes x 16 GPUs = 16)\n"


@pytest.mark.slow
def test_model_size_of_resnet50_is_keras_resnet50():
    """The gradient size comes from the real model: Keras ResNet-50 has 25,583,592 trainable parameters."""
    from hpcai_tf.scaling.model_size import model_size

    size = model_size("resnet50")
    assert (size.parameters, size.epochs, size.dataset_size) == (25_583_592, 90, 1_281_167)
    assert size.tensors == 214
