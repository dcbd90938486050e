"""The definition file that converts a site's Docker image into its SIF, as exact text (no Apptainer needed).

The conversion keeps the rendered recipe's %help, %test and %runscript, so that the converted SIF runs its %test
at the end of the build; the labels, environment and files come with the Docker image.
"""

from __future__ import annotations

import pytest

from hpcai_tf.catalog import load_site
from hpcai_tf.image.build import conversion_definition

pytestmark = [pytest.mark.singularity]

LOCAL = """\
Bootstrap: docker-daemon
From: hpcai/local:0123456789ab

%help
    hpcai base image for Local workstation (this machine), x86_64.
    TensorFlow 2.21.0, Horovod 0.28.1, openmpi host MPI 4.1.4 (hybrid model), CUDA none.
    Run a workload:  apptainer exec IMAGE hpcai train gw --smoke
    Provenance:      /opt/hpcai/provenance.json, /opt/hpcai/recipe/, /opt/hpcai/packages.txt

%test
    python -c 'import tensorflow as tf, horovod.tensorflow as hvd; import horovod; print("tensorflow", tf.__version__, "horovod", horovod.__version__)'
    horovodrun --check-build

%runscript
    exec hpcai "$@"
"""


def test_local_from_the_docker_daemon():
    """local, docker-daemon://: the recipe's %help, %test and %runscript after the bootstrap lines."""
    assert conversion_definition(load_site("local"), "docker-daemon://hpcai/local:0123456789ab") == LOCAL


def test_summit_from_a_docker_archive():
    """summit, docker-archive:// (the OLCF route): the archive path is the From line; %test is the recipe's."""
    text = conversion_definition(load_site("summit"), "docker-archive:///data/hpcai-summit-0123456789ab.tar")
    head, _, rest = text.partition("\n%help\n")
    assert head == "Bootstrap: docker-archive\nFrom: /data/hpcai-summit-0123456789ab.tar\n"
    assert [line for line in text.splitlines() if line.startswith("%")] == ["%help", "%test", "%runscript"]
    assert "    horovodrun --check-build\n" in rest
