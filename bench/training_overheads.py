"""Two ratios of the kit's training, measured side by side in one run on the AI-GW smoke workload.

    .venv/bin/python bench/training_overheads.py

1. Input pipeline against training step: the kit's ``tf.data`` pipeline over an HDF5 file of waveforms, iterated
   alone, against training steps on batches already in memory. The ratio says how many times faster data
   arrives than it is consumed (above 1: the pipeline is not the bottleneck).
2. The kit's training loop against a plain ``model.fit``: ``hpcai train gw --ranks 1`` (Horovod, callbacks,
   checkpoints, metrics) against ``model.fit`` of the same model, loss, optimizer, batch and data in one
   process. The ratio is the kit's samples/s over plain fit's (below 1: the kit's overhead).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EPOCHS = 4
WAVEFORMS = 960


def _hpcai(*args: str) -> None:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMPI_ALLOW_RUN_AS_ROOT": "1",
           "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OMPI_MCA_mpi_yield_when_idle": "1"}
    subprocess.run([sys.executable, "-m", "hpcai_tf", *args], check=True, env=env, stdout=subprocess.DEVNULL)


def _context(data: Path, run_dir: Path):
    from hpcai_tf.train.config import resolve_config
    from hpcai_tf.train.distributed import init_horovod
    from hpcai_tf.train.workloads.base import RunContext

    config = resolve_config("gw", smoke=True, overrides={"epochs": EPOCHS})
    ranks = init_horovod(deterministic=False, timeline=None, seed=config["seed"])
    return RunContext(config=config, ranks=ranks, run_dir=run_dir, data_path=data, smoke=True)


def pipeline_vs_step(data: Path, run_dir: Path) -> tuple[float, float]:
    """(pipeline samples/s, training-step samples/s) on one process."""
    import tensorflow as tf

    from hpcai_tf.train.workloads import get_workload

    context = _context(data, run_dir)
    workload = get_workload("gw")
    prepared = workload.prepare_data(context)
    batches = 0
    start = time.perf_counter()
    for epoch in range(2):
        for _ in prepared.train(epoch, 0):
            batches += 1
    pipeline = batches * prepared.batch / (time.perf_counter() - start)

    model = workload.build_model(context, prepared)
    loss, metrics = workload.loss_and_metrics(context, prepared)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), loss=loss, metrics=metrics)
    in_memory = list(prepared.train(0, 0))
    model.train_on_batch(*in_memory[0])  # trace once
    start = time.perf_counter()
    for _ in range(2):
        for x, y in in_memory:
            model.train_on_batch(x, y)
    step = 2 * len(in_memory) * prepared.batch / (time.perf_counter() - start)
    return pipeline, step


def plain_fit(data: Path, run_dir: Path) -> float:
    """samples/s of plain ``model.fit`` on the same model, loss, batch and data (epochs after the first)."""
    import h5py
    import numpy as np
    import tensorflow as tf

    from hpcai_tf.train.workloads import get_workload

    context = _context(data, run_dir)
    workload = get_workload("gw")
    prepared = workload.prepare_data(context)
    model = workload.build_model(context, prepared)
    loss, metrics = workload.loss_and_metrics(context, prepared)
    lr = context.config["optimizer"]["lr"]
    model.compile(optimizer=tf.keras.optimizers.Adam(lr), loss=loss, metrics=metrics)
    n_train = prepared.description["train_samples"]
    with h5py.File(data, "r") as handle:  # the layout `hpcai data gw` writes (docs/workloads.md)
        x = np.asarray(handle["waveforms"][:n_train], dtype="float32")
        y = np.asarray(handle["labels"][:n_train], dtype="float32")
    times: list[float] = []

    class EpochTimes(tf.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    steps = prepared.steps_per_epoch
    model.fit(x, y, batch_size=prepared.batch, epochs=EPOCHS, steps_per_epoch=steps, shuffle=True, verbose=0,
              callbacks=[EpochTimes()])
    return steps * prepared.batch / (sum(times[1:]) / len(times[1:]))


def kit_loop(data: Path, run_dir: Path) -> float:
    """samples/s of ``hpcai train gw --ranks 1`` (mean over the epochs after the first)."""
    _hpcai("train", "gw", "--ranks", "1", "--smoke", "--data", str(data), "--epochs", str(EPOCHS),
           "--run-dir", str(run_dir), "--no-tensorboard")
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rates = [r["global_samples_per_sec"] for r in records if r["type"] == "epoch"][1:]
    return sum(rates) / len(rates)


def main() -> None:
    if len(sys.argv) == 4:  # a worker: one measurement in a fresh process (Horovod initialises once per process)
        what, data, run_dir = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
        result = pipeline_vs_step(data, run_dir) if what == "pipeline" else plain_fit(data, run_dir)
        print("RESULT " + json.dumps(result))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = root / "gw.h5"
        _hpcai("data", "gw", "--smoke", "--n", str(WAVEFORMS), "--out", str(data))

        def worker(what: str) -> object:
            out = subprocess.run([sys.executable, __file__, what, str(data), str(root / what)], check=True,
                                 capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
            return json.loads(next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))[7:])

        pipeline, step = worker("pipeline")
        plain = worker("fit")
        kit = kit_loop(data, root / "kit")
    print(f"AI-GW smoke workload, {WAVEFORMS} waveforms, {EPOCHS} epochs, one process")
    print(f"  input pipeline alone:      {pipeline:9.1f} samples/s")
    print(f"  training steps (in memory): {step:8.1f} samples/s")
    print(f"  data arrives {pipeline / step:.2f}x as fast as it is consumed")
    print(f"  plain model.fit:           {plain:9.1f} samples/s")
    print(f"  kit's loop (hpcai train):  {kit:9.1f} samples/s")
    print(f"  kit / plain fit: {kit / plain:.3f}")


if __name__ == "__main__":
    main()
