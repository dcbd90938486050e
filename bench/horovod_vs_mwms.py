"""Horovod against tf.distribute.MultiWorkerMirroredStrategy: the same model and data at 2 ranks, side by side.

    .venv/bin/python bench/horovod_vs_mwms.py          # prints throughputs and ratios measured in one run

The model is the AI-GW WaveNet of the smoke preset (built by the kit's model code), the data random waveforms
held in memory (so the input pipeline is not measured here), Keras ``model.fit`` in every case, one intra-op and
one inter-op thread per process (two processes on two cores, not four threads), the same batch per worker and step
count, Open MPI yielding when idle (busy-waiting halves 2 ranks on 2 cores). Each worker reports its
thread counts and idle policy and the driver refuses a run that differs.

One process alone is the baseline; each 2-process setup's efficiency is its throughput over twice the baseline's.
Two independent processes at once (no communication) show what the two cores give to two processes at the time of
the run: the ceiling of the other two. The setups alternate for ``ROUNDS`` rounds and each one's best round counts
(the least disturbed by the other jobs of a shared machine).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

from _common import bench_env, load_average, print_result, results

BATCH = 32
STEPS = 60
WARMUP = 10
ROUNDS = 3
SAMPLES = BATCH * (STEPS + WARMUP) * 2


def _model_and_data(seed: int):
    import numpy as np
    import tensorflow as tf

    from hpcai_tf.scaling.model_size import _build
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


def _settings() -> dict:
    """What the driver checks: the thread counts TensorFlow used and Open MPI's idle policy."""
    import tensorflow as tf

    threads = [
        tf.config.threading.get_intra_op_parallelism_threads(),
        tf.config.threading.get_inter_op_parallelism_threads(),
    ]
    return {"threads": threads, "yield_when_idle": os.environ.get("OMPI_MCA_mpi_yield_when_idle")}


def worker_single() -> dict:
    """One process, no distribution."""
    import tensorflow as tf

    _threads()
    model, data = _model_and_data(0)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), loss="mse")
    timer = _timer()
    model.fit(data.batch(BATCH).repeat(), steps_per_epoch=STEPS + WARMUP, epochs=1, verbose=0, callbacks=[timer])
    return {"samples_per_sec": STEPS * BATCH / timer.seconds, **_settings()}


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
    return {"rank": hvd.rank(), "samples_per_sec": hvd.size() * STEPS * BATCH / timer.seconds, **_settings()}


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
    # No sharding: every worker reads the same data; Keras rebatches the global batch, BATCH per worker and step.
    data = data.batch(BATCH * workers).repeat().with_options(options)
    timer = _timer()
    model.fit(data, steps_per_epoch=STEPS + WARMUP, epochs=1, verbose=0, callbacks=[timer])
    return {"rank": index, "samples_per_sec": workers * STEPS * BATCH / timer.seconds, **_settings()}


def _checked(found: list[dict], setup: str, mpi: bool = False) -> float:
    """The slowest worker's samples/s, after checking that every worker ran with 1+1 threads (and yielding MPI)."""
    for result in found:
        if result["threads"] != [1, 1] or (mpi and result["yield_when_idle"] != "1"):
            sys.exit(f"bench: {setup} ran with {result}, expected 1+1 threads and OMPI_MCA_mpi_yield_when_idle=1")
    return min(r["samples_per_sec"] for r in found)


def run_single() -> float:
    out = subprocess.run(
        [sys.executable, __file__, "single"], capture_output=True, text=True, env=bench_env(), check=True
    )
    return _checked(results(out.stdout), "1 process")


def _concurrent(commands: list[tuple[list[str], dict[str, str]]], setup: str) -> list[dict]:
    procs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for command, env in commands
    ]
    found = []
    for proc in procs:
        out, err = proc.communicate(timeout=900)
        if proc.returncode:
            last = err.strip().splitlines()[-1] if err.strip() else f"status {proc.returncode}"
            sys.exit(f"bench: {setup} worker failed: {last}")
        found += results(out)
    return found


def run_independent() -> float:
    """Two single processes at once: what the 2 cores give without any communication (sum of both)."""
    found = _concurrent([([sys.executable, __file__, "single"], bench_env())] * 2, "independent")
    _checked(found, "2 independent processes")
    return sum(r["samples_per_sec"] for r in found)


def run_horovod() -> float:
    from hpcai_tf.train.mpirun_line import in_allocation, mpirun_line

    env = bench_env()
    forward = ["TF_CPP_MIN_LOG_LEVEL", "PYTHONPATH", "OMPI_MCA_mpi_yield_when_idle"]
    command = mpirun_line(2, allocated=in_allocation(env), forward=forward).argv([sys.executable, __file__, "horovod"])
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return _checked(results(out.stdout), "Horovod", mpi=True)


def run_mwms() -> float:
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    commands = []
    for index in range(2):
        config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        commands.append(([sys.executable, __file__, "mwms"], bench_env(TF_CONFIG=config)))
    return _checked(_concurrent(commands, "MWMS"), "MWMS")


SETUPS = {
    "1 process": run_single,
    "2 independent processes": run_independent,
    "Horovod, 2 ranks": run_horovod,
    "MWMS, 2 workers": run_mwms,
}


def main() -> None:
    if len(sys.argv) > 1:
        worker = {"single": worker_single, "horovod": worker_horovod, "mwms": worker_mwms}[sys.argv[1]]
        print_result(worker())
        return
    print(
        f"Horovod vs MultiWorkerMirroredStrategy: AI-GW WaveNet (smoke), batch {BATCH} per worker, "
        f"{STEPS} timed steps, 1+1 threads per process; {load_average()} at the start",
        flush=True,
    )
    rates: dict[str, list[float]] = {name: [] for name in SETUPS}
    for _ in range(ROUNDS):  # alternate, so that a burst of other load does not hit one setup only
        for name, run in SETUPS.items():
            rates[name].append(run())
    best = {name: max(found) for name, found in rates.items()}
    single = best["1 process"]
    width = 8 * ROUNDS
    print(f"  {'setup':<26} {'samples/s per round':>{width}} {'best':>8}  efficiency (best / 2 x best 1 process)")
    for name, found in rates.items():
        shown = "".join(f"{rate:8.1f}" for rate in found)
        efficiency = "" if name == "1 process" else f"{best[name] / (2 * single):.3f}"
        print(f"  {name:<26} {shown:>{width}} {best[name]:8.1f}  {efficiency}")
    print(f"  Horovod / MWMS throughput ratio: {best['Horovod, 2 ranks'] / best['MWMS, 2 workers']:.3f}")
    print(f"  {load_average()} at the end")


if __name__ == "__main__":
    main()
