"""``hpcai estimate --fit`` and ``--fit-csv``: fit the model's free terms on a measured curve's smallest counts,
predict its larger ones, and show measured beside predicted.

Weak scaling: at ``p`` devices a step takes ``t(p) = p x batch / throughput(p)``. Against the smallest count
``p0`` (step ``t0``) the model is

    t(p) = t0 (1 + s log2(p / p0)) + e (A(p) - A(p0))

with ``A(p)`` the model's allreduce time of the workload's gradients at ``p`` devices on the site's links
(:func:`~hpcai_tf.scaling.estimate.allreduce_time`, the calibration's or the catalog's figures) and two free terms,
``s >= 0``, the cost of synchronising more ranks per doubling (the slowest rank, Horovod's negotiation), and
``0 <= e <= 1``, the share of the modelled allreduce the step does not hide. Both enter linearly, so the fit is
least squares on ``t(p) / t0 - 1`` over the fitted counts, within those bounds. The fitted counts are the
smallest half (at least two); the rest are predicted.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from hpcai_tf.catalog import NodeType, Site
from hpcai_tf.errors import KitError
from hpcai_tf.files import read_text_file
from hpcai_tf.scaling.estimate import Communication, Terms, Workload, allreduce_time


@dataclass(frozen=True)
class CurvePoint:
    """One row of measured beside predicted."""

    HEADER: ClassVar[tuple[str, ...]] = ("devices", "measured samples/s", "predicted samples/s", "error", "used")
    devices: int
    measured: float
    predicted: float
    fitted: bool

    @property
    def error(self) -> float:
        return self.predicted / self.measured - 1.0

    def cells(self) -> tuple[str, ...]:
        used = "fitted" if self.fitted else "predicted"  # a fit's point, or one it (or a calibration) predicts
        return (str(self.devices), f"{self.measured:.2f}", f"{self.predicted:.2f}", f"{self.error:+.1%}", used)


@dataclass(frozen=True)
class CurveFit:
    """The fitted terms and every point, measured beside predicted."""

    base_devices: int
    base_step_s: float
    sync_per_doubling: float
    exposed_share: float
    points: list[CurvePoint]


def read_curve_csv(path: Path) -> list[tuple[int, float]]:
    """(devices, samples/s) from a CSV with a header naming ``devices`` and ``samples_per_s``; refused in one line
    naming the file and row if a value is missing, not a number, not positive, or a count repeats."""
    text = read_text_file(path, "CSV file")
    rows = list(csv.DictReader(io.StringIO(text)))
    fields = set(rows[0]) if rows else set()
    if not {"devices", "samples_per_s"} <= fields:
        raise KitError(f"{path}: expected a header with columns 'devices' and 'samples_per_s'")
    points: dict[int, float] = {}
    for line, row in enumerate(rows, start=2):
        try:
            devices, rate = int(row["devices"]), float(row["samples_per_s"])
        except (TypeError, ValueError):
            raise KitError(f"{path}:{line}: expected an integer devices and a number samples_per_s") from None
        if devices < 1 or not rate > 0 or math.isinf(rate):
            raise KitError(f"{path}:{line}: expected devices >= 1 and a finite samples_per_s > 0")
        if devices in points:
            raise KitError(f"{path}:{line}: devices {devices} appears twice")
        points[devices] = rate
    return sorted(points.items())


def bounded_least_squares(columns: list[list[float]], ys: list[float], upper: tuple[float, float]) -> list[float]:
    """Least squares ``y = x0 c0 + x1 c1`` with ``0 <= x_k <= upper[k]``: the unconstrained solution when it is
    inside the bounds, else the best solution with one term at a bound and the other fitted (then clipped)."""

    def fit_one(k: int, other: float) -> list[float]:
        j = 1 - k
        rest = [y - other * columns[j][i] for i, y in enumerate(ys)]
        den = sum(c * c for c in columns[k])
        value = sum(c * r for c, r in zip(columns[k], rest, strict=True)) / den if den > 0 else 0.0
        value = min(max(value, 0.0), upper[k])
        return [value, other] if k == 0 else [other, value]

    def residual(x: list[float]) -> float:
        return sum((y - x[0] * columns[0][i] - x[1] * columns[1][i]) ** 2 for i, y in enumerate(ys))

    candidates = [[0.0, 0.0]]
    c0, c1 = columns
    s11, s22 = sum(a * a for a in c0), sum(b * b for b in c1)
    s12 = sum(a * b for a, b in zip(c0, c1, strict=True))
    det = s11 * s22 - s12 * s12
    if det > 1e-12 * max(s11 * s22, 1e-300):
        b1 = sum(a * y for a, y in zip(c0, ys, strict=True))
        b2 = sum(b * y for b, y in zip(c1, ys, strict=True))
        both = [(b1 * s22 - b2 * s12) / det, (s11 * b2 - s12 * b1) / det]
        if all(0 <= v <= u for v, u in zip(both, upper, strict=True)):
            candidates.append(both)
    for k in (0, 1):
        for bound in (0.0, upper[1 - k]):
            if bound != float("inf"):
                candidates.append(fit_one(k, bound))
    return min(candidates, key=residual)


def fit_curve(
    points: list[tuple[int, float]],
    batch: int,
    workload: Workload,
    site: Site,
    node: NodeType,
    comm: Communication,
    terms: Terms,
) -> CurveFit:
    """Fit ``s`` and ``e`` on the smallest half of ``points`` (devices, samples/s), predict all of them."""
    if len(points) < 2:
        raise KitError(f"--fit: expected measurements at two or more device counts, got {len(points)}")
    points = sorted(points)
    most = node.devices * node.count
    if points[-1][0] > most:
        raise KitError(f"--fit: {points[-1][0]} devices is more than site {site.id} has ({most})")
    used = max(2, math.ceil(len(points) / 2))
    base, base_rate = points[0]
    step0 = batch * base / base_rate

    def allreduce(devices: int) -> float:
        return allreduce_time(workload, devices, node.devices, site, comm, terms)

    fitted = [(p, batch * p / rate) for p, rate in points[1:used]]
    columns = [
        [math.log2(p / base) for p, _ in fitted],
        [(allreduce(p) - allreduce(base)) / step0 for p, _ in fitted],
    ]
    sync, share = bounded_least_squares(columns, [t / step0 - 1 for _, t in fitted], (float("inf"), 1.0))
    rows = []
    for index, (devices, rate) in enumerate(points):
        step = step0 * (1 + sync * math.log2(devices / base)) + share * (allreduce(devices) - allreduce(base))
        rows.append(CurvePoint(devices, rate, batch * devices / step, index < used))
    return CurveFit(base, step0, sync, share, rows)


@dataclass(frozen=True)
class CurveLine:
    """A point of one line of the plot: the measured curve or the fitted model's."""

    HEADER: ClassVar[tuple[str, ...]] = ("line", "devices", "samples/s", "speedup")
    label: str
    workers: int
    throughput: float
    speedup: float

    def cells(self) -> tuple[str, ...]:
        return (self.label, str(self.workers), f"{self.throughput:.2f}", f"{self.speedup:.3f}")


def plot_lines(points: list[CurvePoint], model: str) -> list[CurveLine]:
    """Measured and predicted as two lines of one plot, speedups against the measured smallest count."""
    base = points[0]
    lines = []
    for label, attr in (("measured", "measured"), (model, "predicted")):
        for point in points:
            rate = getattr(point, attr)
            lines.append(CurveLine(label, point.devices, rate, rate / base.measured))
    return lines
