"""The scheduler records: one per catalog kind, each the one place of what the kit knows about its batch system."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import pytest

from hpcai_tf.catalog import Scheduler as CatalogScheduler
from hpcai_tf.errors import KitError
from hpcai_tf.launch.schedulers import LSF, SCHEDULERS, SLURM, register_scheduler, scheduler_for
from hpcai_tf.paths import LAUNCH_DIR
from hpcai_tf.train.mpirun_line import ALLOCATION_VARIABLES

PACKAGE = Path(__file__).resolve().parents[2] / "hpcai_tf"
EXPECTED = Path(__file__).parent / "expected"


def test_every_kind_of_the_catalog_has_one_record_and_a_template():
    assert set(SCHEDULERS) == set(get_args(CatalogScheduler.model_fields["kind"].annotation))
    for kind, scheduler in SCHEDULERS.items():
        assert scheduler.kind == kind
        assert (LAUNCH_DIR / scheduler.template).is_file()


def test_a_kind_is_registered_once_and_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="'slurm' is already registered"):
        register_scheduler(SLURM)
    with pytest.raises(KitError, match=r"^scheduler\.kind: expected one of slurm, lsf, got 'pbs'$"):
        scheduler_for("pbs")


@pytest.mark.parametrize(
    ("scheduler", "minutes", "text"),
    [(SLURM, 120, "2:00:00"), (SLURM, 10, "0:10:00"), (LSF, 120, "2:00"), (LSF, 1445, "24:05")],
)
def test_wall_time_in_each_schedulers_format(scheduler, minutes, text):
    """Slurm would read --time=2:00 as 2 minutes: H:MM:SS; LSF's -W reads H:MM."""
    assert scheduler.wall_time(minutes) == text


@pytest.mark.parametrize(
    ("scheduler", "output", "job_id"),
    [
        (SLURM, "Submitted batch job 42\n", "42"),
        (LSF, "Job <1234> is submitted to queue <batch>.\n", "1234"),
    ],
)
def test_the_job_id_in_the_submit_commands_output(scheduler, output, job_id):
    assert scheduler.job_id_pattern.search(output)[1] == job_id


def test_success_is_an_end_state():
    for scheduler in SCHEDULERS.values():
        assert scheduler.success_state in scheduler.end_states


def test_every_directive_of_a_rendered_script_has_its_schedulers_prefix():
    """The directives' text is in the template; their prefix is the record's."""
    for script in sorted(EXPECTED.glob("*.sh")):
        lines = script.read_text().splitlines()
        kind = "lsf" if lines[1].startswith("#BSUB") else "slurm"
        directives = [line for line in lines if re.match(r"#[A-Z]", line)]
        assert directives, script.name
        assert all(line.startswith(SCHEDULERS[kind].directive + " ") for line in directives), script.name


def test_each_job_id_variable_marks_an_allocation_for_mpirun():
    """Inside a job of any registered scheduler, mpirun's --oversubscribe rule sees an allocation."""
    for scheduler in SCHEDULERS.values():
        assert scheduler.job_id_variable in ALLOCATION_VARIABLES


@pytest.mark.parametrize(
    "fact", ["SLURM_SUBMIT_DIR", "LS_SUBCWD", "Submitted batch job", "Job <(", "NODE_FAIL", "stat exit_code"]
)
def test_no_second_copy_of_a_scheduler_fact_in_the_package(fact):
    holders = [p.relative_to(PACKAGE).as_posix() for p in sorted(PACKAGE.rglob("*.py")) if fact in p.read_text()]
    assert holders == ["launch/schedulers.py"]
