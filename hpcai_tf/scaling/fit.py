"""The fitting arithmetic of ``hpcai calibrate`` and ``hpcai estimate --fit``: least squares on known forms.

- :func:`fit_link`: a link's latency ``a`` and bandwidth ``B`` from all-gather timings over ``p`` ranks, whose
  cost is ``(p - 1) a + (p - 1) / p x n / B`` for ``n`` bytes gathered in all (a straight line in ``n``);
- :func:`fit_reduction`: the seconds per byte ``c`` the reduction itself costs, from allreduce timings: a ring
  allreduce is two such transfers plus the reduce-scatter's arithmetic on ``(p - 1) / p x n`` bytes,
  ``t = 2 t_gather(n) + c (p - 1) / p x n`` (a line through the origin in the residual);
- :func:`expected_slowest`: the pace of ``p`` ranks that wait for each other every step: the mean of the slowest
  of ``p`` step times drawn from the measured per-step times (order statistics of the empirical distribution).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from hpcai_tf.errors import KitError


@dataclass(frozen=True)
class LinkFit:
    """A link's fitted latency (s) and bandwidth (bytes/s), with the fit's largest relative residual."""

    latency_s: float
    bandwidth: float
    worst_residual: float


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Ordinary least squares ``y = intercept + slope x``; (intercept, slope)."""
    if len(xs) != len(ys) or len(xs) < 2:
        raise KitError(f"fit: expected two or more points, got {len(xs)}")
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if sxx == 0:
        raise KitError("fit: the points share one x value; a line needs two")
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=False)) / sxx
    return mean_y - slope * mean_x, slope


def gather_time(nbytes: float, ranks: int, latency_s: float, bandwidth: float) -> float:
    """Seconds for the ring all-gather of ``nbytes`` in all over ``ranks``: ``(p - 1) a + (p - 1) / p x n / B``."""
    if ranks <= 1:
        return 0.0
    return (ranks - 1) * latency_s + (ranks - 1) / ranks * nbytes / bandwidth


def fit_link(sizes: Sequence[float], seconds: Sequence[float], ranks: int) -> LinkFit:
    """Latency and bandwidth from all-gather timings (``sizes`` in bytes gathered in all) over ``ranks`` ranks.

    The line is fitted with each point weighted by its own size (relative errors), so that the small messages
    fix the latency and the large ones the bandwidth; a negative intercept (latency below resolution) is 0.
    """
    if ranks < 2:
        raise KitError(f"fit: a link needs two or more ranks, got {ranks}")
    weights = [1.0 / t for t in seconds]
    xs = [x * w for x, w in zip(sizes, weights, strict=False)]
    # y / t = intercept / t + slope x / t: fit 1 = intercept (1/t) + slope (x/t) through the origin in two terms.
    s11 = sum(w * w for w in weights)
    s12 = sum(w * x for w, x in zip(weights, xs, strict=False))
    s22 = sum(x * x for x in xs)
    b1 = sum(weights)
    b2 = sum(xs)
    det = s11 * s22 - s12 * s12
    if det <= 0 or len(sizes) < 2:
        raise KitError("fit: expected two or more distinct message sizes")
    intercept = (b1 * s22 - b2 * s12) / det
    slope = (s11 * b2 - s12 * b1) / det
    if slope <= 0:
        raise KitError("fit: the timings do not grow with the message size; no bandwidth can be fitted")
    if intercept < 0:
        intercept, slope = 0.0, sum(x * 1 for x in xs) / s22
    latency = intercept / (ranks - 1)
    bandwidth = (ranks - 1) / ranks / slope
    worst = max(abs(gather_time(n, ranks, latency, bandwidth) - t) / t for n, t in zip(sizes, seconds, strict=False))
    return LinkFit(latency, bandwidth, worst)


def fit_reduction(sizes: Sequence[float], allreduce_s: Sequence[float], ranks: int, link: LinkFit) -> float:
    """Seconds per byte of the reduction: the allreduce timings beyond two all-gathers, against (p - 1) / p x n."""
    xs = [(ranks - 1) / ranks * n for n in sizes]
    residuals = [
        t - 2 * gather_time(n, ranks, link.latency_s, link.bandwidth) for n, t in zip(sizes, allreduce_s, strict=False)
    ]
    cost = sum(r * x for r, x in zip(residuals, xs, strict=False)) / sum(x * x for x in xs)
    return max(0.0, cost)


def expected_slowest(step_times: Sequence[float], ranks: int) -> float:
    """The expected largest of ``ranks`` independent draws from ``step_times`` (with replacement).

    For sorted times ``t_1 <= ... <= t_m`` the largest of ``p`` draws is ``t_i`` with probability
    ``(i / m)^p - ((i - 1) / m)^p``: one rank that is slow in a step makes every rank wait for it.
    """
    if not step_times:
        raise KitError("fit: no step times to take the slowest of")
    ordered = sorted(step_times)
    m = len(ordered)
    return sum(t * ((i / m) ** ranks - ((i - 1) / m) ** ranks) for i, t in enumerate(ordered, start=1))


def relative_error(predicted: float, measured: float) -> float:
    """``predicted / measured - 1``."""
    if measured <= 0 or math.isnan(measured):
        raise KitError(f"fit: a measured value must be positive, got {measured}")
    return predicted / measured - 1.0
