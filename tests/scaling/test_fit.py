"""The fitting arithmetic of `hpcai calibrate` and `hpcai estimate --fit` on known inputs (docs/performance-model.md)."""

from __future__ import annotations

import math

import pytest

from hpcai_tf.catalog import load_site
from hpcai_tf.errors import KitError
from hpcai_tf.scaling.curve_fit import bounded_least_squares, fit_curve
from hpcai_tf.scaling.estimate import (
    Communication,
    Workload,
    allreduce_time,
    contention_factor,
    nominal_terms,
    pace_factor,
    step_time,
)
from hpcai_tf.scaling.fit import expected_slowest, fit_link, fit_reduction, gather_time

LATENCY, BANDWIDTH, REDUCTION = 1.5e-3, 7e8, 2e-10
SIZES = [4096.0, 65536.0, 1 << 20, 16 << 20, 256 << 20]


def test_fit_link_recovers_latency_and_bandwidth_of_exact_points():
    """All-gather times built from (p - 1) a + (p - 1) / p n / B give back a and B, with no residual."""
    for ranks in (2, 4):
        seconds = [gather_time(n, ranks, LATENCY, BANDWIDTH) for n in SIZES]
        fit = fit_link(SIZES, seconds, ranks)
        assert fit.latency_s == pytest.approx(LATENCY, rel=1e-9)
        assert fit.bandwidth == pytest.approx(BANDWIDTH, rel=1e-9)
        assert fit.worst_residual < 1e-9


def test_fit_link_weighs_each_point_by_its_size():
    """A 10% error on the largest point moves the bandwidth, not the latency the small points fix."""
    seconds = [gather_time(n, 2, LATENCY, BANDWIDTH) for n in SIZES]
    seconds[-1] *= 1.1
    fit = fit_link(SIZES, seconds, 2)
    assert fit.latency_s == pytest.approx(LATENCY, rel=0.02)
    assert BANDWIDTH / 1.1 <= fit.bandwidth < BANDWIDTH


def test_fit_link_refuses_what_cannot_be_a_link():
    with pytest.raises(KitError, match="two or more ranks"):
        fit_link(SIZES, [1.0] * len(SIZES), 1)
    with pytest.raises(KitError, match="do not grow"):
        fit_link(SIZES, [1.0 / (i + 1) for i in range(len(SIZES))], 2)


def test_fit_reduction_is_the_allreduce_beyond_two_gathers():
    """t = 2 t_gather(n) + c (p - 1) / p n gives back c; timings at two gathers give 0."""
    for ranks in (2, 8):
        link = fit_link(SIZES, [gather_time(n, ranks, LATENCY, BANDWIDTH) for n in SIZES], ranks)
        allreduce = [2 * gather_time(n, ranks, LATENCY, BANDWIDTH) + REDUCTION * (ranks - 1) / ranks * n for n in SIZES]
        assert fit_reduction(SIZES, allreduce, ranks, link) == pytest.approx(REDUCTION, rel=1e-6)
        pure = [2 * gather_time(n, ranks, LATENCY, BANDWIDTH) for n in SIZES]
        assert fit_reduction(SIZES, pure, ranks, link) == pytest.approx(0.0, abs=1e-18)


def test_expected_slowest_is_the_order_statistic():
    """Of [1, 2]: one draw averages 1.5; the larger of two is 2 unless both draw 1 (1/4): 1.75."""
    assert expected_slowest([2.0, 1.0], 1) == pytest.approx(1.5)
    assert expected_slowest([2.0, 1.0], 2) == pytest.approx(0.25 * 1 + 0.75 * 2)
    assert expected_slowest([3.0, 3.0, 3.0], 64) == pytest.approx(3.0)
    assert expected_slowest([1.0, 2.0, 3.0, 4.0], 1000) == pytest.approx(4.0, rel=1e-6)


SITE = load_site("local")
NODE = SITE.node_type()
GW = Workload("gw", step_time_s=0.25, batch_per_device=32, parameters=50_000, tensors=72, epochs=30, dataset_size=10)


def test_cpu_node_has_no_free_overlap_and_gpu_nodes_do():
    """The nominal overlap: 0 where the allreduce needs the compute's cores, 1 on GPUs; --overlap overrides."""
    assert nominal_terms(SITE, NODE, Communication()).overlap.value == 0.0
    hal = load_site("hal")
    assert nominal_terms(hal, hal.node_type(), Communication()).overlap.value == 1.0
    assert nominal_terms(SITE, NODE, Communication(overlap=0.5)).overlap.value == 0.5


def test_step_time_adds_contention_pace_communication_and_overhead():
    """t = t_c x contention x pace + what of the allreduces the backward pass leaves, term by term: on a CPU node
    (overlap 0) the first gradient's allreduce waits for the compute's end, the other 71 follow in one buffer, and
    the 4 ms overhead is paid whole."""
    from dataclasses import replace

    from hpcai_tf.scaling.estimate import Figure

    comm = Communication()
    terms = replace(
        nominal_terms(SITE, NODE, comm),
        reduction_s_per_byte=Figure(1e-9, "fitted", "test"),
        step_overhead_s=Figure(0.004, "fitted", "test"),
        contention=Figure(1.2, "measured", "test"),
        contention_ranks=2,
        spread=(0.5, 1.5),
    )
    assert contention_factor(terms, 1) == 1.0 and contention_factor(terms, 2) == 1.2
    assert pace_factor(terms, 1) == 1.0
    assert pace_factor(terms, 2) == pytest.approx(0.25 * 0.5 + 0.75 * 1.5)  # the slower of two draws; mean 1
    comm_s = allreduce_time(GW, 2, 2, SITE, comm, terms)
    nbytes = GW.parameters * 4
    transfer = 2 * (1 / 2) * nbytes / terms.intra_bandwidth.value + 2 * terms.intra_latency_s.value
    assert comm_s == pytest.approx(transfer + 1e-9 * 0.5 * nbytes)

    def message(size: float) -> float:
        return size / terms.intra_bandwidth.value + 2 * terms.intra_latency_s.value + 1e-9 * 0.5 * size

    expected = 0.25 * 1.2 * 1.25 + message(nbytes / 72) + message(nbytes * 71 / 72) + 0.004
    assert step_time(GW, 2, 2, SITE, comm, terms) == pytest.approx(expected)
    assert step_time(GW, 1, 2, SITE, comm, terms) == 0.25


def test_contention_is_linear_up_to_its_measured_count():
    from dataclasses import replace

    from hpcai_tf.scaling.estimate import Figure

    terms = replace(nominal_terms(SITE, NODE, Communication()), contention=Figure(1.3, "measured", "t"))
    terms = replace(terms, contention_ranks=4)
    assert [contention_factor(terms, k) for k in (1, 2, 3, 4, 8)] == pytest.approx([1.0, 1.1, 1.2, 1.3, 1.3])


def test_bounded_least_squares():
    """Exact data inside the bounds come back; a term beyond its bound is held there and the other refitted."""
    c0, c1 = [1.0, 2.0, 3.0], [0.5, 0.1, 2.0]
    ys = [0.02 * a + 0.7 * b for a, b in zip(c0, c1, strict=True)]
    assert bounded_least_squares([c0, c1], ys, (math.inf, 1.0)) == pytest.approx([0.02, 0.7])
    ys = [0.02 * a + 3.0 * b for a, b in zip(c0, c1, strict=True)]
    sync, share = bounded_least_squares([c0, c1], ys, (math.inf, 1.0))
    assert share == 1.0 and sync > 0.02
    assert bounded_least_squares([c0, c1], [-1.0, -2.0, -3.0], (math.inf, 1.0)) == [0.0, 0.0]


def test_fit_curve_on_a_curve_of_the_model_predicts_it_exactly():
    """A curve made from the model with s = 0.03 and e = 0.4 on HAL: fitted on the smallest half, every point back."""
    hal = load_site("hal")
    node, comm = hal.node_type(), Communication()
    terms = nominal_terms(hal, node, comm)
    resnet = Workload("resnet50", 0.25, 64, 25_557_032, 161, 90, 1_281_167)

    def rate(p: int) -> float:
        a = allreduce_time(resnet, p, node.devices, hal, comm, terms) - allreduce_time(resnet, 1, 4, hal, comm, terms)
        return 64 * p / (0.25 * (1 + 0.03 * math.log2(p)) + 0.4 * a)

    points = [(p, rate(p)) for p in (1, 2, 4, 8, 16, 32)]
    fit = fit_curve(points, 64, resnet, hal, node, comm, terms)
    assert (fit.sync_per_doubling, fit.exposed_share) == pytest.approx((0.03, 0.4))
    assert [p.fitted for p in fit.points] == [True, True, True, False, False, False]
    for point in fit.points:
        assert point.predicted == pytest.approx(point.measured, rel=1e-9)


def test_fit_curve_needs_two_counts_the_site_holds():
    hal = load_site("hal")
    node, comm = hal.node_type(), Communication()
    terms = nominal_terms(hal, node, comm)
    with pytest.raises(KitError, match="two or more"):
        fit_curve([(1, 100.0)], 64, GW, hal, node, comm, terms)
    with pytest.raises(KitError, match="more than site hal has"):
        fit_curve([(1, 100.0), (4096, 1e5)], 64, GW, hal, node, comm, terms)
