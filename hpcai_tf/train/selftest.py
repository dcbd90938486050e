"""The in-image half of ``hpcai verify``: ``python -m hpcai_tf.train.selftest CHECK`` inside a built image.

It imports nothing from the host side of the kit (catalog, recipes, build, launch): only the standard
library, the stack's packages and :mod:`hpcai_tf.train.image_contract`, and reads the image's own provenance file
(``$HPCAI_PROVENANCE``). Each process prints one line ``HPCAI-SELFTEST {json}`` per check, with ``"ok"``, and
exits non-zero when its check failed; the host parses those lines.

Checks:
  versions   Python and each package of the stack answer with the image's pins.
  allreduce  under mpirun: Horovod's allreduce of (rank + 1) sums to size(size + 1)/2 on every rank,
             and a broadcast from rank 0 reaches every rank.
  train      under mpirun: a tiny Keras model trains with Horovod's DistributedOptimizer; the loss
             falls and every rank ends with bit-identical weights.
  gpu        GPUs are visible to TensorFlow and Horovod has NCCL built in (GPU sites only; no GPU on
             the kit's own machine, so this check has not run there).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import platform
import sys
from importlib import metadata

from hpcai_tf.train.image_contract import IMAGE_PATHS, PROVENANCE_VARIABLE, STACK_PACKAGES

MARK = "HPCAI-SELFTEST"


def emit(record: dict) -> None:
    """Print one result line for the host to parse."""
    sys.stdout.write(f"{MARK} {json.dumps(record, sort_keys=True)}\n")  # one write: ranks share the pipe
    sys.stdout.flush()


def _pinned_stack() -> dict:
    path = os.environ.get(PROVENANCE_VARIABLE, IMAGE_PATHS.provenance)
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)["stack"]


def _matches(got: str, want: str) -> bool:
    """True when ``got`` is the pin ``want`` or a release of it (a pin ``3.10`` accepts ``3.10.12``)."""
    return (got + ".").startswith(want + ".")


def check_versions() -> bool:
    """The stack inside the image answers with the pins in its provenance."""
    stack = _pinned_stack()
    got = {"python": platform.python_version()}
    got |= {name: importlib.import_module(name).__version__ for name in STACK_PACKAGES}
    got["tensorflow_package"] = metadata.version(stack["tensorflow_package"])
    want = {name: stack["tensorflow" if name == "tensorflow_package" else name] for name in got}
    wrong = sorted(name for name in got if not _matches(got[name], want[name]))
    keras = keras_api(importlib.import_module("tensorflow"))
    if keras != expected_keras_api(stack):
        wrong.append("keras")
    got["keras"], want["keras"] = keras, expected_keras_api(stack)
    emit({"check": "versions", "got": got, "want": want, "mismatches": wrong, "ok": not wrong})
    return not wrong


def keras_api(tf) -> str:
    """What ``tf.keras`` really is: ``tf-keras <version>``, ``keras <version>`` (built-in Keras 2, or Keras 3)."""
    name = "tf-keras" if tf.keras.layers.Dense.__module__.startswith("tf_keras.") else "keras"
    version = getattr(tf.keras, "__version__", None) or metadata.version(name)
    return f"{name} {version}"


def expected_keras_api(stack: dict) -> str:
    """``tf.keras`` as the site's ``stack.keras`` says: tf-keras of the TensorFlow release, or Keras 2 of TF <= 2.15
    (``keras 2.<tf minor>``)."""
    major_minor = ".".join(stack["tensorflow"].split(".")[:2])
    if stack["keras"] == "tf-keras":
        return f"tf-keras {stack['tensorflow']}"
    return f"keras {major_minor}.0"


def _one_thread(tf) -> None:
    """One TensorFlow thread per rank: ranks share the node's cores."""
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def check_allreduce() -> bool:
    """Sum of (rank + 1) over all ranks, and a broadcast from rank 0, on every rank."""
    import horovod.tensorflow as hvd
    import numpy as np
    import tensorflow as tf

    _one_thread(tf)
    hvd.init()
    rank, size = hvd.rank(), hvd.size()
    total = hvd.allreduce(tf.fill([8], float(rank + 1)), op=hvd.Sum).numpy()
    expected = size * (size + 1) / 2
    root = int(hvd.broadcast(tf.constant(100 + rank), root_rank=0).numpy())
    ok = bool(np.all(total == expected)) and root == 100
    emit(
        {
            "check": "allreduce",
            "rank": rank,
            "size": size,
            "sum": float(total[0]),
            "expected": expected,
            "broadcast": root,
            "ok": ok,
        }
    )
    return ok


def _weights_digest(model) -> str:
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(weight.tobytes())
    return digest.hexdigest()


def check_train(steps: int) -> bool:
    """A tiny regression model trains for 2 epochs of ``steps`` steps under Horovod."""
    import horovod.tensorflow as hvd_core
    import horovod.tensorflow.keras as hvd
    import numpy as np
    import tensorflow as tf

    _one_thread(tf)
    hvd.init()
    rank, size = hvd.rank(), hvd.size()
    tf.random.set_seed(rank)  # different initial weights per rank: the broadcast must make them agree
    rng = np.random.default_rng(1000 + rank)  # each rank its own shard of the data
    batch = 32
    x = rng.normal(size=(batch * steps, 16)).astype("float32")
    y = x @ np.linspace(-1.0, 1.0, 16, dtype="float32")[:, None] + 0.5
    model = tf.keras.Sequential(
        [tf.keras.Input(shape=(16,)), tf.keras.layers.Dense(32, activation="relu"), tf.keras.layers.Dense(1)]
    )
    optimizer = hvd.DistributedOptimizer(tf.keras.optimizers.SGD(learning_rate=0.01 * size))
    model.compile(loss="mse", optimizer=optimizer)
    history = model.fit(
        x,
        y,
        batch_size=batch,
        epochs=2,
        steps_per_epoch=steps,
        callbacks=[hvd.callbacks.BroadcastGlobalVariablesCallback(0)],
        verbose=0,
    )
    losses = [float(v) for v in history.history["loss"]]
    digests = hvd_core.allgather_object(_weights_digest(model))
    agree = len(set(digests)) == 1
    falls = all(np.isfinite(losses)) and losses[-1] < losses[0]
    ok = agree and falls
    emit(
        {
            "check": "train",
            "rank": rank,
            "size": size,
            "steps": 2 * steps,
            "loss": losses,
            "weights_agree": agree,
            "ok": ok,
        }
    )
    return ok


def check_gpu() -> bool:
    """GPUs visible to TensorFlow and NCCL built into Horovod."""
    import horovod.tensorflow as hvd
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    nccl = bool(hvd.nccl_built())
    ok = bool(gpus) and nccl
    emit({"check": "gpu", "gpus": len(gpus), "nccl_built": nccl, "cuda_built": tf.test.is_built_with_cuda(), "ok": ok})
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hpcai_tf.train.selftest", description=__doc__.split("\n\n")[0], allow_abbrev=False
    )
    sub = parser.add_subparsers(dest="check", required=True)
    sub.add_parser("versions", help="the stack answers with the image's pins")
    sub.add_parser("allreduce", help="Horovod allreduce and broadcast (run under mpirun)")
    train = sub.add_parser("train", help="a tiny model trains under Horovod (run under mpirun)")
    train.add_argument("--steps", type=int, default=5, help="steps per epoch (2 epochs)")
    sub.add_parser("gpu", help="GPUs visible and NCCL built")
    args = parser.parse_args(argv)
    try:
        if args.check == "train":
            ok = check_train(args.steps)
        else:
            ok = {"versions": check_versions, "allreduce": check_allreduce, "gpu": check_gpu}[args.check]()
    except Exception as err:  # report, in the one format the host parses, why the check could not run
        emit({"check": args.check, "error": f"{type(err).__name__}: {err}"[:500], "ok": False})
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
