"""The compute side of ``hpcai calibrate``: when in one training step each gradient becomes ready, on one rank.

    mpirun -np 1 python -m hpcai_tf.scaling.backward_probe WORKLOAD --config FILE --batch N [--steps 8]

Builds the workload's Keras model for a run's resolved configuration (``FILE``: the ``config`` of its provenance
record), as training builds it, and runs forward and backward passes on a batch of random inputs of the model's
input shape in one ``tf.function``, each gradient followed by its Horovod allreduce, as Horovod's Keras optimizer
issues them in a multi-rank step. On one rank the allreduce moves nothing, but Horovod still enqueues it when the
gradient exists (TensorFlow's executor runs the op then): a Horovod timeline recorded over the timed steps gives
each gradient's enqueue time (the start of its negotiation), the moment a multi-rank step could begin to send it.
The loss is the mean square of the outputs plus the model's own losses (weight decay): the backward pass through
the network is the training's, only its first operation differs.

Prints ``RESULT {json}``: ``step_s``, the median seconds of one call (forward, backward, the one-rank allreduces)
over ``--steps`` timed calls (after two untimed); and ``gradients``, per trainable variable in the model's order,
``[bytes, ready]``: the median over the calls of (enqueued - call start) / (call end - call start); and
``merged``, the number of gradients with no allreduce of their own (TensorFlow merges the allreduces of identical
gradients into one, in training too; they are left out of ``gradients``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

RESULT = "RESULT "
"""The prefix of a probe's one result line (this probe's and :mod:`~hpcai_tf.scaling.collective_probe`'s)."""
FLOAT32 = 4


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="backward_probe")
    parser.add_argument("workload", choices=("resnet50", "gw", "des"))
    parser.add_argument("--config", type=Path, required=True, help="JSON: the run's resolved configuration")
    parser.add_argument("--batch", type=int, required=True, help="samples per step (one rank's batch)")
    parser.add_argument("--steps", type=int, default=8, help="timed steps (default 8)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    from hpcai_tf.train.tf_environment import import_tensorflow

    tf = import_tensorflow()
    import horovod.tensorflow as hvd

    os.environ["HOROVOD_TIMELINE"] = "DYNAMIC"  # recorded only over the timed steps (start_timeline below)
    hvd.init()
    config = json.loads(args.config.read_text(encoding="utf-8"))
    variables, inputs, gradients_of = training_pass(tf, args.workload, config, args.batch)

    @tf.function
    def step(batch):
        return [hvd.allreduce(g, op=hvd.Average, name=f"{TENSOR}{i}") for i, g in enumerate(gradients_of(batch))]

    for _ in range(2):
        drain(step(inputs))
    calls = []
    with tempfile.TemporaryDirectory(prefix="hpcai-backward-probe-") as tmp:
        timeline = Path(tmp) / "timeline.json"
        hvd.start_timeline(str(timeline))
        for _ in range(args.steps):
            start = time.time()
            drain(step(inputs))
            calls.append((start * 1e6, time.time() * 1e6))
        hvd.stop_timeline()
        enqueued = enqueue_times(timeline.read_text(encoding="utf-8"))
    shares: list[list[float]] = [[] for _ in variables]
    for start, end in calls:
        for index, times in enqueued.items():
            inside = [t for t in times if start <= t <= end]
            if inside and index < len(shares):
                shares[index].append((inside[0] - start) / (end - start))
    if not any(shares):
        raise SystemExit("backward_probe: the timeline has no allreduce of any gradient in the timed steps")
    # A gradient with no allreduce of its own is one TensorFlow merged with another's (identical gradients, e.g.
    # the biases of AI-GW's skip convolutions): training does the same, so it is left out.
    result = {
        "step_s": statistics.median((end - start) / 1e6 for start, end in calls),
        "gradients": [
            [int(v.shape.num_elements()) * FLOAT32, round(statistics.median(found), 6)]
            for v, found in zip(variables, shares, strict=True)
            if found
        ],
        "merged": sum(1 for found in shares if not found),
    }
    print(RESULT + json.dumps(result), flush=True)
    return 0


def training_pass(tf, workload: str, config: dict, batch: int):
    """The workload's model for ``config`` (a run's resolved configuration) as training builds it: (its trainable
    variables, a batch of ``batch`` random inputs of its input shape, a function of such a batch returning the
    gradients of one forward and backward pass). The loss is the mean square of the outputs plus the model's own
    losses (weight decay): the backward pass through the network is the training's."""
    from hpcai_tf.scaling.model_size import build_model

    model = build_model(workload, config)
    variables = model.trainable_variables
    inputs = [
        tf.random.uniform([batch, *[int(d) for d in spec.shape[1:]]], seed=index)
        for index, spec in enumerate(model.inputs)
    ]

    def gradients_of(batch_inputs):
        with tf.GradientTape() as tape:
            outputs = model(batch_inputs if len(batch_inputs) > 1 else batch_inputs[0], training=True)
            outputs = outputs if isinstance(outputs, list | tuple) else [outputs]
            squares = [tf.reduce_mean(tf.square(tf.cast(y, tf.float32))) for y in outputs]
            loss = tf.add_n(squares + model.losses)
        return tape.gradient(loss, variables)

    return variables, inputs, gradients_of


TENSOR = "hpcai.ready."
"""The name of gradient i's allreduce (and of its timeline row) is ``TENSOR`` + i."""


def enqueue_times(text: str) -> dict[int, list[float]]:
    """Gradient index -> the microseconds since the epoch at which each of its allreduces was enqueued (the start
    of its negotiation), from a Horovod timeline's text (a JSON array that Horovod may leave unterminated)."""
    body = text.strip().rstrip(",")
    events = json.loads(body if body.endswith("]") else body + "]")
    origin = next(
        e["args"]["start_time_since_epoch_in_micros"]
        for e in events
        if "start_time_since_epoch_in_micros" in e.get("args", {})
    )
    rows = {
        e["pid"]: int(e["args"]["name"].rsplit(TENSOR, 1)[1])
        for e in events
        if e.get("ph") == "M" and TENSOR in str(e.get("args", {}).get("name", ""))
    }
    found: dict[int, list[float]] = {index: [] for index in rows.values()}
    for e in events:
        if e.get("ph") == "B" and e.get("name") == "NEGOTIATE_ALLREDUCE" and e.get("pid") in rows:
            found[rows[e["pid"]]].append(origin + float(e["ts"]))
    return found


def drain(result) -> None:
    """Wait for an operation's result (a tensor, or lists of them) to exist on this rank (copy it to the host)."""
    for tensor in result if isinstance(result, list) else [result]:
        if isinstance(tensor, list):
            drain(tensor)
        else:
            tensor.numpy()


if __name__ == "__main__":
    sys.exit(main())
