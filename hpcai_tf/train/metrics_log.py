"""``metrics.jsonl``: one JSON object per line, appended whole and fsynced, so a killed run stays parseable.

Record types, in order: ``provenance`` (one per start or restart of a run), ``epoch`` (one per finished
epoch), then either ``final`` or ``preempted``. :func:`read_records` is the reader the report side can use.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hpcai_tf.errors import KitError

METRICS_FILE = "metrics.jsonl"


def _plain(value: Any) -> Any:
    """``value`` as plain JSON data: numpy scalars and arrays unwrapped, non-finite floats as null."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalar or array
        return _plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsLog:
    """Appends records to ``<run_dir>/metrics.jsonl``; first drops a torn last line of a killed writer."""

    def __init__(self, run_dir: str | os.PathLike[str]):
        self.path = Path(run_dir) / METRICS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._drop_torn_tail()

    def _drop_torn_tail(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            with open(self.path, "rb+") as handle:
                handle.truncate(keep)
                os.fsync(handle.fileno())

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one record as one line (a single write), then flush and fsync."""
        if "type" not in record:
            raise ValueError("a metrics record needs a 'type'")
        line = json.dumps(_plain(record), sort_keys=False, allow_nan=False) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)


def read_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All records of a metrics file; a torn last line (a writer killed mid-line) is ignored."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise KitError(f"{path}: cannot read the metrics file ({err.strerror})") from None
    except UnicodeDecodeError as err:
        raise KitError(f"{path}: not valid UTF-8 (byte {err.start}); expected the metrics file of a run") from None
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise KitError(f"{path}:{number}: not a JSON object (metrics.jsonl holds one per line)") from None
        if not isinstance(record, dict) or "type" not in record:
            raise KitError(f"{path}:{number}: expected a JSON object with a 'type' field")
        records.append(record)
    return records
