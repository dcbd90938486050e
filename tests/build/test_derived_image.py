"""A derived image for real: ``hpcai extend`` on the local site, then ``hpcai build --recipe`` FROM the local image."""

from __future__ import annotations

import re

import pytest

from hpcai_tf.recipes.constraints import canonical

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.mark.timeout(1200)
def test_derived_recipe_builds_on_the_local_image_with_the_build_options(cli, docker_engine, local_image, tmp_path):
    """The derived pip step sources the staged options.sh (the CA bundle behind an intercepting proxy) and installs
    the added package under the base's pins; nothing of /opt/hpcai-build stays in the image."""
    recipe = tmp_path / "tabular"
    made = cli("extend", "--site", "local", "--name", "tabular", "--pip", "tabulate==0.9.0", "--out", str(recipe))
    assert made.returncode == 0, made.stderr
    assert f"FROM {local_image.tag}\n" in (recipe / "Dockerfile").read_text()
    built = cli("build", "--recipe", str(recipe), "--quiet", timeout=1100)
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr
    tag = re.match(r"^built (hpcai-recipe/tabular:[0-9a-f]{12}) \(", built.stdout.strip().splitlines()[-1])
    assert tag, built.stdout[-2000:]
    client = docker_engine.client()
    try:
        out = client.containers.run(
            tag[1],
            [
                "bash",
                "-c",
                "cat /opt/hpcai/derived/packages.txt; test ! -e /opt/hpcai-build && echo no-build-inputs",
            ],
            remove=True,
        ).decode()
        assert out.endswith("\nno-build-inputs\n"), out
        # pip freeze prints each distribution's own spelling (TensorFlow 2.21's wheel says tensorflow_cpu)
        pins = dict(line.split("==", 1) for line in out.splitlines() if "==" in line)
        pins = {canonical(name): version for name, version in pins.items()}
        assert {name: pins.get(name) for name in ("horovod", "tabulate", "tensorflow-cpu")} == {
            "horovod": "0.28.1",
            "tabulate": "0.9.0",
            "tensorflow-cpu": "2.21.0",
        }
    finally:
        client.images.remove(tag[1])
