"""`hpcai scale` for real: the AI-GW smoke workload at 1 and 2 Horovod ranks under mpirun, then its report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def measured_throughput(metrics: Path, ranks: int) -> float:
    """Mean ``global_samples_per_sec`` of a run's epoch records after the first, from the raw JSON lines."""
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert records[0]["type"] == "provenance" and records[0]["ranks"] == ranks
    epochs = [r for r in records if r["type"] == "epoch"]
    assert len(epochs) == 2 and records[-1]["type"] == "final"
    return sum(e["global_samples_per_sec"] for e in epochs[1:]) / len(epochs[1:])


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_scale_gw_1_and_2_ranks_writes_report_and_plot(hpcai, tmp_path: Path):
    """Two real runs; the report has a row per rank count, speedup 1 at one rank, and a PNG."""
    data = tmp_path / "gw.h5"
    made = hpcai("data", "gw", "--smoke", "--n", "320", "--out", str(data), timeout=600)
    assert made.returncode == 0, made.stderr
    out = tmp_path / "scale"
    result = hpcai(
        "scale",
        "gw",
        "--ranks",
        "1,2",
        "--out",
        str(out),
        "--",
        "--smoke",
        "--data",
        str(data),
        "--epochs",
        "2",
        "--no-tensorboard",
        timeout=880,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split("|")[1:-1] for line in (out / "report.md").read_text().splitlines() if line.startswith("| ")]
    header, body = rows[0], rows[1:]  # the |---| separator does not start with "| "
    assert [cell.strip() for cell in header][:8] == [
        "site",
        "image",
        "backend",
        "ranks",
        "runs",
        "samples/s",
        "speedup",
        "efficiency",
    ]
    assert [row[2].strip() for row in body] == ["horovod", "horovod"]
    assert [int(row[3]) for row in body] == [1, 2]
    # The table against the runs' own records, read here without the report's code: throughput is the mean global
    # samples/s of the epochs after the first (the first holds the graph's tracing), speedup the ratio to one rank.
    measured = {ranks: measured_throughput(out / f"gw-{ranks}ranks" / "metrics.jsonl", ranks) for ranks in (1, 2)}
    assert [float(row[5]) for row in body] == pytest.approx([measured[1], measured[2]], abs=0.006)
    speedup = measured[2] / measured[1]
    assert [float(row[6]) for row in body] == pytest.approx([1.0, speedup], abs=6e-4)
    assert [float(row[7]) for row in body] == pytest.approx([1.0, speedup / 2], abs=6e-4)
    assert (out / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "report.csv").read_text().count("\n") == 3
