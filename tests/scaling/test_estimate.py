"""The performance model's arithmetic on known inputs (docs/performance-model.md)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from hpcai_tf.catalog import load_site
from hpcai_tf.errors import KitError
from hpcai_tf.scaling.calibrate import link_message_time, solve_beside_rate
from hpcai_tf.scaling.calibration import LinkCalibration
from hpcai_tf.scaling.estimate import (
    Communication,
    Workload,
    allreduce_finish,
    allreduce_time,
    bytes_per_second,
    gradient_arrivals,
    nominal_terms,
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


def test_the_schedule_sends_each_cycle_s_ready_gradients_at_the_overlap_rate_then_at_full_speed():
    """Two 100-byte gradients, ready at 0.1 s and 0.2 s (the backward pass's end), 1 ms per byte: the first is
    sent beside the compute, the second after it; at half speed the first spills over the end; at 0 it waits."""

    def finish(rate: float, arrivals=((0.1, 100.0), (0.2, 100.0)), **kwargs) -> float:
        settings = {"fusion_bytes": 1 << 20, "per_tensor_s": 0.0, "rate": rate, "cycle_s": 0.0, **kwargs}
        return allreduce_finish(list(arrivals), lambda nbytes: nbytes * 1e-3, **settings)

    assert finish(1.0) == pytest.approx(0.3)
    assert finish(0.5) == pytest.approx(0.2 + (0.1 - 0.5 * 0.1) + 0.1)
    assert finish(0.0) == pytest.approx(0.4)
    assert finish(1.0, per_tensor_s=0.01) == pytest.approx(0.32)
    together = ((0.2, 100.0), (0.2, 100.0))
    assert finish(1.0, together) == pytest.approx(0.4)  # one fused buffer
    latency = {"fusion_bytes": 1 << 20, "per_tensor_s": 0.0, "rate": 1.0, "cycle_s": 0.0}
    fused = allreduce_finish(list(together), lambda nbytes: 0.01 + nbytes * 1e-3, **latency)
    unfused = allreduce_finish(list(together), lambda nbytes: 0.01 + nbytes * 1e-3, **{**latency, "fusion_bytes": 0})
    assert (fused, unfused) == pytest.approx((0.2 + 0.21, 0.2 + 2 * 0.11))
    # Horovod's cycle: the second gradient finds the thread busy, then waits for the cycle's next tick; a third,
    # ready long after, finds it idle and waits for the tick after its arrival.
    cycles = ((0.0, 1.0), (0.0005, 1.0), (0.0234, 1.0))
    assert finish(1.0, cycles, cycle_s=0.01) == pytest.approx(0.031)


def test_nominal_gradients_are_ready_evenly_over_the_backward_pass():
    """Without a calibration, a GPU node (overlap 1) exposes only the last tensor's message and its share of the
    1 ms overhead; with --overlap 0 the first tensor waits for the compute's end, the other 160 go fused after it."""
    intra = SUMMIT.interconnect.intra_node
    tensor = RESNET.parameters * 4 / 161

    def message(nbytes: float) -> float:
        return ring_time(nbytes, 6, bytes_per_second(intra), intra.latency_us * 1e-6)

    comm = Communication(fusion_bytes=1 << 30)
    assert step_time(RESNET, 6, 6, SUMMIT, comm) == pytest.approx(0.25 + message(tensor) + 0.001 / 161)
    waiting = Communication(fusion_bytes=1 << 30, overlap=0.0)
    assert step_time(RESNET, 6, 6, SUMMIT, waiting) == pytest.approx(
        0.25 + message(tensor) + message(160 * tensor) + 0.001
    )


def test_measured_readiness_is_scaled_to_the_step_and_the_gradient():
    """A calibration's shares of the step and bytes: fp16 compression halves the bytes, the step scales the times."""
    terms = replace(nominal_terms(SUMMIT, SUMMIT.node_type(), Communication()), ready=((300.0, 0.9), (100.0, 0.4)))
    workload = replace(RESNET, parameters=100)
    assert gradient_arrivals(workload, Communication(), terms, 2.0) == [(0.8, 100.0), (1.8, 300.0)]
    assert gradient_arrivals(workload, Communication(fp16=True), terms, 2.0) == [(0.8, 50.0), (1.8, 150.0)]


def test_the_calibration_solves_the_rate_that_reproduces_the_probe():
    """solve_beside_rate inverts the schedule: the rate it finds exposes what the probe measured."""
    link = LinkCalibration("intra_node", 2, 1e-3, 1e8, 0.0, 0.0, [])
    ready = [[4e6, 0.5], [4e6, 0.8], [1e6, 1.0]]
    message = lambda nbytes: link_message_time(nbytes, 2, link)  # noqa: E731
    arrivals = [(0.5 * 0.4, 4e6), (0.8 * 0.4, 4e6), (0.4, 1e6)]
    for rate in (0.0, 0.3, 1.0):
        exposed = allreduce_finish(arrivals, message, fusion_bytes=1 << 27, per_tensor_s=1e-4, rate=rate) - 0.4
        assert solve_beside_rate(ready, 0.4, exposed, 2, link, 1e-4) == pytest.approx(rate, abs=1e-6)
    assert solve_beside_rate(ready, 0.4, 0.0, 2, link, 1e-4) == 1.0  # less than even full speed exposes
    assert solve_beside_rate(ready, 0.4, 10.0, 2, link, 1e-4) == 0.0


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
    # the last of 161 equal tensors, ready at the end of the backward pass: its message and 1/161 of 1 ms
    assert lines[header + 3].startswith("| summit | model (ring) | 6 | 250.1 | 0.1 |")
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
