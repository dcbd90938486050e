"""The delta site's GPU image, for real: built from Debian and PyPI alone (CUDA, cuDNN and NCCL from NVIDIA's wheels),
verified with every check a host without a GPU can make, then converted to a SIF and verified again under Apptainer.

Marked ``gpu_image``: `make test-gpu-image` runs these (about 80 minutes fresh on the reference machine, docs/images.md);
`make test` deselects them (tests/build/conftest.py), as containers/compatibility.toml says. The GPU checks
themselves (``gpu``, ``gpu-allreduce``) need NVIDIA GPUs: here they are shown to be left out in one line, and to
fail in one line each when forced to run without a GPU; they have never passed on the reference machine.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from hpcai_tf.catalog import load_site
from hpcai_tf.image.verify import SELFTEST, mpirun, run_environment
from hpcai_tf.recipes.render import image_tag

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.gpu_image]

REPO = Path(__file__).resolve().parents[2]
HARNESS = REPO / "scripts" / "apptainer-harness.sh"
CPU_CHECKS = ("kit", "versions", "check-build", "cuda-build", "cuda-libs", "allreduce", "train")
CUDA_BUILD = (
    "TensorFlow 2.21.0 built with CUDA 12.5.1 and cuDNN 9; pinned CUDA 12.9.79 and cuDNN 9.28.0.42 "
    "(and-cuda floors 12.5.82 and 9.3.0.75): same majors, the pins not older"
)
"""What TensorFlow 2.21.0's get_build_info() says, judged against delta's pins and the and-cuda ranges."""
SKIP_LINE = (
    "  SKIP  gpu, gpu-allreduce: did not run: no NVIDIA GPU on this host (/proc/driver/nvidia/gpus does not exist)"
)


@pytest.fixture(scope="module")
def delta_build(cli, base_image) -> subprocess.CompletedProcess:
    """``hpcai build --site delta``, once (cold: several GB of NVIDIA wheels, Horovod compiled in the image)."""
    result = cli("build", "--site", "delta", timeout=7000)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr
    return result


@pytest.fixture(scope="module")
def delta_tag(delta_build) -> str:
    built = re.match(r"^built (hpcai/delta:[0-9a-f]{12}) \(", delta_build.stdout.strip().splitlines()[-1])
    assert built, delta_build.stdout[-2000:]
    return built[1]


def _assert_cpu_checks_pass(stdout: str) -> None:
    for check in CPU_CHECKS:
        assert re.search(rf"^  PASS  {re.escape(check)} ", stdout, re.M), stdout
    assert f"  PASS  cuda-build   {CUDA_BUILD}\n" in stdout
    assert re.search(
        r"^  PASS  cuda-libs    libcudart\.so\.12 12\.9 from nvidia/cuda_runtime/lib; libcudnn\.so\.9 9\.28\.0 "
        r"from nvidia/cudnn/lib; libnccl\.so\.2 2\.32\.3 from nvidia/nccl/lib$",
        stdout,
        re.M,
    ), stdout
    assert "tensorflow 2.21.0, horovod 0.28.1" in stdout and "tf.keras is tf-keras 2.21.0" in stdout
    assert "sum 3 (expected 3) on ranks [0, 1]" in stdout and "weights agree" in stdout
    assert SKIP_LINE + "\n" in stdout
    assert stdout.strip().endswith("all 7 checks passed; 2 GPU checks did not run")


@pytest.mark.timeout(7200)
def test_the_delta_image_builds_from_debian_and_pypi_alone(docker_engine, delta_build, delta_tag):
    """The tag is the recipe hash; labels carry the CUDA, cuDNN and NCCL pins; Horovod is compiled in the image
    (the host's CPU wheel is built against tensorflow-cpu, so its record does not fit)."""
    assert delta_tag == image_tag(load_site("delta"))
    labels = docker_engine.client().images.get(delta_tag).labels
    assert labels["org.hpcai.site"] == "delta"
    assert (labels["org.hpcai.pin.cuda"], labels["org.hpcai.pin.cudnn"], labels["org.hpcai.pin.nccl"]) == (
        "12.9.79",
        "9.28.0.42",
        "2.32.3",
    )
    assert labels["org.hpcai.pin.tensorflow"] == "tensorflow-2.21.0"
    assert (
        "Horovod builds from source inside the image (horovod-0.28.1-cp311-cp311-linux_x86_64.whl: tensorflow: the "
        "wheel was built with tensorflow-cpu==2.21.0, the image needs tensorflow==2.21.0)"
    ) in delta_build.stdout


@pytest.mark.timeout(1800)
def test_verify_runs_every_check_a_host_without_a_gpu_can_make(cli, delta_tag):
    """Pins, TensorFlow's CUDA build, the libraries by soname, check-build, 2-rank allreduce and training on the CPU,
    and one line saying the GPU checks did not run and why."""
    result = cli("verify", "--site", "delta", timeout=1700)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"verify {delta_tag} (site delta, docker, 2 ranks)")
    assert re.search(r"^  PASS  check-build  frameworks: TensorFlow.*; operations: MPI, Gloo$", result.stdout, re.M)
    _assert_cpu_checks_pass(result.stdout)


def _in_image(engine, tag: str, argv: list[str]) -> tuple[int, list[dict], str]:
    """Run ``argv`` in a container of ``tag`` with verify's environment; exit code, self-test records, output."""
    client = engine.client()
    env = run_environment(load_site("delta"), "docker")
    container = client.containers.run(tag, argv, detach=True, environment=env, shm_size="1g")
    try:
        code = int(container.wait(timeout=900)["StatusCode"])
        output = container.logs(stdout=True, stderr=True).decode(errors="replace")
    finally:
        container.remove(force=True)
    records = [json.loads(m) for m in re.findall(r"^HPCAI-SELFTEST (\{.*\})$", output, re.M)]
    return code, records, output


@pytest.mark.timeout(1800)
def test_the_gpu_checks_fail_in_one_line_each_without_a_gpu(docker_engine, delta_tag):
    """Forced to run here, each GPU check exits 1 with one record naming what is missing: no GPU for TensorFlow."""
    code, records, output = _in_image(docker_engine, delta_tag, [*SELFTEST, "gpu", "--gpus", "1"])
    assert code == 1, output
    assert [(r["check"], r["gpus"], r["error"], r["ok"]) for r in records] == [
        ("gpu", 0, "TensorFlow sees 0 GPUs, the host has 1", False)
    ], output
    assert records[0]["cuda_built"] is True
    code, records, output = _in_image(docker_engine, delta_tag, mpirun(2, [*SELFTEST, "gpu-allreduce"]))
    assert code != 0, output
    assert sorted((r["rank"], r["error"], r["nccl_built"]) for r in records) == [
        (0, "local rank 0 has no GPU: TensorFlow sees 0", False),
        (1, "local rank 1 has no GPU: TensorFlow sees 0", False),
    ], output


@pytest.fixture(scope="module")
def apptainer_path() -> str:
    """PATH with the Apptainer harness's wrappers first (`make test-gpu-image` prepares the harness)."""
    status = subprocess.run([str(HARNESS), "status"], capture_output=True, text=True, check=False)
    assert status.returncode == 0, f"the Apptainer harness is not prepared: {status.stdout}{status.stderr}"
    cache = Path(os.environ.get("HPCAI_APPTAINER_CACHE", REPO / ".cache" / "apptainer"))
    return f"{cache / 'bin'}:{os.environ.get('PATH', '')}"


@pytest.mark.timeout(7200)
def test_the_sif_of_the_gpu_image_verifies_under_apptainer(cli, delta_tag, apptainer_path, kit_root):
    """`hpcai build --runtime singularity` converts the Docker image (its %test runs check-build); `hpcai verify`
    makes the same checks in the SIF, the GPU ones left out in one line."""
    built = cli(
        "build",
        "--site",
        "delta",
        "--runtime",
        "singularity",
        "--sif-compression",
        "zstd",  # about a quarter of gzip's mksquashfs time (docs/images.md); the harness's kernel mounts it
        timeout=7000,
        PATH=apptainer_path,
    )
    assert built.returncode == 0, built.stdout[-5000:] + built.stderr
    sif = kit_root / "build" / "images" / f"hpcai-delta-{delta_tag.rsplit(':', 1)[1]}.sif"
    try:
        assert sif.is_file(), built.stdout[-2000:]
        result = cli("verify", "--site", "delta", "--runtime", "singularity", timeout=1700, PATH=apptainer_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.startswith(f"verify {sif} (site delta, singularity, 2 ranks)")
        _assert_cpu_checks_pass(result.stdout)
    finally:
        sif.unlink(missing_ok=True)  # several GB: pytest keeps its last temp dirs
