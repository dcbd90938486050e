"""Bad input to `hpcai report`, `estimate` and `cost`, tried as a user would: exit 2, one line naming the field or
file (and line), no traceback, nothing written (issue #14)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import assert_refused, tree


def _records(ranks: int = 1, rate: float = 100.0) -> list[dict]:
    return [
        {
            "type": "provenance",
            "workload": "gw",
            "ranks": ranks,
            "site": "local",
            "config": {"epochs": 90, "dataset_size": 1000},
            "image": None,
        },
        {
            "type": "epoch",
            "epoch": 0,
            "global_samples_per_sec": rate,
            "epoch_time_s": 10.0,
            "step_time_s": 0.1,
            "batch_per_rank": 32,
            "wall_time_s": 10.0,
        },
        {"type": "final", "wall_time_s": 12.0, "status": "completed"},
    ]


def _run(root: Path, lines: list[str | bytes]) -> Path:
    run = root / "run"
    run.mkdir(parents=True)
    data = b"".join((line if isinstance(line, bytes) else line.encode()) + b"\n" for line in lines)
    (run / "metrics.jsonl").write_bytes(data)
    return run


def _dumps(records: list[dict]) -> list[str]:
    return [json.dumps(r) for r in records]


def _changed(index: int, **fields) -> list[str]:
    records = _records()
    records[index].update(fields)
    return _dumps(records)


BAD_RECORDS = {
    "ranks a string": (_changed(0, ranks="2"), ":1:", "ranks"),
    "ranks zero": (_changed(0, ranks=0), ":1:", "ranks"),
    "ranks fractional": (_changed(0, ranks=1.5), ":1:", "ranks"),
    "config a list": (_changed(0, config=[1, 2]), ":1:", "config"),
    "image a string": (_changed(0, image="host"), ":1:", "image"),
    "site a number": (_changed(0, site=3), ":1:", "site"),
    "zero throughput": (_changed(1, global_samples_per_sec=0), ":2:", "global_samples_per_sec"),
    "NaN throughput": (
        [*_dumps(_records())[:1], _dumps(_records())[1].replace("100.0", "NaN"), _dumps(_records())[2]],
        ":2:",
        "global_samples_per_sec",
    ),
    "type not a string": (_changed(2, type=["final"]), ":3:", "'type'"),
    "nested deep": ([*_dumps(_records()), "[" * 100_000 + "]" * 100_000], ":4:", "nested too deeply"),
    "invalid UTF-8": ([*_dumps(_records())[:2], b'{"type": "final", "status": "\xff"}'], ":3:", "UTF-8"),
}


@pytest.mark.parametrize("command", ["report", "cost"])
@pytest.mark.parametrize("case", list(BAD_RECORDS))
def test_malformed_run_record(hpcai, tmp_path: Path, command, case):
    """Fields of the wrong type, zero throughput or ranks, deep nesting, bad bytes: the file, its line, the field."""
    lines, where, field = BAD_RECORDS[case]
    run = _run(tmp_path, lines)
    out = ["--out", str(tmp_path / "report")] if command == "report" else ["--price", "2"]
    before = tree(tmp_path)
    result = hpcai(command, str(run), *out)
    assert_refused(result, "metrics.jsonl" + where, field)
    assert tree(tmp_path) == before


def test_a_good_record_passes(hpcai, tmp_path: Path):
    """The records above are bad only where they were changed: unchanged, report and cost take them."""
    run = _run(tmp_path, _dumps(_records()))
    assert hpcai("report", str(run)).returncode == 0
    assert hpcai("cost", str(run), "--price", "2").returncode == 0


@pytest.mark.parametrize("price", ["nan", "inf", "-1", "0", "abc"])
def test_cost_price_must_be_positive_and_finite(hpcai, tmp_path: Path, price):
    run = _run(tmp_path, _dumps(_records()))
    result = hpcai("cost", str(run), "--price", price)
    assert_refused(result, "--price", repr(price))
    assert "USD" not in result.stdout


ESTIMATE = ["estimate", "gw", "--site", "local", "--params", "1000", "--tensors", "10"]


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--step-time", "nan"),
        ("--step-time", "inf"),
        ("--step-time", "-0.1"),
        ("--step-time", "0"),
        ("--batch", "0"),
        ("--batch", "-4"),
        ("--batch", "1e3"),
        ("--params", "0"),
        ("--params", "-5"),
        ("--fusion-mb", "nan"),
        ("--fusion-mb", "-1"),
        ("--fusion-mb", "inf"),
        ("--price", "nan"),
        ("--price", "0"),
        ("--price", "-2"),
        ("--gpus", "1,,2"),
        ("--gpus", "1,"),
        ("--gpus", "0,2"),
        ("--gpus", "1,x"),
    ],
)
def test_estimate_numbers(hpcai, tmp_path: Path, flag, value):
    """NaN, infinite, negative or zero figures and empty --gpus fields are refused, naming the flag."""
    args = {"--step-time": "0.1", "--batch": "32", "--gpus": "1,2", flag: value}
    given = [item for key, val in args.items() for item in (key, val)]
    command = [c for c in ESTIMATE]
    if flag in ("--params",):
        command[command.index("--params") + 1] = value
        given = [item for key, val in args.items() if key != "--params" for item in (key, val)]
    out = tmp_path / "est"
    result = hpcai(*command, *given, "--out", str(out))
    assert_refused(result, flag)
    assert "nan" not in result.stdout and "USD" not in result.stdout
    assert not out.exists()
