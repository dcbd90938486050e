"""The stack's Python packages are one list (train/image_contract.py STACK_PACKAGES), read by every place that pins,
labels or checks them."""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest

from hpcai_tf.catalog import load_site
from hpcai_tf.recipes.derived import constraints
from hpcai_tf.recipes.render import conda_packages, labels, pip_packages, render_steps
from hpcai_tf.train.image_contract import STACK_PACKAGES


def test_the_stack_check_of_the_build_checks_every_package():
    """local: the build's stack-check compares each of the stack's packages with its pin (it compared TensorFlow,
    Horovod and NumPy only, while the in-image self-test also checked mpi4py and h5py)."""
    assert render_steps(load_site("local"))[-2].commands[0] == (
        'python -c \'import importlib, sys; want = {"h5py": "3.14.0", "horovod": "0.28.1", "mpi4py": "4.1.2", '
        '"numpy": "2.4.6", "tensorflow": "2.21.0"}; got = {name: importlib.import_module(name).__version__ for '
        'name in want}; sys.exit(0 if got == want else "stack mismatch: got %s, pinned %s" % (got, want))\''
    )


@pytest.mark.parametrize("h5py", ["3.14.0", "3.13.0"])
def test_the_stack_check_runs_and_names_a_mismatch(tmp_path, h5py):
    """The rendered command, run against stand-in modules (no site-packages): it passes on the pins, and fails naming
    what differs."""
    versions = {"tensorflow": "2.21.0", "horovod": "0.28.1", "numpy": "2.4.6", "mpi4py": "4.1.2", "h5py": h5py}
    for name, version in versions.items():
        (tmp_path / f"{name}.py").write_text(f"__version__ = {version!r}\n")
    command = shlex.split(render_steps(load_site("local"))[-2].commands[0])
    assert command[:2] == ["python", "-c"]
    done = subprocess.run([sys.executable, "-S", "-c", command[2]], cwd=tmp_path, capture_output=True, text=True)
    assert (done.returncode == 0) is (h5py == "3.14.0"), done.stderr
    if h5py != "3.14.0":
        assert "stack mismatch" in done.stderr and "'h5py': '3.13.0'" in done.stderr


@pytest.mark.parametrize("site_id", ["local", "summit"])
def test_every_list_of_the_stack_names_each_package(site_id):
    """Derived constraints, the labels and the pip or conda list all take STACK_PACKAGES, in its order."""
    site = load_site(site_id)
    assert [line.split("==")[0] for line in constraints(site).splitlines()[1:]] == [
        site.stack.tensorflow_package,
        *STACK_PACKAGES[1:],
    ]
    pins = [key.removeprefix("org.hpcai.pin.") for key, _ in labels(site) if key.startswith("org.hpcai.pin.")]
    assert pins == ["python", "cuda", "cudnn", "nccl", "mpi", *STACK_PACKAGES]
    if site.stack.channel == "pip":
        names = [spec.split("==")[0] for spec in pip_packages(site)][: len(STACK_PACKAGES) - 1]
        assert names == ["tensorflow-cpu", "numpy", "mpi4py", "h5py"]  # Horovod builds in its own step
    else:
        names = [spec.split("=")[0] for spec in conda_packages(site)]
        assert names == ["python", "cudatoolkit", "cudnn", "nccl", "openmpi", *STACK_PACKAGES]
