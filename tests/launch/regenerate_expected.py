"""Rewrite ``tests/launch/expected/*.sh`` from the current templates: run by hand, then review the diff.

    .venv/bin/python tests/launch/regenerate_expected.py && git diff tests/launch/expected

The tests never call this: they compare against the files as committed.
"""

from __future__ import annotations

from test_scripts import CASES, EXPECTED, request_for

from hpcai_tf.launch.job_script import render_job_script

if __name__ == "__main__":
    for name, case in CASES.items():
        (EXPECTED / f"{name}.sh").write_text(render_job_script(request_for(case)))
        print(EXPECTED / f"{name}.sh")
