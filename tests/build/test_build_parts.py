"""The decisions of the build, without an engine: staging, wheel choice, step titles, check parsing."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from hpcai_tf.catalog import load_site
from hpcai_tf.errors import KitError
from hpcai_tf.image.context import (
    BuildOptions,
    horovod_wheel_reason,
    horovod_wheels,
    options_script,
    stage_context,
    stage_recipe_context,
)
from hpcai_tf.image.docker_build import dockerfile_steps
from hpcai_tf.image.host import REFERENCE_HOST, BuildHost, build_blockers, refuse_blocked
from hpcai_tf.image.singularity import build_command
from hpcai_tf.image.verify import expected_check_build, judge_check_build, judge_ranks, mpirun, parse_check_build
from hpcai_tf.recipes.build_inputs import build_inputs
from hpcai_tf.recipes.horovod_build import image_record, record_text
from hpcai_tf.recipes.render import constraints_path, render_recipe, render_site, render_steps

# `horovodrun --check-build` of the local image, as Horovod 0.28.1 prints it.
CHECK_BUILD = """
Horovod v0.28.1:

Available Frameworks:
    [X] TensorFlow
    [X] PyTorch
    [ ] MXNet

Available Controllers:
    [X] MPI
    [X] Gloo

Available Tensor Operations:
    [ ] NCCL
    [ ] DDL
    [ ] CCL
    [X] MPI
    [X] Gloo
"""


def test_every_run_step_of_the_dockerfile_carries_its_recipe_step_title():
    """Docker's "Step N/M" maps to the instruction and the title of the recipe step it belongs to."""
    site = load_site("local")
    steps = dockerfile_steps(render_recipe(site, "docker"))
    assert steps[0].instruction == "FROM hpcai/debian:bookworm-minbase"
    runs = [(s.title, s.instruction) for s in steps if s.instruction.startswith("RUN ")]
    expected = [(step.title, "RUN " + " && ".join(step.commands)) for step in render_steps(site)]
    assert runs == expected


def test_quiet_progress_shows_steps_and_cache_hits_and_keeps_the_tail():
    """Chunks as the engine streams them: step lines and cache hits printed, a step's output only logged."""
    import io

    from hpcai_tf.image.docker_build import _Progress

    chunks = [
        "Step 1/3 : FROM base:1",
        "\n",
        " ---> 6ef52308610e\n",
        "Step 2/3 : LABEL a=b",
        "\n",
        " ---> Using cache\n",
        " ---> 335195421840\n",
        "Step 3/3 : RUN echo hi",
        "\n",
        " ---> Running in 05fc159e6508\n",
        "\x1b[91mhi\n\x1b[0m",
        "Successfully built 69266c5b94f3\n",
    ]
    log, out = io.StringIO(), io.StringIO()
    progress = _Progress(log, out, quiet=True)
    for chunk in chunks:
        progress.feed(chunk)
    progress.flush()
    assert out.getvalue() == "Step 1/3 : FROM base:1\nStep 2/3 : LABEL a=b\n ---> Using cache\nStep 3/3 : RUN echo hi\n"
    assert (progress.cached_steps, progress.step, progress.built_id) == ([2], 3, "69266c5b94f3")
    assert list(progress.tail)[:3] == ["Step 3/3 : RUN echo hi", " ---> Running in 05fc159e6508", "hi"]
    assert "\x1b" not in log.getvalue()


def test_options_script_exports_the_ca_bundle_only_when_given():
    """options.sh is a comment without options; with a bundle, pip, requests and curl all point at it."""
    assert options_script(BuildOptions()).count("\n") == 1
    text = options_script(BuildOptions(ca_bundle=Path("/x.crt"), index_url="https://mirror.example/simple"))
    assert "export PIP_CERT=/opt/hpcai-build/options/ca-bundle.crt\n" in text
    assert "export CURL_CA_BUNDLE=/opt/hpcai-build/options/ca-bundle.crt\n" in text
    assert "export PIP_INDEX_URL=https://mirror.example/simple\n" in text
    assert "/x.crt" not in text  # the host path never enters the image


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the local site is x86_64")
def test_only_a_fitting_horovod_wheel_is_staged(tmp_path):
    """A CPU pip site whose own build the record names (local-tf215 beside a wheel built for TF 2.15.1) takes the
    cp311 x86_64 wheel of its Horovod pin; other sites take none, and say why."""
    local = load_site("local-tf215")
    record = record_text(image_record(local))
    for name in (
        "horovod-0.28.1-cp311-cp311-linux_x86_64.whl",
        "horovod-0.28.0-cp311-cp311-linux_x86_64.whl",
        "horovod-0.28.1-cp310-cp310-linux_x86_64.whl",
        "mpi4py-4.1.2-cp311-cp311-linux_x86_64.whl",
    ):
        (tmp_path / name).write_bytes(b"")
        (tmp_path / f"{name}.built-against.json").write_text(record + "\n")
    assert horovod_wheel_reason(local, tmp_path) is None
    assert [p.name for p in horovod_wheels(local, tmp_path)] == ["horovod-0.28.1-cp311-cp311-linux_x86_64.whl"]
    assert horovod_wheels(local, None) == []
    assert horovod_wheel_reason(local, None) == "hpcai build --wheels none"
    assert horovod_wheels(load_site("local"), tmp_path) == []
    assert horovod_wheel_reason(load_site("local"), tmp_path).startswith(
        "horovod-0.28.1-cp311-cp311-linux_x86_64.whl: patches: the wheel was built with none, the image needs "
        "horovod-0.28.1-no-xla-ops sha256:"
    )
    assert horovod_wheels(load_site("bridges-ai"), tmp_path) == []
    reason = horovod_wheel_reason(load_site("bridges-ai"), tmp_path)
    assert reason == "the image builds Horovod with NCCL GPU operations"
    assert horovod_wheel_reason(load_site("hal"), tmp_path) == "the image takes Horovod from the open-ce channel"


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the local site is x86_64")
@pytest.mark.parametrize(
    "record",
    [
        None,
        "not json",
        '{"python": "3.11.7", "tensorflow": "tensorflow-cpu==2.15.1"}',  # the record before it named the whole build
        '{"python": "3.11.7", "tensorflow": "tensorflow-cpu==2.14.0"}',
        '{"python": "3.10.12", "tensorflow": "tensorflow-cpu==2.15.1"}',
    ],
)
def test_a_wheel_without_a_matching_record_is_never_staged(tmp_path, record):
    """No sidecar, an unreadable one, or one naming another build: Horovod compiles instead."""
    wheel = tmp_path / "horovod-0.28.1-cp311-cp311-linux_x86_64.whl"
    wheel.write_bytes(b"")
    if record is not None:
        (tmp_path / f"{wheel.name}.built-against.json").write_text(record)
    assert horovod_wheels(load_site("local-tf215"), tmp_path) == []
    assert horovod_wheel_reason(load_site("local-tf215"), tmp_path) is not None


def test_staged_context_holds_what_the_recipe_copies(tmp_path):
    """build/options, build/wheels, constraints/, patches/ (the site's), recipe/, kit/ (without caches) and the .def
    at the root; nothing else."""
    bundle = tmp_path / "bundle.crt"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    site = load_site("local")
    staged = stage_context(build_inputs(site), BuildOptions(ca_bundle=bundle, wheels_dir=wheels), dest=tmp_path / "ctx")
    ctx = staged.path
    assert sorted(p.name for p in ctx.iterdir()) == [
        "Singularity.def",
        "build",
        "constraints",
        "kit",
        "patches",
        "recipe",
    ]
    assert sorted(p.name for p in (ctx / "patches").iterdir()) == [
        f"{name}.patch" for name in site.stack.horovod_patches
    ]
    assert (ctx / "constraints/local.txt").read_text() == constraints_path(site).read_text()
    assert (ctx / "build/options/ca-bundle.crt").read_text() == bundle.read_text()
    assert list((ctx / "build/wheels").iterdir()) == []
    assert {p.name: p.read_text() for p in (ctx / "recipe").iterdir()} == render_site(site)
    assert (ctx / "kit/hpcai_tf/train/selftest.py").is_file() and (ctx / "kit/pyproject.toml").is_file()
    assert not list((ctx / "kit").rglob("__pycache__"))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    with pytest.raises(KitError, match="--ca-bundle: no such file"):
        stage_context(build_inputs(site), BuildOptions(ca_bundle=tmp_path / "missing.crt"), dest=tmp_path / "ctx")
    assert (ctx / "recipe/Dockerfile").is_file()  # a failed staging leaves the previous context whole


def test_check_build_listing_is_judged_against_the_site():
    """The CPU image needs TensorFlow, the MPI controller and MPI operations; a GPU site also needs NCCL."""
    assert parse_check_build(CHECK_BUILD)["Available Controllers"] == {"MPI": True, "Gloo": True}
    ok, detail = judge_check_build(load_site("local"), CHECK_BUILD)
    assert ok and detail == "frameworks: TensorFlow, PyTorch; controllers: MPI, Gloo; operations: MPI, Gloo"
    assert expected_check_build(load_site("bridges-ai"))["Available Tensor Operations"] == ["MPI", "NCCL"]
    assert judge_check_build(load_site("bridges-ai"), CHECK_BUILD) == (False, "not built: operations NCCL")
    assert judge_check_build(load_site("local"), "Traceback ...") == (False, "no check-build listing in the output")


def test_a_rank_that_does_not_report_fails_the_check():
    """Every rank must report ok: a missing rank, or a wrong sum on one, fails with what was seen."""
    line = 'HPCAI-SELFTEST {"check": "allreduce", "rank": %d, "size": 2, "sum": %s, "expected": 3.0, "ok": %s}\n'
    both = line % (0, "3.0", "true") + line % (1, "3.0", "true")
    assert judge_ranks("allreduce", both, 2) == (True, "sum 3 (expected 3) on ranks [0, 1]")
    assert judge_ranks("allreduce", line % (0, "3.0", "true"), 2)[0] is False
    ok, detail = judge_ranks("allreduce", line % (0, "3.0", "true") + line % (1, "2.0", "false"), 2)
    assert not ok and detail.startswith("failed on ranks [1]")


def test_mpirun_oversubscribes_only_beyond_the_cores():
    """Two ranks on a machine with at least two cores run without --oversubscribe (the rule: train/mpirun_line.py)."""
    assert "--oversubscribe" in mpirun(3, ["true"], cores=2)
    assert "--oversubscribe" not in mpirun(2, ["true"], cores=2)


def test_singularity_build_runs_the_runtime_found_not_spythons_default():
    """spython's client is made to call apptainer (it hard-wires `singularity`); the source comes last."""
    cmd = build_command("/usr/bin/apptainer", Path("/o/x.sif"), "docker-daemon://hpcai/local:abc")
    assert cmd == ["/usr/bin/apptainer", "build", "/o/x.sif", "docker-daemon://hpcai/local:abc"]


def test_a_sif_compression_other_than_gzip_reaches_mksquashfs():
    """--sif-compression zstd: one --mksquashfs-args string before the SIF; gzip (the default) adds nothing."""
    cmd = build_command("/usr/bin/apptainer", Path("/o/x.sif"), "convert.def", "zstd")
    assert cmd == [
        "/usr/bin/apptainer",
        "build",
        "--mksquashfs-args",
        "-comp zstd -Xcompression-level 3",
        "/o/x.sif",
        "convert.def",
    ]
    assert build_command("/usr/bin/apptainer", Path("/o/x.sif"), "convert.def", "gzip") == [
        "/usr/bin/apptainer",
        "build",
        "/o/x.sif",
        "convert.def",
    ]


def test_staged_recipe_dir_holds_its_files_and_the_build_options(tmp_path):
    """`hpcai build --recipe DIR`: DIR's files plus build/options/ (a copy DIR holds is replaced); DIR is untouched."""
    recipe = tmp_path / "mykit"
    (recipe / "build" / "options").mkdir(parents=True)
    (recipe / "build" / "options" / "options.sh").write_text("export PIP_CERT=/stale\n")
    (recipe / "Dockerfile").write_text("FROM scratch\n")
    (recipe / "constraints.txt").write_text("numpy==1.26.4\n")
    bundle = tmp_path / "bundle.crt"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    staged = stage_recipe_context(recipe, BuildOptions(ca_bundle=bundle), tmp_path / "ctx").path
    assert sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file()) == [
        "Dockerfile",
        "build/options/ca-bundle.crt",
        "build/options/options.sh",
        "constraints.txt",
    ]
    assert (staged / "build/options/options.sh").read_text() == options_script(BuildOptions(ca_bundle=bundle))
    assert (recipe / "build/options/options.sh").read_text() == "export PIP_CERT=/stale\n"
    with pytest.raises(KitError, match="--ca-bundle: no such file"):
        stage_recipe_context(recipe, BuildOptions(ca_bundle=tmp_path / "missing.crt"), tmp_path / "ctx")
    assert (staged / "Dockerfile").is_file()  # a failed staging leaves the previous context whole


def test_reference_machine_builds_only_the_local_site():
    """What the site pages say: local builds there; hal and summit are ppc64le from a registry; bridges-ai pulls."""
    reasons = {
        site: [b.reason for b in build_blockers(load_site(site), REFERENCE_HOST)]
        for site in ("local", "bridges-ai", "hal", "summit")
    }
    assert reasons["local"] == []
    assert reasons["bridges-ai"] == [
        "builds FROM nvidia/cuda:11.8.0-devel-ubuntu22.04, which is not in the Docker engine and cannot be pulled "
        "(no registry is reachable there)"
    ]
    assert (
        reasons["hal"]
        == reasons["summit"]
        == [
            "builds a ppc64le image and the reference machine is x86_64 with no ppc64le emulation",
            "builds FROM registry.access.redhat.com/ubi8/ubi:8.8, which is not in the Docker engine and cannot be "
            "pulled (no registry is reachable there)",
        ]
    )


def test_emulation_or_a_loaded_base_lifts_a_blocker():
    """A registered qemu-ppc64le lifts the arch blocker; a base already in the engine needs no registry."""
    hal = load_site("hal")
    host = BuildHost(
        "this host",
        "x86_64",
        emulated=frozenset({"ppc64le"}),
        base_images=frozenset({hal.base.ref}),
        registry_error="no such host",
    )
    assert build_blockers(hal, host) == []
    before_engine = BuildHost("this host", "x86_64")
    with pytest.raises(KitError) as err:
        refuse_blocked(hal, before_engine)
    assert str(err.value) == (
        "site hal builds a ppc64le image and this host is x86_64 with no ppc64le emulation: build it on a ppc64le "
        "machine (a login or build node of the site), or register qemu-user-static for ppc64le with binfmt_misc"
    )
