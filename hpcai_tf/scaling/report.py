"""Scaling reports: runs' ``metrics.jsonl`` -> throughput, speedup, efficiency and time-to-train per rank count.

A run directory holds the ``metrics.jsonl`` that ``hpcai train`` writes: a ``provenance`` record first, one
``epoch`` record per epoch, a ``final`` record last. Throughput is the mean global samples/s over the epochs
after the first (the first includes graph tracing and warm-up), or the only epoch when there is one. Runs are
grouped by site, image and backend; speedup and efficiency are relative to the smallest rank count of the group.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

from hpcai_tf.errors import KitError
from hpcai_tf.files import write_bytes_atomic
from hpcai_tf.recipes.image_labels import OCI_TITLE, OCI_VERSION
from hpcai_tf.train import DEFAULT_BACKEND
from hpcai_tf.train.metrics_log import METRICS_FILE, read_numbered_records


@dataclass(frozen=True)
class Run:
    """What a report needs from one run."""

    path: Path
    workload: str
    ranks: int
    site: str
    image: str
    backend: str
    """``hpcai train --backend`` (horovod for runs recorded before the field existed)."""
    throughput: float
    """Global samples per second."""
    epoch_time_s: float
    step_time_s: float
    epochs_to_train: int
    dataset_size: int
    batch_per_rank: int
    wall_time_s: float
    """The run's wall time: its final record's, or its last epoch's."""


@dataclass(frozen=True)
class Row:
    """One line of a scaling table: a rank count within a group (site, image, backend)."""

    HEADER: ClassVar[tuple[str, ...]] = (
        "site",
        "image",
        "backend",
        "ranks",
        "runs",
        "samples/s",
        "speedup",
        "efficiency",
        "epoch time (s)",
        "time to train (h)",
    )
    site: str
    image: str
    backend: str
    ranks: int
    runs: int
    throughput: float
    speedup: float
    efficiency: float
    epoch_time_s: float | None
    time_to_train_h: float

    @property
    def label(self) -> str:
        """The group's name in a plot legend."""
        return f"{self.site} ({self.image}, {self.backend})"

    @property
    def workers(self) -> int:
        return self.ranks

    def cells(self) -> tuple[str, ...]:
        epoch = "" if self.epoch_time_s is None else f"{self.epoch_time_s:.2f}"
        return (
            self.site,
            self.image,
            self.backend,
            str(self.ranks),
            str(self.runs),
            f"{self.throughput:.2f}",
            f"{self.speedup:.3f}",
            f"{self.efficiency:.3f}",
            epoch,
            f"{self.time_to_train_h:.2f}",
        )


class TableRow(Protocol):
    """What tables and plots read from a row: :class:`Row` (measured) or ``estimate.Prediction``."""

    HEADER: ClassVar[tuple[str, ...]]
    throughput: float
    speedup: float

    @property
    def label(self) -> str: ...

    @property
    def workers(self) -> int: ...

    def cells(self) -> tuple[str, ...]: ...


def _number(record: dict, key: str, where: str, *, positive: bool = False, whole: bool = False) -> float:
    value = record.get(key)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > 0 if positive else value >= 0) and (not whole or float(value).is_integer())
    if not ok:
        expected = ("a positive" if positive else "a non-negative") + (" whole number" if whole else " number")
        raise KitError(f"{where}: field '{key}' missing or not {expected}, got {_shown(value)}")
    return float(value)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _table(record: dict, key: str, where: str) -> dict:
    value = record.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise KitError(f"{where}: field '{key}' expected a JSON object, got {_shown(value)}")
    return value


def read_run(run_dir: Path) -> Run:
    """Read one run directory's metrics file; a missing or malformed file is a one-line error (a torn last line
    of a killed run is skipped, see :func:`~hpcai_tf.train.metrics_log.read_numbered_records`)."""
    path = run_dir / METRICS_FILE if run_dir.is_dir() else run_dir
    if not path.is_file():
        raise KitError(f"{path}: no metrics file (expected {METRICS_FILE} written by `hpcai train`)")
    numbered = read_numbered_records(path)
    if not numbered or numbered[0][1]["type"] != "provenance":
        raise KitError(f"{path}: the first record must be the run's provenance")
    line, provenance = numbered[0]
    epochs = [(n, r) for n, r in numbered if r["type"] == "epoch"]
    if not epochs:
        raise KitError(f"{path}: no epoch records (the run ended before its first epoch)")
    where = f"{path}:{line}: provenance"
    config = _table(provenance, "config", where)
    workload = provenance.get("workload")
    if not isinstance(workload, str):
        raise KitError(f"{where}: field 'workload' missing or not a string")
    ranks = int(_number(provenance, "ranks", where, positive=True, whole=True))
    measured = epochs[1:] if len(epochs) > 1 else epochs

    def epoch_sum(key: str, positive: bool = False) -> float:
        return sum(_number(e, key, f"{path}:{n}: epoch record", positive=positive) for n, e in measured)

    throughput = epoch_sum("global_samples_per_sec", positive=True)
    epoch_time = epoch_sum("epoch_time_s")
    step_time = epoch_sum("step_time_s")
    finals = [(n, r) for n, r in numbered if r["type"] == "final"]
    last_line, last = finals[-1] if finals else epochs[-1]
    wall = _number(last, "wall_time_s", f"{path}:{last_line}: {last['type']} record")
    image = _table(provenance, "image", where)
    labels = _table(image, "labels", f"{where}.image")
    image_name = labels.get(OCI_TITLE) or "host"
    version = labels.get(OCI_VERSION)
    site = provenance.get("site") or image.get("site") or "host"
    for key, value in (("site", site), ("image title", image_name), ("image version", version or "")):
        if not isinstance(value, str):
            raise KitError(f"{where}: {key} expected a string, got {_shown(value)}")
    backend = provenance.get("backend", DEFAULT_BACKEND)
    if not isinstance(backend, str):
        raise KitError(f"{where}: backend expected a string, got {_shown(backend)}")
    last_epoch_line, last_epoch = epochs[-1]
    return Run(
        path=path,
        workload=workload,
        ranks=ranks,
        site=site,
        image=f"{image_name} {version}" if version else image_name,
        backend=backend,
        throughput=throughput / len(measured),
        epoch_time_s=epoch_time / len(measured),
        step_time_s=step_time / len(measured),
        epochs_to_train=int(_number(config, "epochs", f"{where}.config", positive=True, whole=True)),
        dataset_size=int(_number(config, "dataset_size", f"{where}.config", positive=True, whole=True)),
        batch_per_rank=int(
            _number(last_epoch, "batch_per_rank", f"{path}:{last_epoch_line}: epoch record", positive=True, whole=True)
        ),
        wall_time_s=wall,
    )


def read_runs(run_dirs: list[Path]) -> list[Run]:
    """Read every run; all must be of one workload."""
    if not run_dirs:
        raise KitError("report: give at least one run directory")
    runs = [read_run(Path(d)) for d in run_dirs]
    workloads = sorted({r.workload for r in runs})
    if len(workloads) > 1:
        raise KitError(f"report: runs of different workloads ({', '.join(workloads)}); report one workload at a time")
    return runs


def time_to_train_h(epochs: int, dataset_size: int, throughput: float) -> float:
    """Hours to train ``epochs`` passes over ``dataset_size`` samples at ``throughput`` samples/s."""
    return epochs * dataset_size / throughput / 3600.0


def scaling_rows(runs: list[Run]) -> list[Row]:
    """Group runs by (site, image, backend) and rank count; speedup and efficiency against the group's fewest
    ranks."""
    groups: dict[tuple[str, str, str], dict[int, list[Run]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        groups[(run.site, run.image, run.backend)][run.ranks].append(run)
    rows = []
    for (site, image, backend), by_ranks in sorted(groups.items()):
        base_ranks = min(by_ranks)
        base = sum(r.throughput for r in by_ranks[base_ranks]) / len(by_ranks[base_ranks])
        for ranks in sorted(by_ranks):
            group = by_ranks[ranks]
            throughput = sum(r.throughput for r in group) / len(group)
            speedup = throughput / base
            rows.append(
                Row(
                    site=site,
                    image=image,
                    backend=backend,
                    ranks=ranks,
                    runs=len(group),
                    throughput=throughput,
                    speedup=speedup,
                    efficiency=speedup * base_ranks / ranks,
                    epoch_time_s=sum(r.epoch_time_s for r in group) / len(group),
                    time_to_train_h=time_to_train_h(group[0].epochs_to_train, group[0].dataset_size, throughput),
                )
            )
    return rows


def markdown_table(rows: Sequence[TableRow]) -> str:
    """The rows as a Markdown table (the header of their type)."""
    header = type(rows[0]).HEADER
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def csv_table(rows: Sequence[TableRow]) -> str:
    """The rows as CSV (the header of their type)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(type(rows[0]).HEADER)
    writer.writerows(r.cells() for r in rows)
    return buffer.getvalue()


def plot_scaling(rows: Sequence[TableRow], path: Path, title: str, workers: str = "workers") -> None:
    """Throughput and speedup against workers, one line per group, ideal scaling dashed; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    groups: dict[str, list[TableRow]] = defaultdict(list)
    for row in rows:
        groups[row.label].append(row)
    for label, group in groups.items():
        ranks = [r.workers for r in group]
        base = group[0]
        left.plot(ranks, [r.throughput for r in group], "o-", label=label)
        left.plot(
            ranks, [base.throughput * n / base.workers for n in ranks], "--", color="grey", label=f"ideal, {label}"
        )
        right.plot(ranks, [r.speedup for r in group], "o-", label=label)
    all_ranks = sorted({r.workers for r in rows})
    first = all_ranks[0]
    right.plot(all_ranks, [n / first for n in all_ranks], "--", color="grey", label="ideal")
    for axis, ylabel in ((left, "samples/s (global)"), (right, "speedup")):
        axis.set_xlabel(workers)
        axis.set_ylabel(ylabel)
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=7)
        if len(all_ranks) > 2 and all_ranks[-1] / all_ranks[0] >= 8:
            axis.set_xscale("log", base=2)
        axis.set_xticks(all_ranks, [str(n) for n in all_ranks])  # device counts are integers
        axis.minorticks_off()
    fig.suptitle(title)
    fig.tight_layout()
    image = io.BytesIO()
    fig.savefig(image, format="png", dpi=100)
    plt.close(fig)
    write_bytes_atomic(path, image.getvalue())
