"""Per-rank settings that cost time: TensorFlow's thread counts."""

from __future__ import annotations

import pytest

from hpcai_tf.errors import KitError
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
