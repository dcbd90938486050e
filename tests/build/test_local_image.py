"""The local site's image, for real: built through ``hpcai build``, self-tested with ``hpcai verify``."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tarfile
import zipfile

import pytest

from hpcai_tf.catalog import load_site
from hpcai_tf.image.build import KIT_SOURCE_LABEL
from hpcai_tf.image.context import horovod_wheel_reason, kit_digest
from hpcai_tf.recipes.constraints import canonical, read_constraints, top_level_pins
from hpcai_tf.recipes.horovod_build import site_wheel_name

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.mark.timeout(3600)
def test_local_image_is_tagged_by_its_recipe_and_carries_the_kit(docker_engine, local_image):
    """The tag is hpcai/local:<recipe hash>; labels hold the pins and the hash of the kit source inside."""
    image = docker_engine.client().images.get(local_image.tag)
    assert image.labels["org.hpcai.site"] == "local"
    assert image.labels["org.hpcai.pin.tensorflow"] == "tensorflow-cpu-2.21.0"
    assert image.labels[KIT_SOURCE_LABEL] == local_image.kit_digest


@pytest.mark.timeout(600)
def test_pip_freeze_in_the_image_is_the_pins_and_the_constraints(docker_engine, local_image, kit_root):
    """Every package in the image at its catalog pin or its constraint, nothing else but the kit; the constraints
    file kept in the image is the committed one, whose sha256 provenance.json records."""
    out = (
        docker_engine.client()
        .containers.run(
            local_image.tag,
            ["sh", "-c", "cat /opt/hpcai/packages.txt; echo '==>'; cat /opt/hpcai/constraints.txt"],
            remove=True,
        )
        .decode()
    )
    frozen, kept = out.split("==>\n")
    committed = kit_root / "containers" / "constraints" / "local.txt"
    assert kept == committed.read_text()
    digest = hashlib.sha256(committed.read_bytes()).hexdigest()
    assert json.loads(local_image.recipe["provenance.json"])["constraints"]["sha256"] == digest
    versions = {canonical(n): v for n, v in (line.split("==") for line in frozen.splitlines() if "==" in line)}
    expected = {canonical(n): v for n, v in read_constraints(committed).versions.items()}
    expected.update({canonical(s.split("==")[0]): s.split("==")[1] for s in top_level_pins(load_site("local"))})
    assert versions == expected
    assert [line.split()[0] for line in frozen.splitlines() if "==" not in line] == ["hpcai"]


@pytest.mark.timeout(600)
def test_the_image_runs_the_host_wheel_of_its_own_build(docker_engine, local_image, kit_root):
    """`make test` builds the host venv first, so .cache/wheels holds scripts/setup-venv.sh's patched Horovod wheel,
    recorded as the local image's own build: it is staged and installed, not compiled, and the image's Horovod
    extension is byte for byte the wheel's."""
    site = load_site("local")
    wheels = kit_root / ".cache" / "wheels"
    assert horovod_wheel_reason(site, wheels) is None
    wheel = wheels / site_wheel_name(site)
    assert (kit_root / "build" / "context" / "local" / "build" / "wheels" / wheel.name).is_file()
    with zipfile.ZipFile(wheel) as archive:
        member = next(n for n in archive.namelist() if re.fullmatch(r"horovod/tensorflow/mpi_lib\..+\.so", n))
        digest = hashlib.sha256(archive.read(member)).hexdigest()
    python = ".".join(site.stack.python.split(".")[:2])
    path = f"/opt/hpcai/venv/lib/python{python}/site-packages/{member}"
    out = docker_engine.client().containers.run(local_image.tag, ["sha256sum", path], remove=True).decode()
    assert out.split()[0] == digest


@pytest.mark.timeout(600)
def test_base_image_is_cached_by_name(cli, base_image):
    """A second `hpcai base` finds the image by name and runs no debootstrap."""
    result = cli("base", "--site", "local", timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"base image {base_image}: present" in result.stdout
    assert "debootstrap" not in result.stdout


@pytest.mark.timeout(1200)
def test_verify_passes_inside_the_local_image(cli, local_image):
    """TensorFlow, check-build, a 2-rank allreduce and 2-rank training all pass inside the image."""
    result = cli("verify", "--site", "local", timeout=1100)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"verify {local_image.tag} (site local, docker, 2 ranks)")
    for check in ("kit", "versions", "check-build", "allreduce", "train"):
        assert re.search(rf"^  PASS  {re.escape(check)} ", result.stdout, re.M), result.stdout
    assert "tensorflow 2.21.0, horovod 0.28.1" in result.stdout
    assert "sum 3 (expected 3) on ranks [0, 1]" in result.stdout
    assert "weights agree" in result.stdout
    assert result.stdout.strip().endswith("all 5 checks passed")


@pytest.mark.timeout(1800)
def test_a_rebuild_with_nothing_changed_is_served_from_the_cache(cli, docker_engine, local_image):
    """Same inputs, same image: every step after FROM comes from the build cache, and the image ID stays."""
    before = docker_engine.client().images.get(local_image.tag).id
    result = cli("build", "--site", "local", timeout=1700)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    total = int(re.search(r"^Step 1/(\d+) : FROM ", result.stdout, re.M)[1])
    cached = {int(n) for n in re.findall(r"^Step (\d+)/\d+ : .*\n ---> Using cache$", result.stdout, re.M)}
    assert set(range(2, total + 1)) - cached == set(), result.stdout[-4000:]
    assert docker_engine.client().images.get(local_image.tag).id == before


@pytest.mark.timeout(1800)
def test_code_only_change_rebuilds_only_the_kit(cli, docker_engine, local_image, kit_root, tmp_path):
    """After a change under hpcai_tf/, every layer below the kit's own comes from the cache."""
    changed = tmp_path / "kit"
    shutil.copytree(kit_root, changed, symlinks=True, ignore=shutil.ignore_patterns("build"))
    init = changed / "hpcai_tf" / "__init__.py"
    init.write_text(init.read_text() + "# a code-only change, made by test_code_only_change_rebuilds_only_the_kit\n")
    try:
        result = cli("build", "--site", "local", timeout=1700, HPCAI_ROOT=str(changed))
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr
        assert result.stdout.strip().splitlines()[-1].startswith(f"built {local_image.tag} ")
        steps = re.findall(r"^Step (\d+)/\d+ : (.*)$", result.stdout, re.M)
        kit_step = next(int(n) for n, instruction in steps if instruction.startswith("COPY kit/"))
        cached = {int(n) for n in re.findall(r"^Step (\d+)/\d+ : .*\n ---> Using cache$", result.stdout, re.M)}
        assert set(range(2, kit_step)) <= cached, f"layers below the kit rebuilt: {set(range(2, kit_step)) - cached}"
        assert kit_step not in cached and kit_step + 2 not in cached  # COPY kit/, ENV, RUN pip install the kit
        image = docker_engine.client().images.get(local_image.tag)
        assert image.labels[KIT_SOURCE_LABEL] == kit_digest(changed) != local_image.kit_digest
    finally:  # the session's image again holds the snapshot's kit
        restored = cli("build", "--site", "local", timeout=1700)
        assert restored.returncode == 0, restored.stdout[-4000:] + restored.stderr


@pytest.mark.timeout(600)
def test_inspect_prints_pins_labels_and_the_embedded_recipe(cli, local_image):
    """`hpcai inspect` reads /opt/hpcai/recipe/ from the image: the staged recipe, byte for byte."""
    text = cli("inspect", local_image.tag, timeout=300)
    assert text.returncode == 0, text.stderr
    assert re.search(r"^  horovod\s+0\.28\.1$", text.stdout, re.M)
    assert "org.hpcai.site=local" in text.stdout
    assert "matches what the catalog renders now" in text.stdout
    assert f"==> /opt/hpcai/recipe/Dockerfile <==\n{local_image.recipe['Dockerfile']}" in text.stdout + "\n"
    info = json.loads(cli("inspect", "--site", "local", "--json", timeout=300).stdout)
    assert info["recipe"] == local_image.recipe
    assert info["pins"]["tensorflow"] == "tensorflow-cpu-2.21.0"
    assert info["catalog"] == {"site": "local", "matches": True, "differs": []}


@pytest.mark.timeout(1200)
def test_export_writes_a_loadable_tar_and_its_sha256(cli, local_image, tmp_path):
    """`hpcai export` writes `docker save` output named by the tag, with a sha256sum line beside it."""
    result = cli("export", "--site", "local", "--out", str(tmp_path), timeout=1100)
    assert result.returncode == 0, result.stderr
    tar_path = tmp_path / f"hpcai-local-{local_image.tag.rsplit(':', 1)[1]}.tar"
    assert result.stdout.splitlines()[0] == str(tar_path)
    digest = hashlib.sha256()
    with tar_path.open("rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    assert (tmp_path / f"{tar_path.name}.sha256").read_text() == f"{digest.hexdigest()}  {tar_path.name}\n"
    with tarfile.open(tar_path) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
    assert manifest[0]["RepoTags"] == [local_image.tag]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left behind
    tar_path.unlink()  # 3 GB: pytest keeps its last temp dirs
