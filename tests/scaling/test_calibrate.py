"""`hpcai calibrate` on the local site for real, and `hpcai estimate` with a calibration: what it uses, what it
refuses (a file missing fields, of another site, of other pins; bad curves), as a user runs them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import assert_refused, tree

from hpcai_tf.catalog import load_site
from hpcai_tf.scaling.calibration import (
    Calibration,
    LinkCalibration,
    WorkloadCalibration,
    read_calibration,
    site_pins,
)
from hpcai_tf.scaling.estimate import Communication, calibrated_terms, message_time, nominal_terms

SMALL_SIZES = "4096,1048576,16777216"


def _calibration(site_id: str = "local", across: LinkCalibration | None = None, **pins) -> dict:
    site = load_site(site_id)
    entry = WorkloadCalibration(
        batch_per_device=32,
        step_time_epochs_s=[0.2, 1 / 3],  # 0.25 s per step: batch over the mean samples per second
        shared_step_time_epochs_s=[0.24, 0.4],  # 0.3 s
        shared_step_quantiles_s=[[0.224, 0.24, 0.256], [0.4 * 0.28 / 0.3, 0.4, 0.4 * 0.32 / 0.3]],
        gradient_bytes=199_564,
        gradient_tensors=72,
        gradient_allreduce_s=0.007,
        gradient_ready=[[99_782, 0.5], [99_782, 1.0]],
        probe_step_s=0.24,
        probe_step_with_allreduce_s=0.25,
        beside_rate=0.25,
        step_overhead_s=0.003,
        train_args=["--smoke"],
    )
    link = LinkCalibration("intra_node", 2, 1.5e-3, 7e8, 1.6e-10, 0.1, [])
    provenance = {
        "host": "test",
        "date": "2026-12-02T00:00:00+00:00",
        "image": "host",
        "threads_per_rank": {"intra_op": 1, "inter_op": 1},
        "ranks": 2,
        "stack": {},
        "pins": {**site_pins(site), **pins},
        "node_type": site.node_type().name,
    }
    return json.loads(Calibration(site.id, provenance, link, {"gw": entry}, link_across_nodes=across).to_json())


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "local.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


ACROSS = LinkCalibration("inter_node", 2, 5e-3, 1e8, 0.0, 0.1, [])
"""A fitted link across nodes far slower than the catalog's TCP loopback (20 us, 1.25 GB/s)."""
ESTIMATE = ("estimate", "gw", "--site", "local", "--gpus", "1,2", "--smoke", "--params", "49891", "--tensors", "72")


def test_estimate_uses_the_calibration_and_says_where_each_figure_comes_from(hpcai, tmp_path):
    """The step, link, reduction, overhead, contention and spread come from the file, each marked as such."""
    path = _write(tmp_path, _calibration())
    result = hpcai(*ESTIMATE, "--calibration", str(path))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "250.0 ms/step at batch 32 per device (measured: local.json, alone on the node)" in out
    assert "| intra-node bandwidth | 0.700 GB/s | fitted | all-gathers over 2 ranks, local.json |" in out
    assert "| reduction | 0.160 ns/byte | fitted |" in out
    assert "| per-step overhead | 3.00 ms | fitted | gw's gradients allreduced, local.json |" in out
    assert "| contention | x1.200 at 2 busy | measured |" in out
    assert "| overlap | 0.25 | fitted | gw's step beside its allreduces, local.json |" in out
    assert "| gradients ready | 2 tensors, 0.50 to 1.00 of the step | measured |" in out
    assert "| inter-node latency | 20.00 us | catalog | TCP loopback, unconfirmed |" in out
    line = next(row for row in out.splitlines() if row.startswith("| local | model (ring) | 2 |"))
    # compute: 0.25 x 1.2 (the epochs' means) x the slowest of two of [0.28, 0.3, 0.32] / 0.3: each epoch's
    # quantiles over their own mean, so the second epoch's being 2/3 slower than the first is not a spread; half the gradient is ready half-way and
    # allreduced at a quarter speed (4.7 ms, well before the end), the other half at the end: it waits for the
    # next tick of Horovod's 1 ms cycle (counted from the first one), then its message and its tensor's share of
    # the 3 ms overhead are exposed.
    slowest = (0.28 * (1 / 9) + 0.3 * (4 / 9 - 1 / 9) + 0.32 * (1 - 4 / 9)) / 0.3
    compute = 0.25 * 1.2 * slowest
    first = math.ceil(compute / 2 / 1e-3) * 1e-3
    tick = first + math.ceil((compute - first) / 1e-3) * 1e-3
    half = 49891 * 4 / 2
    message = half / 7e8 + 2 * 1.5e-3 + 1.6e-10 * 0.5 * half
    step = tick + message + 0.003 / 2
    assert f"| {step * 1000:.1f} |" in line
    assert f"| {0.25 / step:.3f} |" in line


def test_a_link_across_nodes_replaces_the_catalogs_and_prices_a_ring_across_nodes(hpcai, tmp_path):
    """With link_across_nodes both inter-node figures are fitted, and a ring across nodes is priced with them.
    The local site has one node, so the arithmetic is checked on the library's message time: 4 devices, 2 per
    node, one 1 MB message."""
    path = _write(tmp_path, _calibration(across=ACROSS))
    result = hpcai(*ESTIMATE, "--calibration", str(path))
    assert result.returncode == 0, result.stderr
    assert "| inter-node latency | 5000.00 us | fitted | all-gathers across 2 emulated nodes, local.json |" in (
        result.stdout
    )
    assert "| inter-node bandwidth | 0.100 GB/s per node | fitted | all-gathers across 2 emulated nodes," in (
        result.stdout
    )
    site = load_site("local")
    comm = Communication()
    calibration = read_calibration(path, site)
    terms = calibrated_terms(nominal_terms(site, site.node_type(), comm), calibration, "gw")
    # the ring's bandwidth is the slower link's (the fitted 0.1 GB/s across), its latency the network's
    expected = 2 * 3 / 4 * 1e6 / 1e8 + 2 * 3 * 5e-3 + 1.6e-10 * 3 / 4 * 1e6
    assert message_time(1e6, 4, 2, comm, terms) == pytest.approx(expected)


def test_estimate_without_a_calibration_says_nominal(hpcai, tmp_path):
    result = hpcai(*ESTIMATE, "--step-time", "0.25", "--batch", "32", "--no-calibration")
    assert result.returncode == 0, result.stderr
    assert "| contention | x1.000 at 1 busy | nominal | not measured (hpcai calibrate) |" in result.stdout
    assert "| per-step overhead | 1.00 ms | nominal | one HOROVOD_CYCLE_TIME (1 ms, Horovod >= 0.21) |" in result.stdout


def _without(data: dict, *keys: str) -> dict:
    target = data
    for key in keys[:-1]:
        target = target[key]
    del target[keys[-1]]
    return data


BAD_FILES = {
    "no link": (lambda: _without(_calibration(), "link"), "missing field 'link'"),
    "no bandwidth": (lambda: _without(_calibration(), "link", "bandwidth"), "link: missing field 'bandwidth'"),
    "no link across nodes": (
        lambda: _without(_calibration(), "link_across_nodes"),
        "missing field 'link_across_nodes' (null when not measured)",
    ),
    "a link across nodes with no latency": (
        lambda: _without(_calibration(across=ACROSS), "link_across_nodes", "latency_s"),
        "link_across_nodes: missing field 'latency_s'",
    ),
    "no step times": (
        lambda: _without(_calibration(), "workloads", "gw", "step_time_epochs_s"),
        "workloads.gw: missing field 'step_time_epochs_s'",
    ),
    "a zero step time": (
        lambda: {
            **_calibration(),
            "workloads": {"gw": {**_calibration()["workloads"]["gw"], "shared_step_time_epochs_s": [0.24, 0]}},
        },
        "field 'shared_step_time_epochs_s' must be a non-empty list of finite positive numbers",
    ),
    "an infinite quantile": (
        lambda: {
            **_calibration(),
            "workloads": {
                "gw": {**_calibration()["workloads"]["gw"], "shared_step_quantiles_s": [[0.2], [0.3, float("inf")]]}
            },
        },
        "field 'shared_step_quantiles_s[1]' must be a non-empty list of finite positive numbers",
    ),
    "quantiles of fewer epochs than the shared step times": (
        lambda: {
            **_calibration(),
            "workloads": {"gw": {**_calibration()["workloads"]["gw"], "shared_step_quantiles_s": [[0.24]]}},
        },
        "field 'shared_step_quantiles_s' must hold one list per shared epoch",
    ),
    "negative overhead": (
        lambda: {**_calibration(), "workloads": {"gw": {**_calibration()["workloads"]["gw"], "step_overhead_s": -1}}},
        "field 'step_overhead_s' is -1",
    ),
    "beside rate above 1": (
        lambda: {**_calibration(), "workloads": {"gw": {**_calibration()["workloads"]["gw"], "beside_rate": 1.5}}},
        "field 'beside_rate' is 1.5, expected 0 to 1",
    ),
    "a share of the step above 1": (
        lambda: {
            **_calibration(),
            "workloads": {"gw": {**_calibration()["workloads"]["gw"], "gradient_ready": [[4, 0.5], [4, 1.5]]}},
        },
        "field 'gradient_ready' must be a non-empty list of [bytes > 0, share 0 to 1]",
    ),
    "a calibration of format 2": (
        lambda: {**_calibration(), "format": "hpcai-calibration/2"},
        "field 'format' is 'hpcai-calibration/2', expected 'hpcai-calibration/3'",
    ),
    "no pins": (lambda: _without(_calibration(), "provenance", "pins"), "provenance: missing field 'pins'"),
    "another format": (lambda: {**_calibration(), "format": "x/2"}, "field 'format' is 'x/2'"),
    "another site": (lambda: _calibration("hal"), "a calibration of site 'hal', not of 'local'"),
    "other pins": (
        lambda: _calibration(tensorflow="2.15.1"),
        "measured with tensorflow '2.15.1', but site local now pins '2.21.0'",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES), ids=list(BAD_FILES))
def test_a_bad_calibration_is_refused_in_one_line(hpcai, tmp_path, case):
    make, expected = BAD_FILES[case]
    path = _write(tmp_path, make())
    out = tmp_path / "out"
    result = hpcai(*ESTIMATE, "--calibration", str(path), "--out", str(out))
    line = assert_refused(result, "local.json")
    assert expected in line, line
    assert not out.exists()


def test_a_calibration_that_is_not_json_is_refused(hpcai, tmp_path):
    path = tmp_path / "local.json"
    path.write_text("{", encoding="utf-8")
    assert_refused(hpcai(*ESTIMATE, "--calibration", str(path)), "local.json", "not JSON")


BAD_CURVES = {
    "no header": ("1,100\n2,190\n", "expected a header"),
    "not a number": ("devices,samples_per_s\n1,100\n2,fast\n", ":3: expected an integer devices"),
    "zero rate": ("devices,samples_per_s\n1,100\n2,0\n", ":3: expected devices >= 1"),
    "repeated count": ("devices,samples_per_s\n1,100\n1,110\n", ":3: devices 1 appears twice"),
    "one count": ("devices,samples_per_s\n1,100\n", "expected two or more device counts"),
}


@pytest.mark.parametrize("case", list(BAD_CURVES), ids=list(BAD_CURVES))
def test_a_bad_curve_is_refused_in_one_line(hpcai, tmp_path, case):
    text, expected = BAD_CURVES[case]
    path = tmp_path / "curve.csv"
    path.write_text(text, encoding="utf-8")
    args = ("estimate", "resnet50", "--site", "hal", "--params", "25557032", "--tensors", "161", "--batch", "64")
    line = assert_refused(hpcai(*args, "--fit-csv", str(path)), "curve.csv")
    assert expected in line, line


def test_fit_csv_prints_measured_beside_predicted_and_plots_both(hpcai, tmp_path):
    """The public curve of bench/data: fitted on 1, 2 and 4 GPUs, the rest predicted within 15%."""
    out = tmp_path / "fit"
    result = hpcai(
        "estimate",
        "resnet50",
        "--site",
        "bridges-ai",
        "--fit-csv",
        "bench/data/dlperf-mxnet-resnet50-v100.csv",
        "--batch",
        "128",
        "--params",
        "25557032",
        "--tensors",
        "161",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.endswith(("| fitted |", "| predicted |"))]
    assert [row.split(" | ")[0] for row in rows] == ["| 1", "| 2", "| 4", "| 8", "| 16", "| 32"]
    for row in rows[3:]:
        assert abs(float(row.split(" | ")[3].rstrip("%"))) < 15, row
    assert sorted(p.name for p in out.iterdir()) == ["estimate.csv", "estimate.md", "estimate.png"]
    assert (out / "estimate.png").read_bytes()[:4] == b"\x89PNG"


def test_calibrate_refuses_a_site_whose_stack_the_host_does_not_run(hpcai, tmp_path):
    before = tree(tmp_path)
    result = hpcai("calibrate", "gw", "--site", "local-tf215", "--out", str(tmp_path), "--", "--smoke")
    assert_refused(result, "--site local-tf215", "pins tensorflow-cpu 2.15.1, this Python has 2.21.0")
    assert tree(tmp_path) == before


def test_calibrate_refuses_an_image_that_is_not_there(hpcai, tmp_path):
    missing = tmp_path / "hpcai-local.sif"
    result = hpcai("calibrate", "gw", "--site", "local", "--image", str(missing), "--out", str(tmp_path / "out"))
    assert_refused(result, "--image", f"expected a SIF file, got {missing} (no such file)")
    assert list(tmp_path.iterdir()) == []


def test_calibrate_across_nodes_refuses_an_image(hpcai, tmp_path):
    """The probe across emulated nodes runs with the host's Python and measures TCP over loopback: --image with
    it, and a site whose link across nodes is a real fabric, are refused before anything runs."""
    image = tmp_path / "hpcai-local.sif"
    image.write_bytes(b"")
    result = hpcai("calibrate", "gw", "--site", "local", "--image", str(image), "--across-nodes", "--", "--smoke")
    assert_refused(result, "--across-nodes", "not allowed with argument --image")
    assert list(tmp_path.iterdir()) == [image]
    result = hpcai("calibrate", "gw", "--site", "hal", "--across-nodes", "--out", str(tmp_path), "--", "--smoke")
    assert_refused(result, "--across-nodes", "TCP over loopback, not site hal's EDR InfiniBand")
    assert list(tmp_path.iterdir()) == [image]


def test_calibrate_refuses_what_it_sets_itself(hpcai, tmp_path):
    result = hpcai("calibrate", "gw", "--site", "local", "--out", str(tmp_path), "--", "--smoke", "--ranks", "2")
    assert_refused(result, "--ranks")
    result = hpcai("calibrate", "gw", "--site", "local", "--ranks", "3", "--out", str(tmp_path), "--", "--smoke")
    assert_refused(result, "--ranks", "expected 2 to 2")
    assert list(tmp_path.iterdir()) == []


def test_calibrate_measures_the_local_node_and_estimate_reads_it(hpcai, tmp_path):
    """The real thing: hpcai train alone and two at once, Horovod's probe under mpirun, the fits, the file."""
    data = tmp_path / "gw.h5"
    assert hpcai("data", "gw", "--smoke", "--n", "320", "--out", str(data)).returncode == 0
    out = tmp_path / "calibration"
    train = ("--smoke", "--data", str(data), "--epochs", "2", "--no-tensorboard")
    result = hpcai(
        "calibrate",
        "gw",
        "--site",
        "local",
        "--out",
        str(out),
        "--message-sizes",
        SMALL_SIZES,
        "--across-nodes",
        "--",
        *train,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert f"calibrate: wrote {out / 'local.json'}" in result.stdout
    data = json.loads((out / "local.json").read_text())
    entry, link = data["workloads"]["gw"], data["link"]
    assert data["site"] == "local" and data["provenance"]["ranks"] == 2
    assert data["provenance"]["pins"]["tensorflow"] == load_site("local").stack.tensorflow
    assert [p["bytes"] for p in link["points"]] == [4096, 1048576, 16777216]
    assert link["bandwidth"] > 0 and link["latency_s"] >= 0 and link["reduction_s_per_byte"] >= 0
    across = data["link_across_nodes"]
    assert across["level"] == "inter_node" and across["ranks"] == 2 and across["bandwidth"] > 0
    assert [p["bytes"] for p in across["points"]] == [4096, 1048576, 16777216]
    assert "calibrate: local link across 2 emulated nodes: latency " in result.stdout
    assert " ms over 1 epoch(s)), " in result.stdout and " ms over 1 epoch(s)); gradients (72 tensors" in result.stdout
    assert entry["gradient_tensors"] == 72 and entry["gradient_bytes"] == 49891 * 4
    assert min(entry["step_time_epochs_s"]) > 0 and min(entry["shared_step_time_epochs_s"]) > 0
    assert 0 <= entry["beside_rate"] <= 1
    # 8 of the skip convolutions' biases have one gradient, which TensorFlow allreduces once (in training too)
    assert len(entry["gradient_ready"]) == 72 - 7
    assert sum(size for size, _ in entry["gradient_ready"]) == (49891 - 7 * 32) * 4
    shares = [share for _, share in entry["gradient_ready"]]
    assert 0 < min(shares) < max(shares) <= 1  # the forward pass comes first, then the gradients one by one
    assert entry["probe_step_with_allreduce_s"] > 0 and entry["probe_step_s"] > 0
    # one measured epoch: its step alone, the two shared runs' mean step and their 21 quantiles each
    assert len(entry["step_time_epochs_s"]) == len(entry["shared_step_time_epochs_s"]) == 1
    assert [len(q) for q in entry["shared_step_quantiles_s"]] == [2 * 21]
    assert entry["train_args"] == list(train)
    estimate = hpcai(*ESTIMATE, "--calibration", str(out / "local.json"))
    assert estimate.returncode == 0, estimate.stderr
    assert "(measured: local.json, alone on the node)" in estimate.stdout
    assert "| contention |" in estimate.stdout and "| measured |" in estimate.stdout
    assert "| inter-node bandwidth |" in estimate.stdout and "all-gathers across 2 emulated nodes" in estimate.stdout


def _run_dir(root: Path, ranks: int, rate: float) -> Path:
    run = root / f"resnet50-{ranks}ranks"
    run.mkdir()
    records = [
        {
            "type": "provenance",
            "workload": "resnet50",
            "ranks": ranks,
            "site": "hal",
            "config": {"epochs": 90, "dataset_size": 1281167},
            "image": None,
        },
        *(
            {
                "type": "epoch",
                "epoch": epoch,
                "global_samples_per_sec": rate,
                "epoch_time_s": 10.0,
                "step_time_s": 64 * ranks / rate,
                "batch_per_rank": 64,
                "wall_time_s": 10.0 * epoch,
            }
            for epoch in (1, 2)
        ),
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return run


def test_fit_on_runs_fits_the_smallest_counts_and_predicts_the_rest(hpcai, tmp_path):
    """Runs at 1, 2, 4 and 8 ranks of HAL: fitted on 1 and 2, the 4- and 8-rank rows predicted, errors shown."""
    runs = [_run_dir(tmp_path, ranks, rate) for ranks, rate in ((1, 256.0), (2, 500.0), (4, 980.0), (8, 1900.0))]
    args = ("estimate", "resnet50", "--site", "hal", "--params", "25557032", "--tensors", "161", "--fit")
    result = hpcai(*args, *map(str, runs))
    assert result.returncode == 0, result.stderr
    assert "250.0 ms/step at batch 64 per device (measured: the 1-rank run)" in result.stdout
    assert "fitted on 1, 2 device(s):" in result.stdout
    rows = [line for line in result.stdout.splitlines() if line.endswith(("| fitted |", "| predicted |"))]
    assert [row.split(" | ")[-1] for row in rows] == ["fitted |", "fitted |", "predicted |", "predicted |"]
    assert rows[0].startswith("| 1 | 256.00 | 256.00 | +0.0% |")
    assert "largest error of the predicted counts:" in result.stdout


def test_fit_refuses_two_runs_at_one_count(hpcai, tmp_path):
    first = _run_dir(tmp_path, 1, 256.0)
    (tmp_path / "again").mkdir()
    second = _run_dir(tmp_path / "again", 1, 250.0)
    args = ("estimate", "resnet50", "--site", "hal", "--params", "25557032", "--tensors", "161", "--fit")
    assert_refused(hpcai(*args, str(first), str(second)), "--fit", "same rank count")


def test_against_prints_and_plots_measured_beside_predicted(hpcai, tmp_path):
    """The demo's last step: the calibration's prediction at the runs' rank counts beside their measurement."""
    path = _write(tmp_path, _calibration())
    runs = []
    for ranks, rate in ((1, 128.0), (2, 200.0)):
        run = tmp_path / f"gw-{ranks}ranks"
        run.mkdir()
        provenance = {"type": "provenance", "workload": "gw", "ranks": ranks, "site": "local", "image": None}
        provenance["config"] = {"epochs": 4, "dataset_size": 640}
        epoch = {"type": "epoch", "epoch": 1, "global_samples_per_sec": rate, "epoch_time_s": 5.0}
        epoch.update(step_time_s=32 * ranks / rate, batch_per_rank=32, wall_time_s=5.0)
        (run / "metrics.jsonl").write_text(json.dumps(provenance) + "\n" + json.dumps(epoch) + "\n")
        runs.append(str(run))
    out = tmp_path / "out"
    args = (*ESTIMATE[:4], "--smoke", "--params", "49891", "--tensors", "72", "--calibration", str(path))
    result = hpcai(*args, "--against", *runs, "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "| devices | measured samples/s | predicted samples/s | error | used |" in result.stdout
    assert "| 1 | 128.00 | 128.00 | +0.0% | predicted |" in result.stdout
    assert "efficiency at 2 against 1: measured 0.781, predicted" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["estimate.csv", "estimate.md", "estimate.png"]
    refused = hpcai(*args, "--against", *runs, "--gpus", "1,2")
    assert_refused(refused, "--gpus", "not with --against")
