"""The rank side of ``hpcai calibrate``: Horovod collectives timed on every rank, one JSON line from rank 0.

    mpirun -np 2 python -m hpcai_tf.scaling.collective_probe --sizes 4096,65536 --repeats 5 [--gradients FILE]

For each message size ``n`` (bytes of float32), inside one ``tf.function`` as training issues them:

- **allgather** of ``n / p`` bytes per rank: the all-gather half of a ring allreduce, a pure transfer of
  ``(p - 1) / p x n`` bytes per rank (no arithmetic), from which the link's latency and bandwidth are fitted;
- **allreduce** (sum) of ``n`` bytes: what one fused buffer of Horovod's tensor fusion costs, transfer and the
  reduction both; the difference from twice the all-gather is the reduction's cost.

With ``--gradients FILE`` (a JSON object ``{"workload": [[shape], ...]}``), each workload's gradient tensors are
allreduced (average) together, one op per tensor, as Horovod's Keras optimizer does after the backward pass: the
communication one training step pays, fusion and Horovod's cycle included; then a compute loop of about twice that
time alone and beside the same allreduces in one ``tf.function``: how much of the allreduce hides under compute on
this node (on a CPU node both need its cores).

Each figure is the median over ``--repeats`` timed calls (after two untimed ones) of the slowest rank's time; a
tiny allreduce starts every call (a barrier), so the ranks enter together. Rank 0 prints ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

RESULT = "RESULT "
FLOAT32 = 4


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="collective_probe")
    parser.add_argument("--sizes", required=True, help="message sizes in bytes, comma-separated")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--gradients", type=Path, help="JSON: workload -> list of gradient tensor shapes")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    from hpcai_tf.train.tf_environment import import_tensorflow

    tf = import_tensorflow()
    import horovod.tensorflow as hvd

    hvd.init()
    ranks = hvd.size()

    def timed(fn, inputs) -> float:
        """Median over repeats of the slowest rank's seconds for one call of ``fn(inputs)``."""
        for _ in range(2):
            _drain(fn(inputs))
        times = []
        for _ in range(args.repeats):
            hvd.allreduce(tf.constant(0.0), op=hvd.Sum, name="hpcai.probe.barrier").numpy()
            start = time.perf_counter()
            _drain(fn(inputs))
            elapsed = time.perf_counter() - start
            times.append(float(hvd.allreduce(tf.constant(elapsed, tf.float64), op=hvd.Max).numpy()))
        return statistics.median(times)

    allreduce = tf.function(lambda x: hvd.allreduce(x, op=hvd.Sum))
    allgather = tf.function(lambda x: hvd.allgather(x))
    sizes = [int(word) for word in args.sizes.split(",")]
    points = []
    for nbytes in sizes:
        elements = max(1, nbytes // FLOAT32)
        shard = max(1, elements // ranks)
        points.append(
            {
                "bytes": elements * FLOAT32,
                "allgather_s": timed(allgather, tf.ones([shard], tf.float32)),
                "allreduce_s": timed(allreduce, tf.ones([elements], tf.float32)),
            }
        )
    steps = {}
    if args.gradients:
        step_allreduce = tf.function(lambda xs: [hvd.allreduce(x, op=hvd.Average) for x in xs])
        for workload, shapes in json.loads(args.gradients.read_text(encoding="utf-8")).items():
            tensors = [tf.ones(shape, tf.float32) for shape in shapes]
            allreduce_s = timed(step_allreduce, tensors)
            # A compute loop of about twice the allreduce's time, alone and beside it in one tf.function (as a
            # backward pass runs beside the gradients' allreduces): the share of the allreduce that hides.
            matrix = tf.random.uniform([256, 256], seed=1)
            per_product = timed(_compute_loop(tf, 50), matrix) / 50
            rounds = max(1, int(2 * allreduce_s / max(per_product, 1e-7)))
            compute = _compute_loop(tf, rounds)
            compute_s = timed(compute, matrix)
            both = tf.function(lambda m, xs, f=compute: [f(m), *[hvd.allreduce(x, op=hvd.Average) for x in xs]])
            both_s = timed(lambda pair, f=both: f(*pair), (matrix, tensors))
            steps[workload] = {
                "tensors": len(tensors),
                "bytes": sum(int(t.shape.num_elements()) for t in tensors) * FLOAT32,
                "allreduce_s": allreduce_s,
                "compute_s": compute_s,
                "compute_and_allreduce_s": both_s,
            }
    if hvd.rank() == 0:
        print(RESULT + json.dumps({"ranks": ranks, "points": points, "gradients": steps}), flush=True)
    return 0


def _compute_loop(tf, rounds: int):
    """A tf.function of ``rounds`` dependent 256x256 matrix products (normalised, so values stay finite)."""

    def loop(m):
        def body(i, x):
            y = tf.linalg.matmul(x, m)
            return i + 1, y / tf.reduce_max(tf.abs(y))

        return tf.while_loop(lambda i, _: i < rounds, body, (tf.constant(0), m))[1]

    return tf.function(loop)


def _drain(result) -> None:
    """Wait for a collective's result to exist on this rank (copy it to the host)."""
    for tensor in result if isinstance(result, list) else [result]:
        if isinstance(tensor, list):
            _drain(tensor)
        else:
            tensor.numpy()


if __name__ == "__main__":
    sys.exit(main())
