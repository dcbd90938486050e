"""Configuration: packaged defaults, the smoke preset, user files, --set and flags, and their errors."""

from __future__ import annotations

import pytest

from hpcai_tf.errors import KitError
from hpcai_tf.train import WORKLOADS
from hpcai_tf.train.config import parse_set_option, resolve_config


@pytest.mark.parametrize("workload", WORKLOADS)
def test_packaged_config_and_smoke_preset_resolve(workload):
    full = resolve_config(workload)
    smoke = resolve_config(workload, smoke=True)
    assert full["workload"] == smoke["workload"] == workload
    assert smoke["epochs"] < full["epochs"]
    assert smoke["dataset_size"] == full["dataset_size"]  # the full-scale size, also in smoke runs


def test_paper_scale_defaults_follow_the_brief():
    resnet = resolve_config("resnet50")
    assert resnet["optimizer"]["lr"] == 0.1 and resnet["optimizer"]["lr_reference_batch"] == 256
    assert resnet["optimizer"]["warmup_epochs"] == 5 and resnet["optimizer"]["decay_epochs"] == [30, 60, 80]
    assert resnet["model"]["label_smoothing"] == 0.1 and resnet["model"]["image_size"] == 224
    des = resolve_config("des")
    assert des["batch_per_rank"] == 64 and des["optimizer"]["lr"] == 1e-4 and des["optimizer"]["warmup_epochs"] == 2
    assert [s["trainable_from"] for s in des["stages"]] == [-1, 40, 2]
    assert des["model"]["dense_units"] == 1024 and des["model"]["dropout"] == 0.7
    gw = resolve_config("gw")
    assert (gw["data"]["q_min"], gw["data"]["q_max"], gw["data"]["spin_max"]) == (1.0, 8.0, 0.8)


def test_user_file_overrides_and_flags_win(tmp_path):
    user = tmp_path / "my.toml"
    user.write_text("epochs = 7\n[model]\nchannels = 8\n[smoke]\nbatch_per_rank = 4\n")
    config = resolve_config("gw", smoke=True, config_file=user, sets=["model.stacks=3"], overrides={"epochs": 2})
    assert config["epochs"] == 2
    assert config["model"]["channels"] == 8 and config["model"]["stacks"] == 3
    assert config["batch_per_rank"] == 4


def test_unknown_key_names_the_file_and_key(tmp_path):
    user = tmp_path / "bad.toml"
    user.write_text("[model]\nchanels = 8\n")
    with pytest.raises(KitError, match=r"bad\.toml: unknown key 'model\.chanels'"):
        resolve_config("gw", config_file=user)


def test_wrong_type_names_the_key(tmp_path):
    user = tmp_path / "bad.toml"
    user.write_text('batch_per_rank = "big"\n')
    with pytest.raises(KitError, match=r"bad\.toml: 'batch_per_rank': expected an integer"):
        resolve_config("gw", config_file=user)


def test_malformed_toml_and_missing_file(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("epochs = = 3\n")
    with pytest.raises(KitError, match=r"broken\.toml: not valid TOML"):
        resolve_config("gw", config_file=broken)
    with pytest.raises(KitError, match=r"missing\.toml: config file not found"):
        resolve_config("gw", config_file=tmp_path / "missing.toml")


def test_workload_mismatch_in_user_file(tmp_path):
    user = tmp_path / "des.toml"
    user.write_text('workload = "des"\n')
    with pytest.raises(KitError, match="'workload' is 'des', but the run is 'gw'"):
        resolve_config("gw", config_file=user)


def test_range_checks():
    with pytest.raises(KitError, match="'epochs' must be > 0"):
        resolve_config("gw", overrides={"epochs": 0})
    with pytest.raises(KitError, match=r"optimizer\.name"):
        resolve_config("gw", sets=["optimizer.name=rmsprop"])


def test_des_epochs_cap_the_stages():
    assert resolve_config("des", overrides={"epochs": 2})["epochs"] == 2
    assert resolve_config("des", overrides={"epochs": 500})["epochs"] == 31


def test_set_option_parses_toml_values():
    assert parse_set_option("model.channels=32") == (["model", "channels"], 32)
    assert parse_set_option("data.synthetic=true") == (["data", "synthetic"], True)
    assert parse_set_option("optimizer.name=sgd") == (["optimizer", "name"], "sgd")
    with pytest.raises(KitError, match="expected KEY=VALUE"):
        parse_set_option("model.channels")


def test_unknown_workload():
    with pytest.raises(KitError, match="unknown workload 'bert'"):
        resolve_config("bert")
