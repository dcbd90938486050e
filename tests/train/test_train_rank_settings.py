"""Per-rank settings that cost time: TensorFlow's thread counts and how often the ranks check for a preemption."""

from __future__ import annotations

import pytest

from hpcai_tf.errors import KitError
from hpcai_tf.train.callbacks import preemption_check_due
from hpcai_tf.train.config import resolve_config
from hpcai_tf.train.distributed import thread_counts


def test_cores_are_shared_by_the_ranks_of_a_node():
    assert thread_counts(2, 1, {}) == (2, 2)
    assert thread_counts(2, 2, {}) == (1, 1)
    assert thread_counts(16, 4, {}) == (4, 2)
    assert thread_counts(2, 4, {}) == (1, 1)  # oversubscribed: never zero


def test_tensorflow_thread_variables_override_the_share():
    env = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
    assert thread_counts(2, 1, env) == (1, 1)
    assert thread_counts(8, 1, {"TF_NUM_INTRAOP_THREADS": "3"}) == (3, 2)
    assert thread_counts(8, 1, {"TF_NUM_INTEROP_THREADS": " "}) == (8, 2)


@pytest.mark.parametrize("value", ["0", "two", "-1", "1.5"])
def test_a_bad_thread_variable_is_a_one_line_error(value):
    with pytest.raises(KitError, match=rf"^TF_NUM_INTRAOP_THREADS='{value}': expected a positive number"):
        thread_counts(2, 1, {"TF_NUM_INTRAOP_THREADS": value})


def test_preemption_checks_every_n_steps_and_after_the_last_step():
    due = [step for step in range(1, 24) if preemption_check_due(step, 23, 10)]
    assert due == [10, 20, 23]
    assert [step for step in range(1, 9) if preemption_check_due(step, 8, 1)] == list(range(1, 9))
    assert [step for step in range(1, 9) if preemption_check_due(step, 8, 10)] == [8]  # at epoch end only


def test_preemption_check_interval_is_configurable_and_positive():
    assert resolve_config("gw")["preemption_check_steps"] == 10
    assert resolve_config("gw", sets=["preemption_check_steps=3"])["preemption_check_steps"] == 3
    with pytest.raises(KitError, match="'preemption_check_steps' must be > 0, got 0"):
        resolve_config("gw", sets=["preemption_check_steps=0"])
