"""Atomic writes, metrics.jsonl and checkpoints: a killed writer never leaves a half-written file behind."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
from source_scan import docstring_ids

from hpcai_tf.errors import KitError
from hpcai_tf.train import metrics_log
from hpcai_tf.train.atomic import atomic_path, write_text_atomic
from hpcai_tf.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from hpcai_tf.train.metrics_log import METRICS_FILE, MetricsLog, read_records


def test_atomic_write_replaces_whole_file_or_nothing(tmp_path):
    target = tmp_path / "out.txt"
    write_text_atomic(target, "first")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temporary file left


def test_metrics_log_appends_lines_and_drops_a_torn_tail(tmp_path):
    log = MetricsLog(tmp_path)
    log.append({"type": "provenance", "value": np.float32(1.5), "nan": float("nan")})
    with open(log.path, "a") as handle:
        handle.write('{"type": "epoch", "epo')  # a writer killed mid-line
    assert [r["type"] for r in read_records(log.path)] == ["provenance"]
    MetricsLog(tmp_path).append({"type": "epoch", "epoch": 1})
    lines = log.path.read_text().splitlines()
    assert [json.loads(line)["type"] for line in lines] == ["provenance", "epoch"]
    assert json.loads(lines[0]) == {"type": "provenance", "value": 1.5, "nan": None}


def test_read_records_rejects_a_broken_middle_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"type": "a"}\nnot json\n{"type": "b"}\n')
    with pytest.raises(KitError, match=r"metrics\.jsonl:2: not a JSON object") as err:
        read_records(path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("data", "where", "what"),
    [
        (b'{"type": "a"}\n{"type": "ep\n', ":2:", "not a JSON object"),  # it has its newline: not torn
        (b'{"type": "a"}\n{"type": "\xff"}\n{"type": "b"}', ":2:", "UTF-8"),
        (b'{"type": "a"}\n[1]\n', ":2:", "'type'"),
        (b'{"type": "a"}\n{"type": 3}', ":2:", "'type'"),  # whole JSON after the last newline: not torn
    ],
)
def test_read_records_refuses_every_bad_line_but_a_torn_last_one(tmp_path, data, where, what):
    """Only the bytes after the last newline can be a killed writer's torn line; bad data elsewhere is corrupt."""
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(data)
    with pytest.raises(KitError, match=rf"metrics\.jsonl{where} .*{what}"):
        read_records(path)


@pytest.mark.parametrize("tail", [b'{"type": "epoch", "epo', b'{"type": "\xe2\x82', b"["])
def test_read_records_skips_a_torn_last_line(tmp_path, tail):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"type": "provenance"}\n' + tail)
    assert read_records(path) == [{"type": "provenance"}]


def test_a_whole_last_record_without_its_newline_is_kept_and_ended(tmp_path):
    """The reader keeps it, and the next writer ends its line instead of truncating it."""
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"type": "provenance"}\n{"type": "final"}')
    assert [r["type"] for r in read_records(path)] == ["provenance", "final"]
    MetricsLog(tmp_path).append({"type": "provenance"})
    assert [r["type"] for r in read_records(path)] == ["provenance", "final", "provenance"]


def _checkpoint() -> Checkpoint:
    return Checkpoint(
        workload="gw",
        config={"seed": 1},
        state={"epoch": 2, "step": 5},
        model={"dense/kernel:0": np.arange(6, dtype=np.float32).reshape(2, 3)},
        optimizer={"Adam/iter:0": np.array(7, dtype=np.int64)},
    )


def test_checkpoint_round_trip(tmp_path):
    path = tmp_path / "checkpoint.h5"
    save_checkpoint(path, _checkpoint())
    loaded = load_checkpoint(path)
    assert loaded.state == {"epoch": 2, "step": 5} and loaded.workload == "gw"
    np.testing.assert_array_equal(loaded.model["dense/kernel:0"], _checkpoint().model["dense/kernel:0"])
    assert int(loaded.optimizer["Adam/iter:0"]) == 7


def test_truncated_or_foreign_checkpoint_is_a_one_line_error(tmp_path):
    path = tmp_path / "checkpoint.h5"
    save_checkpoint(path, _checkpoint())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(KitError, match=r"checkpoint\.h5: unreadable checkpoint") as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value)
    other = tmp_path / "other.h5"
    other.write_bytes(b"not hdf5 at all")
    with pytest.raises(KitError, match=r"other\.h5: unreadable checkpoint"):
        load_checkpoint(other)


def _code_strings(path: Path) -> list[str]:
    """The string constants of a module that are not docstrings."""
    tree = ast.parse(path.read_text(), filename=str(path))
    docstrings = docstring_ids(tree)
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_the_metrics_file_name_is_written_once():
    """Code everywhere names the file through METRICS_FILE; only metrics_log.py spells it out."""
    package = Path(metrics_log.__file__).parents[1]
    spelled = sorted(
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if any(METRICS_FILE in text for text in _code_strings(path))
    )
    assert spelled == ["train/metrics_log.py"]
