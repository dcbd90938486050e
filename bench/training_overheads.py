"""Two ratios of the kit's training, measured side by side in one run on the AI-GW smoke workload.

    .venv/bin/python bench/training_overheads.py

1. Input pipeline against training step: the kit's ``tf.data`` pipeline over an HDF5 file of waveforms, iterated
   alone, against training steps on batches already in memory. The ratio says how many times faster data
   arrives than it is consumed (above 1: the pipeline is not the bottleneck).
2. The kit's training loop against a plain ``model.fit``: ``hpcai train gw --ranks 1`` against one ``model.fit``
   call doing the same work: the same model, loss, metrics, optimizer class (legacy Keras Adam), batches (the
   kit's own per-epoch datasets over the same file) and thread counts, in one process. What differs is the
   kit's loop: Horovod's optimizer wrapper and metric averaging, the per-step LR and timing callback, the
   preemption check, one ``fit`` call (new data iterator) per epoch. Both sides time training only: the kit's
   ``train_time_s`` (its ``fit`` call, without validation and checkpoint), plain fit's epoch callbacks; the
   first epoch (graph tracing) is left out on both sides. The ratio is kit samples/s over plain fit's.

The machine is shared: another job's threads halve or quarter a run's speed for seconds at a time. The two sides
alternate for ``ROUNDS`` rounds and the ratio is given of the best epochs (the least disturbed) and of the medians.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import bench_env, hpcai, load_average, print_result, results

from hpcai_tf.train.metrics_log import METRICS_FILE, read_records

EPOCHS = 6
ROUNDS = 2
WAVEFORMS = 960


def _context(data: Path, run_dir: Path):
    from hpcai_tf.train.backend_horovod import init_horovod
    from hpcai_tf.train.config import resolve_config
    from hpcai_tf.train.workloads.base import RunContext

    config = resolve_config("gw", smoke=True, overrides={"epochs": EPOCHS})
    ranks = init_horovod(deterministic=False, timeline=None, seed=config["seed"])
    return RunContext(config=config, ranks=ranks, run_dir=run_dir, data_path=data, smoke=True)


def _compiled_model(context, prepared):
    import tensorflow as tf

    from hpcai_tf.train.workloads import get_workload

    workload = get_workload("gw")
    model = workload.build_model(context, prepared)
    loss, metrics = workload.loss_and_metrics(context, prepared)
    optimizer = tf.keras.optimizers.legacy.Adam(context.config["optimizer"]["lr"])  # the kit's, without Horovod
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    return model


def pipeline_vs_step(data: Path, run_dir: Path) -> tuple[float, float]:
    """(pipeline samples/s, training-step samples/s) on one process."""
    from hpcai_tf.train.workloads import get_workload

    context = _context(data, run_dir)
    prepared = get_workload("gw").prepare_data(context)
    batches = 0
    start = time.perf_counter()
    for epoch in range(2):
        for _ in prepared.train(epoch, 0):
            batches += 1
    pipeline = batches * prepared.batch / (time.perf_counter() - start)

    model = _compiled_model(context, prepared)
    in_memory = list(prepared.train(0, 0))
    model.train_on_batch(*in_memory[0])  # trace once
    start = time.perf_counter()
    for _ in range(2):
        for x, y in in_memory:
            model.train_on_batch(x, y)
    step = 2 * len(in_memory) * prepared.batch / (time.perf_counter() - start)
    return pipeline, step


def plain_fit(data: Path, run_dir: Path) -> dict:
    """Seconds of each epoch after the first of one plain ``model.fit`` over the kit's per-epoch datasets."""
    import tensorflow as tf

    from hpcai_tf.train.workloads import get_workload

    context = _context(data, run_dir)
    prepared = get_workload("gw").prepare_data(context)
    model = _compiled_model(context, prepared)
    dataset = prepared.train(0, 0)
    for epoch in range(1, EPOCHS):
        dataset = dataset.concatenate(prepared.train(epoch, 0))
    seconds: list[float] = []

    class EpochTimes(tf.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.start)

    model.fit(dataset, epochs=EPOCHS, steps_per_epoch=prepared.steps_per_epoch, verbose=0, callbacks=[EpochTimes()])
    threads = [
        tf.config.threading.get_intra_op_parallelism_threads(),
        tf.config.threading.get_inter_op_parallelism_threads(),
    ]
    return {"seconds": seconds[1:], "samples": prepared.steps_per_epoch * prepared.batch, "threads": threads}


def kit_loop(data: Path, run_dir: Path) -> dict:
    """Training seconds of each epoch after the first of ``hpcai train gw --ranks 1``."""
    hpcai(
        "train",
        "gw",
        "--ranks",
        "1",
        "--smoke",
        "--data",
        str(data),
        "--epochs",
        str(EPOCHS),
        "--run-dir",
        str(run_dir),
        "--no-tensorboard",
    )
    records = read_records(run_dir / METRICS_FILE)
    epochs = [r for r in records if r["type"] == "epoch"][1:]
    threads = records[0]["threads_per_rank"]
    return {
        "seconds": [e["train_time_s"] for e in epochs],
        "samples": epochs[0]["steps"] * epochs[0]["batch_per_rank"],
        "threads": [threads["intra_op"], threads["inter_op"]],
    }


def main() -> None:
    if len(sys.argv) == 4:  # a worker: one measurement in a fresh process (Horovod initialises once per process)
        what, data, run_dir = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
        print_result(pipeline_vs_step(data, run_dir) if what == "pipeline" else plain_fit(data, run_dir))
        return
    print(f"AI-GW smoke workload, {WAVEFORMS} waveforms, one process; {load_average()} at the start", flush=True)
    plain: list[dict] = []
    kit: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = root / "gw.h5"
        hpcai("data", "gw", "--smoke", "--n", str(WAVEFORMS), "--out", str(data))

        def worker(what: str, run: str) -> object:
            out = subprocess.run(
                [sys.executable, __file__, what, str(data), str(root / run)],
                check=True,
                capture_output=True,
                text=True,
                env=bench_env(),
            )
            return results(out.stdout)[0]

        pipeline, step = worker("pipeline", "pipeline")
        for round_ in range(ROUNDS):
            plain.append(worker("fit", f"fit-{round_}"))
            kit.append(kit_loop(data, root / f"kit-{round_}"))
    if plain[0]["threads"] != kit[0]["threads"] or plain[0]["samples"] != kit[0]["samples"]:
        sys.exit(f"bench: the sides differ: plain fit {plain[0]}, kit {kit[0]}")
    samples = kit[0]["samples"]
    plain_rates = [samples / s for run in plain for s in run["seconds"]]
    kit_rates = [samples / s for run in kit for s in run["seconds"]]
    best_plain, best_kit = max(plain_rates), max(kit_rates)
    median_plain, median_kit = statistics.median(plain_rates), statistics.median(kit_rates)
    intra, inter = kit[0]["threads"]
    print(f"  input pipeline alone:       {pipeline:8.1f} samples/s")
    print(f"  training steps (in memory): {step:8.1f} samples/s")
    print(f"  data arrives {pipeline / step:.2f}x as fast as it is consumed")
    print(
        f"  epochs 2-{EPOCHS} of {ROUNDS} alternating rounds, {samples} samples each, {intra}+{inter} threads:"
        "   best   median"
    )
    print(f"  plain model.fit:            {best_plain:8.1f} {median_plain:8.1f} samples/s")
    print(f"  kit's loop (hpcai train):   {best_kit:8.1f} {median_kit:8.1f} samples/s")
    print(f"  kit / plain fit:            {best_kit / best_plain:8.3f} {median_kit / median_plain:8.3f}")
    for name, runs in (("plain fit", plain), ("kit", kit)):
        shown = " | ".join(" ".join(f"{samples / s:.0f}" for s in run["seconds"]) for run in runs)
        print(f"  {name} samples/s per epoch, by round: {shown}")
    print(f"  {load_average()} at the end")


if __name__ == "__main__":
    main()
