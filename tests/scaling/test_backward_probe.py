"""The backward probe's reading of a Horovod timeline: each gradient's enqueue times, on the epoch's clock."""

from __future__ import annotations

from hpcai_tf.scaling.backward_probe import TENSOR, enqueue_times

# What Horovod 0.28 writes (its array left open while it records): a metadata row naming the start, then per
# tensor a process_name row and its activities, microseconds since the start.
TIMELINE = """[
{"name": "process_name", "ph": "M", "pid": 0, "args": {"start_time_since_epoch_in_micros":1000000}},
{"name": "process_name", "ph": "M", "pid": 1, "args": {"name": "hpcai.ready.1"}},
{"name": "process_sort_index", "ph": "M", "pid": 1, "args": {"sort_index": 1}},
{"ph": "B", "name": "NEGOTIATE_ALLREDUCE", "ts": 250, "pid": 1},{"ph": "E", "ts": 251, "pid": 1},
{"ph": "B", "name": "ALLREDUCE", "ts": 260, "pid": 1},{"ph": "E", "ts": 270, "pid": 1},
{"name": "process_name", "ph": "M", "pid": 2, "args": {"name": "hpcai.ready.0"}},
{"ph": "B", "name": "NEGOTIATE_ALLREDUCE", "ts": 400, "pid": 2},{"ph": "E", "ts": 401, "pid": 2},
{"ph": "B", "name": "NEGOTIATE_ALLREDUCE", "ts": 900, "pid": 1},{"ph": "E", "ts": 901, "pid": 1},
{"name": "process_name", "ph": "M", "pid": 3, "args": {"name": "HorovodBroadcast_x_0"}},
{"ph": "B", "name": "NEGOTIATE_BROADCAST", "ts": 950, "pid": 3},{"ph": "E", "ts": 951, "pid": 3},
"""


def test_enqueue_times_are_the_negotiation_starts_of_each_gradient_on_the_epoch_clock():
    """Gradient index from the tensor's name; the other rows (a broadcast) and activities are ignored; the open
    array and its trailing comma are read."""
    assert TENSOR == "hpcai.ready."
    assert enqueue_times(TIMELINE) == {1: [1000250.0, 1000900.0], 0: [1000400.0]}
    assert enqueue_times(TIMELINE.rstrip().rstrip(",") + "]") == enqueue_times(TIMELINE)
