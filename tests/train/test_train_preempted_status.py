"""The exit status of a preempted run has one definition, hpcai_tf.train.signals.EXIT_PREEMPTED."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from source_scan import docstring_ids

from hpcai_tf.catalog import load_site
from hpcai_tf.cli import build_parser
from hpcai_tf.launch.job_script import LaunchRequest, plan_job
from hpcai_tf.train.signals import EXIT_PREEMPTED

PACKAGE = Path(__file__).resolve().parents[2] / "hpcai_tf"


def _literal_copies(path: Path) -> list[int]:
    """Lines of ``path`` where the status appears as a number, or in a string other than a docstring."""
    tree = ast.parse(path.read_text())
    docstrings = docstring_ids(tree)
    status = str(EXIT_PREEMPTED)
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and id(node) not in docstrings
        and (
            (type(node.value) is int and node.value == EXIT_PREEMPTED)
            or (isinstance(node.value, str) and re.search(rf"(?<![\d.]){status}(?![\d.])", node.value))
        )
    ]


def test_no_second_copy_of_the_status_in_the_package():
    copies = {
        path.relative_to(PACKAGE).as_posix(): lines
        for path in sorted(PACKAGE.rglob("*.py"))
        if (lines := _literal_copies(path))
    }
    assert list(copies) == ["train/signals.py"] and len(copies["train/signals.py"]) == 1, copies


def test_job_scripts_and_the_train_help_read_the_status():
    job = plan_job(LaunchRequest(workload="gw", site=load_site("summit"), nodes=1, account="CSC1", image="x.sif"))
    assert job.preempted_status == EXIT_PREEMPTED
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    assert f"exits {EXIT_PREEMPTED};" in train.description
    assert f"(exit {EXIT_PREEMPTED})" in train.format_help()
