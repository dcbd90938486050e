"""Horovod against tf.distribute.MultiWorkerMirroredStrategy: the same model and data at 2 ranks, side by side.

    .venv/bin/python bench/horovod_vs_mwms.py          # prints throughputs and ratios measured in one run

The model is the AI-GW WaveNet of the smoke preset (built by the kit's model code), the data random waveforms
held in memory (so the input pipeline is not measured here), Keras ``model.fit`` in both cases, one intra-op
thread per process, the same batch per worker and step count. One process alone is the baseline; each 2-rank
setup's efficiency is its throughput over twice the baseline's.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

BATCH = 32
STEPS = 60
WARMUP = 10
SAMPLES = BATCH * (STEPS + WARMUP) * 2


def _model_and_data(seed: int):
    import numpy as np
    import tensorflow as tf

    from hpcai_tf.model_size import _build
    from hpcai_tf.train.config import resolve_config

    config = resolve_config("gw", smoke=True)
    model = _build("gw", config)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((SAMPLES, config["data"]["length"], 2)).astype("float32")
    y = rng.uniform(-1, 1, (SAMPLES, 3)).astype("float32")
    return model, tf.data.Dataset.from_tensor_slices((x, y))


def _timer():
    """A Keras callback that times the batches after the warm-up ones (``.seconds`` after training)."""
    import tensorflow as tf

    class Timer(tf.keras.callbacks.Callback):
        start = seconds = 0.0

        def on_train_batch_begin(self, batch, logs=None):
            if batch == WARMUP:
                self.start = time.perf_counter()

        def on_train_end(self, logs=None):
            self.seconds = time.perf_counter() - self.start

    return Timer()


def _threads() -> None:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def worker_single() -> dict:
    """One process, no distribution."""
    import tensorflow as tf

    _threads()
    model, data = _model_and_data(0)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), loss="mse")
    timer = _timer()
    model.fit(data.batch(BATCH).repeat(), steps_per_epoch=STEPS + WARMUP, epochs=1, verbose=0, callbacks=[timer])
    return {"samples_per_sec": STEPS * BATCH / timer.seconds}


def worker_horovod() -> dict:
    """One rank of a Horovod job (under mpirun)."""
    import horovod.tensorflow.keras as hvd
    import tensorflow as tf

    hvd.init()
    _threads()
    model, data = _model_and_data(hvd.rank())
    optimizer = hvd.DistributedOptimizer(tf.keras.optimizers.Adam(1e-3 * hvd.size()))
    model.compile(optimizer=optimizer, loss="mse")
    timer = _timer()
    callbacks = [hvd.callbacks.BroadcastGlobalVariablesCallback(0), timer]
    model.fit(data.batch(BATCH).repeat(), steps_per_epoch=STEPS + WARMUP, epochs=1, verbose=0, callbacks=callbacks)
    return {"rank": hvd.rank(), "samples_per_sec": hvd.size() * STEPS * BATCH / timer.seconds}


def worker_mwms() -> dict:
    """One worker of a MultiWorkerMirroredStrategy job (TF_CONFIG set by the driver)."""
    import tensorflow as tf

    _threads()
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    workers = strategy.num_replicas_in_sync
    index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    built, data = _model_and_data(index)  # the kit's builder clears the Keras session: build outside the scope
    with strategy.scope():
        model = tf.keras.Model.from_config(built.get_config())
        model.compile(optimizer=tf.keras.optimizers.Adam(1e-3 * workers), loss="mse")
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    data = data.batch(BATCH * workers).repeat().with_options(options)
    timer = _timer()
    model.fit(data, steps_per_epoch=STEPS + WARMUP, epochs=1, verbose=0, callbacks=[timer])
    return {"rank": index, "samples_per_sec": workers * STEPS * BATCH / timer.seconds}


def _env() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMPI_ALLOW_RUN_AS_ROOT": "1",
            "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OMPI_MCA_mpi_yield_when_idle": "1"}


def _results(outputs: list[str]) -> list[dict]:
    return [json.loads(line[len("RESULT "):]) for out in outputs for line in out.splitlines()
            if line.startswith("RESULT ")]


def run_single() -> float:
    out = subprocess.run([sys.executable, __file__, "single"], capture_output=True, text=True, env=_env(), check=True)
    return _results([out.stdout])[0]["samples_per_sec"]


def run_horovod() -> float:
    command = ["mpirun", "-np", "2", "--bind-to", "none", "-x", "TF_CPP_MIN_LOG_LEVEL", "-x", "PYTHONPATH",
               sys.executable, __file__, "horovod"]
    out = subprocess.run(command, capture_output=True, text=True, env=_env(), check=True)
    return min(r["samples_per_sec"] for r in _results([out.stdout]))


def run_mwms() -> float:
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        env = {**_env(), "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        procs.append(subprocess.Popen([sys.executable, __file__, "mwms"], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, env=env))
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=900)
        if proc.returncode:
            raise SystemExit(f"mwms worker failed: {err[-2000:]}")
        outputs.append(out)
    return min(r["samples_per_sec"] for r in _results(outputs))


def main() -> None:
    if len(sys.argv) > 1:
        worker = {"single": worker_single, "horovod": worker_horovod, "mwms": worker_mwms}[sys.argv[1]]
        print("RESULT " + json.dumps(worker()), flush=True)
        return
    single = run_single()
    horovod = run_horovod()
    mwms = run_mwms()
    print(f"Horovod vs MultiWorkerMirroredStrategy: AI-GW WaveNet (smoke), batch {BATCH} per worker, "
          f"{STEPS} timed steps, 1 thread per process")
    print(f"  1 process:        {single:9.1f} samples/s")
    print(f"  Horovod, 2 ranks: {horovod:9.1f} samples/s  efficiency {horovod / (2 * single):.3f}")
    print(f"  MWMS, 2 workers:  {mwms:9.1f} samples/s  efficiency {mwms / (2 * single):.3f}")
    print(f"  Horovod / MWMS throughput ratio: {horovod / mwms:.3f}")


if __name__ == "__main__":
    main()
