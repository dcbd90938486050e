"""No argument injects shell: what bash parses from a generated script is exactly the arguments given.

Here bash itself parses the rendered command (with ``printf '%s\\0'`` in place of the program), so the test sees
the words the launcher would receive. ``test_slurm_jobs.py`` shows the same for a real job: the arguments reach
``hpcai train`` and nothing runs.
"""

from __future__ import annotations

import subprocess

from hpcai_tf.catalog import load_site
from hpcai_tf.launch.job_script import LaunchRequest, render_job_script

EVIL = ("; touch /tmp/hpcai-injected", "$(touch /tmp/hpcai-substituted)", "`id`", "a\nb", "'quoted' \"twice\"", "")


def words_bash_sees(script: str, start: str) -> list[str]:
    """The words bash parses from the command in ``script`` that begins with ``start`` and ends with `` &``."""
    begin = script.index(start)
    command = script[begin : script.index(" &\n", begin)]
    result = subprocess.run(
        ["bash", "-c", "run_dir=/runs/gw-1; printf '%s\\0' " + command], capture_output=True, check=True
    )
    return result.stdout.decode().split("\0")[:-1]


def test_train_arguments_stay_literal():
    """`;`, `$()`, backticks, a newline, quotes and an empty string: each one argument of `hpcai train`."""
    request = LaunchRequest(
        workload="gw", site=load_site("local"), nodes=1, runtime="none", host_hpcai="/opt/hpcai/bin/hpcai",
        train_args=("--smoke", *EVIL),
    )  # fmt: skip
    script = render_job_script(request)
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    words = words_bash_sees(script, "/opt/hpcai/bin/hpcai train")
    assert words == ["/opt/hpcai/bin/hpcai", "train", "gw", "--run-dir", "/runs/gw-1", "--resume", "--smoke", *EVIL]


def test_image_and_run_root_stay_literal():
    """An image path and a run root with shell syntax stay one word each."""
    image = "/images/$(reboot)/a b;c.sif"
    root = "/scratch/`id`/my runs"
    request = LaunchRequest(workload="gw", site=load_site("local"), nodes=1, image=image, run_root=root)
    script = render_job_script(request)
    assert words_bash_sees(script, "apptainer exec")[:3] == ["apptainer", "exec", image]
    run_dir_line = next(line for line in script.splitlines() if line.startswith("run_dir="))
    result = subprocess.run(
        ["bash", "-c", f"SLURM_JOB_ID=7; {run_dir_line}; printf '%s' \"$run_dir\""], capture_output=True, text=True
    )
    assert result.stdout == f"{root}/runs/gw-7"
