"""The ``metrics.jsonl`` format: its file name, its writer and its one reader, for the training side and the report.

One JSON object with a string ``type`` per line, appended whole and fsynced, so a killed run stays parseable.
Record types, in order: ``provenance`` (one per start or restart of a run), ``epoch`` (one per finished
epoch), then either ``final`` or ``preempted``. A writer killed mid-line leaves a torn last line: the reader
skips it and the next writer truncates it; a line that does not parse anywhere else is refused.
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
        self._end_the_last_line()

    def _end_the_last_line(self) -> None:
        """Truncate a torn last line, or end a whole last record that lacks its newline, before appending."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if not data or data.endswith(b"\n"):
            return
        keep = data.rfind(b"\n") + 1
        with open(self.path, "rb+") as handle:
            if _parsed(data[keep:]) is None:
                handle.truncate(keep)
            else:
                handle.seek(0, os.SEEK_END)
                handle.write(b"\n")
            handle.flush()
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


def _parsed(line: bytes) -> Any:
    """The JSON value of one line, or None when it does not parse (a torn line, for one)."""
    try:
        return json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None


def read_numbered_records(path: str | os.PathLike[str]) -> list[tuple[int, dict[str, Any]]]:
    """(line number, record) of every record of a metrics file.

    Only the last line may be torn: the bytes after the last newline, when they do not parse, are a writer killed
    mid-line and are skipped (a whole record there is kept). Any other line that is not a JSON record is corrupt
    data: a :class:`KitError` names the file and the line.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise KitError(f"{path}: cannot read the metrics file ({err.strerror or type(err).__name__})") from None
    *lines, tail = data.split(b"\n")
    records = []
    for number, line in enumerate([*lines, tail], start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError as err:
            if number > len(lines):
                break
            raise KitError(
                f"{where}: not valid UTF-8 (byte {err.start} of the line); expected a metrics file"
            ) from None
        except json.JSONDecodeError:
            if number > len(lines):
                break
            raise KitError(f"{where}: not a JSON object ({METRICS_FILE} holds one per line)") from None
        except RecursionError:
            raise KitError(f"{where}: JSON nested too deeply; expected a flat metrics record") from None
        if not isinstance(record, dict) or not isinstance(record.get("type"), str):
            raise KitError(f"{where}: expected a JSON object with a 'type' field")
        records.append((number, record))
    return records


def read_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every record of a metrics file, read by the rule of :func:`read_numbered_records`."""
    return [record for _, record in read_numbered_records(path)]
