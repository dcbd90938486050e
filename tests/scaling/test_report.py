"""`hpcai report` and `hpcai cost`: the arithmetic on known metrics files, and one-line errors on bad ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpcai_tf.errors import KitError
from hpcai_tf.scaling.report import read_run, read_runs, scaling_rows


def write_run(
    root: Path,
    name: str,
    ranks: int,
    throughputs: list[float],
    workload: str = "gw",
    site: str | None = "local",
    final: bool = True,
    backend: str | None = None,
) -> Path:
    """A run directory whose metrics.jsonl has the records `hpcai train` writes, with the given figures."""
    run = root / name
    run.mkdir(parents=True)
    records = [
        {
            "type": "provenance",
            "workload": workload,
            "ranks": ranks,
            "site": site,
            "config": {"epochs": 90, "dataset_size": 1_281_167},
            "image": None,
            **({"backend": backend} if backend else {}),  # absent in runs recorded before --backend
        }
    ]
    for epoch, rate in enumerate(throughputs):
        records.append(
            {
                "type": "epoch",
                "epoch": epoch,
                "global_samples_per_sec": rate,
                "samples_per_sec_per_rank": rate / ranks,
                "epoch_time_s": 1000.0 / rate,
                "step_time_s": 32 * ranks / rate,
                "batch_per_rank": 32,
                "wall_time_s": 10.0 * (epoch + 1),
                "ranks": ranks,
            }
        )
    if final:
        records.append({"type": "final", "wall_time_s": 36.0, "status": "completed"})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run


def test_speedup_efficiency_and_time_to_train(tmp_path: Path):
    """First epoch excluded; speedup against the fewest ranks; time-to-train = epochs x dataset / throughput."""
    runs = [
        write_run(tmp_path, "one", 1, [10.0, 100.0, 100.0]),
        write_run(tmp_path, "two", 2, [20.0, 180.0, 200.0]),
        write_run(tmp_path, "four", 4, [5.0, 340.0]),
    ]
    rows = scaling_rows(read_runs(runs))
    assert [(r.ranks, r.throughput, r.speedup, r.efficiency) for r in rows] == [
        (1, 100.0, 1.0, 1.0),
        (2, 190.0, 1.9, 0.95),
        (4, 340.0, 3.4, 0.85),
    ]
    assert rows[0].time_to_train_h == pytest.approx(90 * 1_281_167 / 100.0 / 3600)
    assert rows[1].epoch_time_s == pytest.approx((1000 / 180 + 1000 / 200) / 2)


def test_groups_by_site_each_with_its_own_baseline(tmp_path: Path):
    """Runs of two sites are two groups; each group's speedup starts at its own smallest rank count."""
    runs = [
        write_run(tmp_path, "a1", 2, [1.0, 50.0], site="hal"),
        write_run(tmp_path, "a2", 4, [1.0, 90.0], site="hal"),
        write_run(tmp_path, "b1", 1, [1.0, 30.0], site="local"),
    ]
    rows = scaling_rows(read_runs(runs))
    assert [(r.site, r.ranks, r.speedup, r.efficiency) for r in rows] == [
        ("hal", 2, 1.0, 1.0),
        ("hal", 4, 1.8, 0.9),
        ("local", 1, 1.0, 1.0),
    ]


def test_report_cli_writes_table_csv_and_png(hpcai, tmp_path: Path):
    """The CLI prints the Markdown table and writes report.md, report.csv and a PNG."""
    one = write_run(tmp_path, "one", 1, [100.0])
    two = write_run(tmp_path, "two", 2, [190.0])
    out = tmp_path / "report"
    result = hpcai("report", str(one), str(two), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout.splitlines()[2] == "| local | host | horovod | 1 | 1 | 100.00 | 1.000 | 1.000 | 10.00 | 320.29 |"
    )
    assert (
        result.stdout.splitlines()[3] == "| local | host | horovod | 2 | 1 | 190.00 | 1.900 | 0.950 | 5.26 | 168.57 |"
    )
    assert (
        (out / "report.csv").read_text().splitlines()[0].startswith("site,image,backend,ranks,runs,samples/s,speedup")
    )
    assert (out / "report.md").read_text().startswith("# gw: measured scaling\n")
    assert (out / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no metrics file"),
        (
            '{"type": "provenance", "workload": "gw", "ranks": 1, "config": {"epochs": 1, "dataset_size": 1}}\n{"type": "ep',
            "no epoch records",  # the torn last line of a killed run is skipped
        ),
        (
            '{"type": "provenance", "workload": "gw", "ranks": 1, "config": {"epochs": 1, "dataset_size": 1}}\n'
            '{"type": "ep\n{"type": "final"}\n',
            "metrics.jsonl:2: not a JSON object",  # a torn line that is not the last is corrupt
        ),
        (
            '{"type": "provenance", "workload": "gw", "ranks": 1, "config": {"epochs": 1, "dataset_size": 1}}\n',
            "no epoch records",
        ),
        ('{"type": "epoch", "epoch": 0}\n', "the first record must be the run's provenance"),
    ],
)
def test_missing_or_partial_metrics_are_one_line_errors(hpcai, tmp_path: Path, content, message):
    """Missing, truncated or epoch-less metrics files are refused with the file's name."""
    run = tmp_path / "run"
    run.mkdir()
    if content is not None:
        (run / "metrics.jsonl").write_text(content)
    result = hpcai("report", str(run))
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and message in result.stderr and "run" in result.stderr


def test_mixed_workloads_are_refused(tmp_path: Path):
    """One report is one workload."""
    runs = [write_run(tmp_path, "a", 1, [1.0], workload="gw"), write_run(tmp_path, "b", 2, [1.0], workload="des")]
    with pytest.raises(KitError, match=r"runs of different workloads \(des, gw\)"):
        read_runs(runs)


def test_cost_of_runs(hpcai, tmp_path: Path):
    """Device-hours x price for the run, and for the projected full training."""
    run = write_run(tmp_path, "two", 2, [190.0])
    result = hpcai("cost", str(run), "--price", "3.06")
    assert result.returncode == 0, result.stderr
    full_h = 2 * 90 * 1_281_167 / 190.0 / 3600
    assert result.stdout == (
        f"{run}: 2 devices x 36.0 s = 0.0200 device-h, USD 0.0612; full training (90 epochs x 1,281,167 samples) "
        f"{full_h:,.1f} device-h, USD {full_h * 3.06:,.2f} at USD 3.06/device-h\n"
    )


def test_cost_uses_the_catalog_price_and_refuses_a_site_without_one(hpcai, tmp_path: Path):
    """The local site has no cloud price: a one-line error asks for --price; HAL's price comes from the catalog."""
    run = write_run(tmp_path, "r", 1, [100.0])
    result = hpcai("cost", str(run))
    assert result.returncode == 2
    assert result.stderr == "hpcai: error: site local has no node_types.cloud_price_per_device_hour; give --price USD\n"
    result = hpcai("cost", str(run), "--site", "hal")
    assert result.returncode == 0 and "at USD 3.06/device-h" in result.stdout


def test_read_run_accepts_the_metrics_file_itself(tmp_path: Path):
    """A path to metrics.jsonl works like its directory."""
    run = write_run(tmp_path, "r", 1, [100.0, 120.0])
    assert read_run(run / "metrics.jsonl").throughput == 120.0


def test_each_backend_is_a_group_of_its_own(tmp_path: Path):
    """Horovod and MWMS runs of one site and image are compared each against its own fewest ranks."""
    runs = [
        write_run(tmp_path, "h1", 1, [10.0, 100.0]),
        write_run(tmp_path, "h2", 2, [20.0, 190.0], backend="horovod"),
        write_run(tmp_path, "m1", 1, [10.0, 90.0], backend="mwms"),
        write_run(tmp_path, "m2", 2, [20.0, 150.0], backend="mwms"),
    ]
    rows = scaling_rows(read_runs(runs))
    assert [(r.backend, r.ranks, round(r.speedup, 3)) for r in rows] == [
        ("horovod", 1, 1.0),
        ("horovod", 2, 1.9),
        ("mwms", 1, 1.0),
        ("mwms", 2, 1.667),
    ]
