"""The provenance record's image and environment parts (the interface with the images' provenance.json)."""

from __future__ import annotations

import json

import pytest

from hpcai_tf.errors import KitError
from hpcai_tf.train.provenance import distributed_env, image_provenance, mpi_library_version


def test_image_provenance_from_the_path_in_the_environment(tmp_path):
    path = tmp_path / "provenance.json"
    path.write_text(json.dumps({"site": "hal", "labels": {"org.hpcai.site": "hal"}}))
    expected = {"site": "hal", "labels": {"org.hpcai.site": "hal"}}
    assert image_provenance({"HPCAI_PROVENANCE": str(path)}) == expected
    assert image_provenance({"HPCAI_PROVENANCE": str(tmp_path / "absent.json")}) is None


def test_unreadable_image_provenance_names_the_file(tmp_path):
    path = tmp_path / "provenance.json"
    path.write_text("{not json")
    with pytest.raises(KitError, match=r"provenance\.json \(HPCAI_PROVENANCE\): not readable JSON"):
        image_provenance({"HPCAI_PROVENANCE": str(path)})
    path.write_text("[1, 2]")
    with pytest.raises(KitError, match="expected a JSON object"):
        image_provenance({"HPCAI_PROVENANCE": str(path)})


def test_distributed_environment_keeps_horovod_nccl_and_mca_variables():
    env = {"HOROVOD_CYCLE_TIME": "1", "NCCL_DEBUG": "INFO", "OMPI_MCA_btl": "^openib", "HOME": "/root",
           "OMPI_COMM_WORLD_RANK": "0"}  # fmt: skip
    expected = {"HOROVOD_CYCLE_TIME": "1", "NCCL_DEBUG": "INFO", "OMPI_MCA_btl": "^openib"}
    assert distributed_env(env) == expected


def test_mpi_library_version_without_initialising_mpi():
    assert mpi_library_version().startswith("Open MPI v4.1")
