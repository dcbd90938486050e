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
  cuda-build what TensorFlow was compiled against (``tf.sysconfig.get_build_info()``); the host judges it against
             the pins (GPU sites).
  cuda-libs  the CUDA runtime, cuDNN and NCCL load by soname through the dynamic loader (ctypes) and report the
             image's pins (GPU sites; no GPU needed).
  gpu        on a host with GPUs: TensorFlow sees them, training steps run on the first, and an allreduce across
             all of them goes through NCCL (TensorFlow's NcclAllReduce).
  gpu-allreduce
             under mpirun, one rank per GPU: Horovod's allreduce of a tensor on each rank's GPU.

The last two need NVIDIA GPUs; the kit's own machine has none, so they have never run there.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import math
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


def check_cuda_build() -> bool:
    """What TensorFlow was compiled against; the host compares it with the pins and TensorFlow's ``and-cuda`` ranges."""
    import tensorflow as tf

    info = tf.sysconfig.get_build_info()
    cuda_build = bool(info.get("is_cuda_build"))
    emit(
        {
            "check": "cuda-build",
            "is_cuda_build": cuda_build,
            "cuda_version": info.get("cuda_version"),
            "cudnn_version": info.get("cudnn_version"),
            "ok": cuda_build,
        }
    )
    return cuda_build


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def library_soname(pin: str, version: str) -> str:
    """The soname a GPU stack's library loads by: ``libcudart.so.12`` (CUDA 11: ``libcudart.so.11.0``),
    ``libcudnn.so.9``, ``libnccl.so.2``, from the pin's major version."""
    major = _release(version)[0]
    if pin == "cuda":
        return f"libcudart.so.{major}" if major >= 12 else f"libcudart.so.{major}.0"
    return f"lib{pin}.so.{major}"


def decode_library_version(pin: str, code: int) -> tuple[int, ...]:
    """The release a library reports: ``cudaRuntimeGetVersion`` gives 1000 x major + 10 x minor (12090: 12.9);
    ``cudnnGetVersion`` 10000 x major + 100 x minor + patch from cuDNN 9 (92800: 9.28.0), 1000 x major before;
    ``ncclGetVersion`` 10000 x major + 100 x minor + patch from NCCL 2.9 (23203: 2.32.3), 1000 x major before."""
    if pin == "cuda":
        return (code // 1000, code % 1000 // 10)
    wide = code >= (90000 if pin == "cudnn" else 20900)
    base = 10000 if wide else 1000
    return (code // base, code % base // 100, code % 100)


def _loaded_path(soname: str) -> str:
    """Where the dynamic loader found ``soname``: the mapped file whose name starts with it."""
    with open("/proc/self/maps", encoding="utf-8") as maps:
        for line in maps:
            path = line.split(None, 5)[-1].strip()
            if os.path.basename(path).startswith(soname):
                return os.path.realpath(path)
    return ""


def _library_version(pin: str, library) -> int:
    import ctypes

    if pin == "cudnn":
        library.cudnnGetVersion.restype = ctypes.c_size_t
        return int(library.cudnnGetVersion())
    value = ctypes.c_int(0)
    function = library.cudaRuntimeGetVersion if pin == "cuda" else library.ncclGetVersion
    status = function(ctypes.byref(value))
    if status != 0:
        raise OSError(f"{function.__name__} returned {status}")
    return value.value


def check_cuda_libraries() -> bool:
    """The CUDA runtime, cuDNN and NCCL load by soname (ctypes, the dynamic loader's search) and report the pins."""
    import ctypes

    stack = _pinned_stack()
    libraries = {}
    for pin in ("cuda", "cudnn", "nccl"):
        want = stack[pin]
        soname = library_soname(pin, want)
        entry: dict = {"soname": soname, "pin": want}
        try:
            library = ctypes.CDLL(soname)
            got = decode_library_version(pin, _library_version(pin, library))
        except OSError as err:
            entry.update(error=str(err), ok=False)
        else:
            version = ".".join(str(part) for part in got)
            entry.update(version=version, path=_loaded_path(soname), ok=_release(want)[: len(got)] == got)
        libraries[pin] = entry
    ok = all(entry["ok"] for entry in libraries.values())
    emit({"check": "cuda-libs", "libraries": libraries, "ok": ok})
    return ok


def gpu_train_steps(tf, steps: int) -> tuple[list[float], str]:
    """A tiny regression model, ``steps`` plain gradient steps on the first GPU; the losses and the weights' device."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(256, 16)).astype("float32"))
    y = tf.matmul(x, tf.constant(np.linspace(-1.0, 1.0, 16, dtype="float32")[:, None])) + 0.5
    with tf.device("/GPU:0"):
        model = tf.keras.Sequential(
            [tf.keras.Input(shape=(16,)), tf.keras.layers.Dense(32, activation="relu"), tf.keras.layers.Dense(1)]
        )
        optimizer = tf.keras.optimizers.SGD(learning_rate=0.05)
        losses = []
        for _ in range(steps):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(model(x, training=True) - y))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            losses.append(float(loss))
    return losses, model.trainable_variables[0].device


def nccl_all_reduce(tf, devices: list[str]) -> tuple[list[float], list[str]]:
    """Each device contributes (replica + 1); TensorFlow's NCCL all-reduce sums them on every device."""
    strategy = tf.distribute.MirroredStrategy(devices=devices, cross_device_ops=tf.distribute.NcclAllReduce())

    def replica_sum():
        context = tf.distribute.get_replica_context()
        mine = tf.fill([1024], tf.cast(context.replica_id_in_sync_group + 1, tf.float32))
        return context.all_reduce(tf.distribute.ReduceOp.SUM, mine)

    results = strategy.experimental_local_results(strategy.run(tf.function(replica_sum)))
    return [float(r.numpy()[0]) for r in results], [r.device for r in results]


def check_gpu(expected: int, steps: int = 20) -> bool:
    """``expected`` GPUs visible to TensorFlow; training steps on the first; an NCCL all-reduce across all of them."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    record: dict = {"check": "gpu", "gpus": len(gpus), "expected": expected, "cuda_built": tf.test.is_built_with_cuda()}
    if len(gpus) != expected or not gpus:
        record.update(error=f"TensorFlow sees {len(gpus)} GPUs, the host has {expected}", ok=False)
        emit(record)
        return False
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    losses, device = gpu_train_steps(tf, steps)
    sums, devices = nccl_all_reduce(tf, [f"/gpu:{i}" for i in range(len(gpus))])
    total = len(gpus) * (len(gpus) + 1) / 2
    trained = all(map(math.isfinite, losses)) and losses[-1] < losses[0] and "GPU:0" in device.upper()
    reduced = sums == [total] * len(gpus) and all("GPU" in d.upper() for d in devices)
    record.update(loss=[losses[0], losses[-1]], weights_device=device, sums=sums, expected_sum=total)
    record.update(sum_devices=devices, ok=trained and reduced)
    emit(record)
    return record["ok"]


def check_gpu_allreduce() -> bool:
    """Under mpirun, one rank per GPU: Horovod's allreduce of (rank + 1) held on the rank's GPU."""
    import horovod.tensorflow as hvd
    import numpy as np
    import tensorflow as tf

    hvd.init()
    rank, size = hvd.rank(), hvd.size()
    gpus = tf.config.list_physical_devices("GPU")
    record: dict = {"check": "gpu-allreduce", "rank": rank, "size": size, "nccl_built": bool(hvd.nccl_built())}
    if hvd.local_rank() >= len(gpus):
        record.update(error=f"local rank {hvd.local_rank()} has no GPU: TensorFlow sees {len(gpus)}", ok=False)
        emit(record)
        return False
    tf.config.set_visible_devices(gpus[hvd.local_rank()], "GPU")
    tf.config.experimental.set_memory_growth(gpus[hvd.local_rank()], True)
    with tf.device("/GPU:0"):
        mine = tf.fill([1 << 20], float(rank + 1))
        total = hvd.allreduce(mine, op=hvd.Sum)
    expected = size * (size + 1) / 2
    ok = bool(np.all(total.numpy() == expected)) and "GPU" in mine.device.upper()
    record.update(sum=float(total.numpy()[0]), expected=expected, input_device=mine.device, ok=ok)
    emit(record)
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
    sub.add_parser("cuda-build", help="what TensorFlow was compiled against")
    sub.add_parser("cuda-libs", help="the CUDA runtime, cuDNN and NCCL load by soname and report the pins")
    gpu = sub.add_parser("gpu", help="GPUs visible, training steps on one, an NCCL all-reduce across all")
    gpu.add_argument("--gpus", type=int, required=True, help="how many GPUs the host has")
    sub.add_parser("gpu-allreduce", help="Horovod allreduce of GPU tensors, one rank per GPU (run under mpirun)")
    args = parser.parse_args(argv)
    simple = {
        "versions": check_versions,
        "allreduce": check_allreduce,
        "cuda-build": check_cuda_build,
        "cuda-libs": check_cuda_libraries,
        "gpu-allreduce": check_gpu_allreduce,
    }
    try:
        if args.check == "train":
            ok = check_train(args.steps)
        elif args.check == "gpu":
            ok = check_gpu(args.gpus)
        else:
            ok = simple[args.check]()
    except Exception as err:  # report, in the one format the host parses, why the check could not run
        emit({"check": args.check, "error": f"{type(err).__name__}: {err}"[:500], "ok": False})
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
