"""The 2023 stack keeps building beside the current one: site ``local-tf215`` (TensorFlow 2.15.1, Keras 2 inside
tf.keras, Horovod 0.28.1 unpatched), built through ``hpcai build`` and self-tested with ``hpcai verify``.

HAL, Summit and Bridges-AI run that generation of the code path; this image is the one place the reference machine
exercises it for real.
"""

from __future__ import annotations

import re

import pytest

from hpcai_tf.catalog import load_site
from hpcai_tf.recipes.render import image_tag

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def tf215_tag(cli, base_image, kit_root) -> str:
    """``hpcai build --site local-tf215``, once; its tag."""
    result = cli("build", "--site", "local-tf215", timeout=3000)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr
    built = re.match(r"^built (hpcai/local-tf215:[0-9a-f]{12}) \(", result.stdout.strip().splitlines()[-1])
    assert built, result.stdout[-2000:]
    return built[1]


@pytest.mark.timeout(3600)
def test_the_2023_image_builds_from_its_own_recipe(docker_engine, tf215_tag):
    """Its tag is the recipe hash of the local-tf215 site file; its labels carry the 2023 pins, unpatched."""
    assert tf215_tag == image_tag(load_site("local-tf215"))
    labels = docker_engine.client().images.get(tf215_tag).labels
    assert labels["org.hpcai.site"] == "local-tf215"
    assert labels["org.hpcai.pin.tensorflow"] == "tensorflow-cpu-2.15.1"
    assert labels["org.hpcai.horovod-patches"] == "none"


@pytest.mark.timeout(1200)
def test_verify_passes_inside_the_2023_image(cli, tf215_tag):
    """Versions, check-build, a 2-rank allreduce and 2-rank training under Horovod, with tf.keras as Keras 2."""
    result = cli("verify", "--site", "local-tf215", timeout=1100)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"verify {tf215_tag} (site local-tf215, docker, 2 ranks)")
    for check in ("kit", "versions", "check-build", "allreduce", "train"):
        assert re.search(rf"^  PASS  {re.escape(check)} ", result.stdout, re.M), result.stdout
    assert "tensorflow 2.15.1, horovod 0.28.1" in result.stdout
    assert "tf.keras is keras 2.15.0" in result.stdout
    assert "weights agree" in result.stdout
