"""`hpcai verify` on a GPU site: which checks it plans, when the GPU ones run, and how each judges its output.

The checks themselves run in the built delta image (tests/build/test_gpu_image.py, `make test-gpu-image`); the GPU
ones need NVIDIA GPUs, which the reference machine lacks, so their judges are checked here on the lines the
self-test prints, and have never judged a real GPU run.
"""

from __future__ import annotations

import json
from pathlib import Path

from hpcai_tf.catalog import load_site
from hpcai_tf.image.verify import (
    checks,
    host_gpus,
    judge_cuda_build,
    judge_cuda_libraries,
    judge_gpu,
    judge_gpu_allreduce,
    no_gpu_reason,
    visible_gpu_ids,
)

DELTA = load_site("delta")


def _line(record: dict) -> str:
    return f"HPCAI-SELFTEST {json.dumps(record)}\n"


def test_a_gpu_site_adds_the_cuda_checks_and_the_gpu_checks_a_cpu_site_has_none():
    """delta: the CUDA build and libraries beside the CPU checks, then two GPU checks, one rank per host GPU."""
    plan = checks(DELTA, ranks=2, steps=5, gpus=4)
    assert [(c.name, c.gpu) for c in plan] == [
        ("kit", False),
        ("versions", False),
        ("check-build", False),
        ("cuda-build", False),
        ("cuda-libs", False),
        ("allreduce", False),
        ("train", False),
        ("gpu", True),
        ("gpu-allreduce", True),
    ]
    by_name = {c.name: c.argv for c in plan}
    assert by_name["gpu"][-3:] == ["gpu", "--gpus", "4"]
    assert by_name["gpu-allreduce"][:3] == ["mpirun", "-np", "4"]
    assert [c.name for c in checks(load_site("local"), ranks=2, steps=5, gpus=4)] == [
        "kit",
        "versions",
        "check-build",
        "allreduce",
        "train",
    ]


def test_the_host_gpus_are_the_nvidia_drivers_entries_or_those_cuda_visible_devices_names(tmp_path: Path):
    """No driver directory, an empty one, two GPUs: 0, 0, 2; a job's CUDA_VISIBLE_DEVICES (Slurm sets it) narrows
    them, and Docker is then asked for those devices only; the reason says which of the two left none."""
    driver = tmp_path / "gpus"
    assert host_gpus(driver, env={}) == 0
    assert no_gpu_reason(driver, env={}) == f"no NVIDIA GPU on this host ({driver} does not exist)"
    driver.mkdir()
    assert host_gpus(driver, env={}) == 0
    assert no_gpu_reason(driver, env={}) == f"no NVIDIA GPU on this host ({driver} lists none)"
    (driver / "0000:07:00.0").mkdir()
    (driver / "0000:0f:00.0").mkdir()
    assert host_gpus(driver, env={}) == 2
    assert visible_gpu_ids({}) is None
    assert visible_gpu_ids({"CUDA_VISIBLE_DEVICES": "1"}) == ["1"]
    assert host_gpus(driver, env={"CUDA_VISIBLE_DEVICES": "1"}) == 1
    assert host_gpus(driver, env={"CUDA_VISIBLE_DEVICES": "0,1,2,3"}) == 2  # never more than the driver lists
    assert host_gpus(driver, env={"CUDA_VISIBLE_DEVICES": ""}) == 0
    assert no_gpu_reason(driver, env={"CUDA_VISIBLE_DEVICES": ""}) == "CUDA_VISIBLE_DEVICES names no GPU on this host"


def _build(cuda: str, cudnn: str, cuda_build: bool = True) -> str:
    return _line({"check": "cuda-build", "is_cuda_build": cuda_build, "cuda_version": cuda, "cudnn_version": cudnn})


def test_tensorflows_cuda_build_is_judged_against_the_pins_and_the_and_cuda_floors():
    """TensorFlow 2.21.0 is built with CUDA 12.5 and cuDNN 9: delta's later 12.9.79 and 9.28.0.42 wheels pass, and
    the build's versions are the floors containers/cuda-wheels.toml records."""
    assert judge_cuda_build(DELTA, _build("12.5.1", "9")) == (
        True,
        "TensorFlow 2.21.0 built with CUDA 12.5.1 and cuDNN 9; pinned CUDA 12.9.79 and cuDNN 9.28.0.42 "
        "(and-cuda floors 12.5.82 and 9.3.0.75): same majors, the pins not older",
    )
    ok, detail = judge_cuda_build(DELTA, _build("13.0.0", "9"))
    assert not ok and detail.startswith("cuda built 13.0.0, pinned 12.9.79; and-cuda floor of cuda 12.5.82 is not")
    ok, detail = judge_cuda_build(DELTA, _build("12.3.2", "9"))
    assert not ok and detail.startswith("and-cuda floor of cuda 12.5.82 is not the build's 12.3.2: ")
    ok, detail = judge_cuda_build(DELTA, _build("12.5.1", "8"))
    assert not ok and detail.startswith("cudnn built 8, pinned 9.28.0.42; and-cuda floor of cudnn 9.3.0.75")
    assert judge_cuda_build(DELTA, _build("", "", cuda_build=False)) == (
        False,
        "TensorFlow in the image is not a CUDA build (tf.sysconfig.get_build_info())",
    )
    assert judge_cuda_build(DELTA, "Traceback ...") == (False, "no result line in the output")


def _library(soname: str, pin: str, version: str, path: str, ok: bool = True) -> dict:
    return {"soname": soname, "pin": pin, "version": version, "path": path, "ok": ok}


SITE_PACKAGES = "/opt/hpcai/venv/lib/python3.11/site-packages"


def test_the_libraries_line_names_each_soname_its_version_and_wheel():
    libraries = {
        "cuda": _library("libcudart.so.12", "12.9.79", "12.9", f"{SITE_PACKAGES}/nvidia/cuda_runtime/lib/x.so.12"),
        "cudnn": _library("libcudnn.so.9", "9.28.0.42", "9.28.0", f"{SITE_PACKAGES}/nvidia/cudnn/lib/libcudnn.so.9"),
        "nccl": _library("libnccl.so.2", "2.32.3", "2.32.3", f"{SITE_PACKAGES}/nvidia/nccl/lib/libnccl.so.2"),
    }
    line = _line({"check": "cuda-libs", "libraries": libraries, "ok": True})
    assert judge_cuda_libraries(line) == (
        True,
        "libcudart.so.12 12.9 from nvidia/cuda_runtime/lib; libcudnn.so.9 9.28.0 from nvidia/cudnn/lib; "
        "libnccl.so.2 2.32.3 from nvidia/nccl/lib",
    )
    libraries["nccl"] = _library("libnccl.so.2", "2.32.3", "2.27.7", "/usr/lib/x86_64-linux-gnu/libnccl.so.2", False)
    libraries["cudnn"] = {"soname": "libcudnn.so.9", "pin": "9.28.0.42", "error": "cannot open", "ok": False}
    ok, detail = judge_cuda_libraries(_line({"check": "cuda-libs", "libraries": libraries, "ok": False}))
    assert not ok
    assert detail.endswith(
        "libcudnn.so.9 does not load: cannot open; libnccl.so.2 2.27.7 from /usr/lib/x86_64-linux-gnu, pinned 2.32.3"
    )


def _gpu_record(gpus: int, sums: list[float], ok: bool = True) -> dict:
    return {
        "check": "gpu",
        "gpus": gpus,
        "expected": gpus,
        "loss": [1.9, 0.2],
        "weights_device": "/job:localhost/replica:0/task:0/device:GPU:0",
        "sums": sums,
        "expected_sum": gpus * (gpus + 1) / 2,
        "ok": ok,
    }


def test_the_gpu_check_asks_for_the_pinned_nccl_version_line_from_two_gpus_on():
    """With 4 GPUs the all-reduce goes through NCCL, whose INFO line must name the pinned release; with one GPU
    TensorFlow calls no NCCL, and no line is asked for."""
    four = _line(_gpu_record(4, [10.0] * 4))
    nccl = "node:12:12 [0] NCCL INFO NCCL version 2.32.3+cuda12.9\n"
    ok, detail = judge_gpu(nccl + four, DELTA)
    assert ok and detail == (
        "4 GPUs; loss 1.9 -> 0.2 with weights on /job:localhost/replica:0/task:0/device:GPU:0; NCCL all-reduce sums "
        "[10.0, 10.0, 10.0, 10.0] (expected 10); NCCL 2.32.3"
    )
    ok, detail = judge_gpu(four, DELTA)
    assert not ok and detail.endswith("; NCCL version lines [], pinned 2.32.3")
    assert judge_gpu(_line(_gpu_record(1, [1.0])), DELTA)[0]
    error = _line({"check": "gpu", "gpus": 0, "error": "TensorFlow sees 0 GPUs, the host has 4", "ok": False})
    assert judge_gpu(error, DELTA) == (False, "TensorFlow sees 0 GPUs, the host has 4")


def test_the_gpu_allreduce_needs_every_rank_and_says_which_route_it_took():
    line = {"check": "gpu-allreduce", "size": 2, "sum": 3.0, "expected": 3.0, "nccl_built": False, "ok": True}
    both = _line({**line, "rank": 0}) + _line({**line, "rank": 1})
    assert judge_gpu_allreduce(both, 2) == (
        True,
        "sum 3 (expected 3) over 2 GPUs, MPI through host memory (Horovod has no NCCL)",
    )
    assert judge_gpu_allreduce(_line({**line, "rank": 0}), 2) == (False, "ranks reporting [0], expected [0, 1]")
    wrong = _line({**line, "rank": 0}) + _line({**line, "rank": 1, "sum": 2.0, "ok": False})
    assert judge_gpu_allreduce(wrong, 2)[1].startswith("failed on ranks [1]: ")
