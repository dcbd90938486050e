"""`hpcai scale` for real: the AI-GW smoke workload at 1 and 2 Horovod ranks under mpirun, then its report."""

from __future__ import annotations

from pathlib import Path

import pytest


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
    assert [cell.strip() for cell in header][:4] == ["site", "image", "ranks", "runs"]
    assert [int(row[2]) for row in body] == [1, 2]
    assert float(body[0][5]) == 1.0 and float(body[1][5]) > 0
    assert float(body[1][6]) == pytest.approx(float(body[1][5]) / 2, abs=1e-3)
    assert (out / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "report.csv").read_text().count("\n") == 3
