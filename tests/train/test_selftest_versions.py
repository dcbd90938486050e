"""The in-image ``versions`` check reads the stack's packages from image_contract and the pins from the provenance."""

from __future__ import annotations

import json
import sys
import types

from hpcai_tf.train import selftest
from hpcai_tf.train.image_contract import PROVENANCE_VARIABLE, STACK_PACKAGES

PINS = {"tensorflow": "2.21.0", "horovod": "0.28.1", "numpy": "2.4.6", "mpi4py": "4.1.2", "h5py": "3.14.0"}


def _fake_stack(monkeypatch, versions: dict[str, str]) -> None:
    """Stand-ins for the stack's modules, each answering with ``versions[name]``."""
    for name in STACK_PACKAGES:
        monkeypatch.setitem(sys.modules, name, types.SimpleNamespace(__version__=versions[name]))
    monkeypatch.setattr(selftest, "keras_api", lambda tf: "tf-keras 2.21.0")
    monkeypatch.setattr(selftest.metadata, "version", lambda name: versions["tensorflow"])
    monkeypatch.setattr(selftest.platform, "python_version", lambda: "3.11.2")


def _record(capsys) -> dict:
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{selftest.MARK} ")
    return json.loads(line.split(" ", 1)[1])


def test_versions_checks_every_package_of_the_stack(tmp_path, monkeypatch, capsys):
    """Each of STACK_PACKAGES is compared with its pin; one that differs (here h5py) is named."""
    provenance = tmp_path / "provenance.json"
    stack = {**PINS, "python": "3.11", "tensorflow_package": "tensorflow-cpu", "keras": "tf-keras"}
    provenance.write_text(json.dumps({"stack": stack}))
    monkeypatch.setenv(PROVENANCE_VARIABLE, str(provenance))
    _fake_stack(monkeypatch, PINS)
    assert selftest.check_versions()
    record = _record(capsys)
    assert set(record["got"]) == {"python", "tensorflow_package", "keras", *STACK_PACKAGES}
    _fake_stack(monkeypatch, {**PINS, "h5py": "3.13.0"})
    assert not selftest.check_versions()
    assert _record(capsys)["mismatches"] == ["h5py"]
