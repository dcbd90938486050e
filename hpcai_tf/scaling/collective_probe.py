"""The rank side of ``hpcai calibrate``: Horovod collectives timed on every rank, one JSON line from rank 0.

    mpirun -np 2 python -m hpcai_tf.scaling.collective_probe --sizes 4096,65536 --repeats 5 \
        [--workload W --config FILE --batch N]

For each message size ``n`` (bytes of float32), inside one ``tf.function`` as training issues them:

- **allgather** of ``n / p`` bytes per rank: the all-gather half of a ring allreduce, a pure transfer of
  ``(p - 1) / p x n`` bytes per rank (no arithmetic), from which the link's latency and bandwidth are fitted;
- **allreduce** (sum) of ``n`` bytes: what one fused buffer of Horovod's tensor fusion costs, transfer and the
  reduction both; the difference from twice the all-gather is the reduction's cost.

With ``--workload`` (its model built for ``--config``, a run's resolved configuration, as
:func:`hpcai_tf.scaling.backward_probe.training_pass` builds it), the workload's gradient tensors are allreduced
(average) together, one op per tensor, as Horovod's Keras optimizer issues them: the communication one step pays
with every gradient ready, fusion and Horovod's cycle included. Then the workload's forward and backward pass on a
batch of ``--batch`` random inputs, on every rank at once: alone, and with each gradient's allreduce issued as the
pass produces it, in one ``tf.function``. What the second takes beyond the first is what the backward pass does
not hide of its allreduces on this node (on a CPU node both need its cores). No optimizer, data pipeline or
Keras loop runs: this is not a training run.

Each figure is the median over ``--repeats`` timed calls (after two untimed ones) of the slowest rank's time; a
tiny allreduce starts every call (a barrier), so the ranks enter together. The pass alone and with its allreduces
alternate, and the second is the first plus the median difference within a turn. Rank 0 prints ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from hpcai_tf.scaling.backward_probe import FLOAT32, RESULT, drain, training_pass


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="collective_probe")
    parser.add_argument("--sizes", required=True, help="message sizes in bytes, comma-separated")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workload", choices=("resnet50", "gw", "des"))
    parser.add_argument("--config", type=Path, help="JSON: the run's resolved configuration (with --workload)")
    parser.add_argument("--batch", type=int, help="samples per rank of the forward and backward pass")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    from hpcai_tf.train.tf_environment import import_tensorflow

    tf = import_tensorflow()
    import horovod.tensorflow as hvd

    hvd.init()
    ranks = hvd.size()

    def once(fn, inputs) -> float:
        """The slowest rank's seconds for one call of ``fn(inputs)``, the ranks entering together."""
        hvd.allreduce(tf.constant(0.0), op=hvd.Sum, name="hpcai.probe.barrier").numpy()
        start = time.perf_counter()
        drain(fn(inputs))
        elapsed = time.perf_counter() - start
        return float(hvd.allreduce(tf.constant(elapsed, tf.float64), op=hvd.Max).numpy())

    def timed(fn, inputs) -> float:
        """Median over repeats of :func:`once` (after two untimed calls)."""
        for _ in range(2):
            drain(fn(inputs))
        return statistics.median(once(fn, inputs) for _ in range(args.repeats))

    def timed_pair(first, second, inputs) -> tuple[float, float]:
        """``first`` and ``second`` called in turn, twice ``repeats`` times each: the median of ``first`` and
        that plus the median of the differences within each turn. A core that slows down for a while slows
        both calls of a turn, so the difference keeps its sign where two separate medians would not."""
        for _ in range(2):
            drain(first(inputs))
            drain(second(inputs))
        turns = [(once(first, inputs), once(second, inputs)) for _ in range(2 * args.repeats)]
        alone = statistics.median(a for a, _ in turns)
        return alone, alone + statistics.median(b - a for a, b in turns)

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
    if args.workload:
        config = json.loads(args.config.read_text(encoding="utf-8"))
        variables, inputs, gradients_of = training_pass(tf, args.workload, config, args.batch)
        tensors = [tf.ones(v.shape, tf.float32) for v in variables]
        step_allreduce = tf.function(lambda xs: [hvd.allreduce(x, op=hvd.Average) for x in xs])
        alone = tf.function(gradients_of)
        beside = tf.function(lambda batch: [hvd.allreduce(g, op=hvd.Average) for g in gradients_of(batch)])
        compute_s, compute_and_allreduce_s = timed_pair(alone, beside, inputs)
        steps[args.workload] = {
            "tensors": len(tensors),
            "bytes": sum(int(t.shape.num_elements()) for t in tensors) * FLOAT32,
            "allreduce_s": timed(step_allreduce, tensors),
            "compute_s": compute_s,
            "compute_and_allreduce_s": compute_and_allreduce_s,
        }
    if hvd.rank() == 0:
        print(RESULT + json.dumps({"ranks": ranks, "points": points, "gradients": steps}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
