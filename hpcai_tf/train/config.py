"""Run configuration: the packaged per-workload TOML, the smoke preset, a user file, then flags.

The packaged file is also the schema: a user file or ``--set`` may only name keys it has, with values of the
same type. The resolved configuration is a plain nested dict (it goes into ``metrics.jsonl`` as is).
"""

from __future__ import annotations

import copy
import importlib.resources
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hpcai_tf.errors import KitError
from hpcai_tf.train import WORKLOADS

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10 images ship tomli
    import tomli as tomllib  # type: ignore[no-redef]

Config = dict[str, Any]


def packaged_config_text(workload: str) -> str:
    """The text of ``configs/<workload>.toml`` shipped with the package."""
    check_workload(workload)
    return (importlib.resources.files("hpcai_tf.train") / "configs" / f"{workload}.toml").read_text("utf-8")


def check_workload(workload: str) -> None:
    if workload not in WORKLOADS:
        raise KitError(f"unknown workload '{workload}' (expected one of {', '.join(WORKLOADS)})")


def load_toml_file(path: str | os.PathLike[str]) -> Config:
    """Parse a TOML file; a missing or malformed file is a one-line error naming it."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise KitError(f"{path}: config file not found") from None
    except OSError as err:
        raise KitError(f"{path}: cannot read config file ({err.strerror})") from None
    except UnicodeDecodeError as err:
        raise KitError(f"{path}: not UTF-8 text (byte {err.start}); expected a TOML config file") from None
    except tomllib.TOMLDecodeError as err:
        raise KitError(f"{path}: not valid TOML ({err})") from None


def _type_name(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _checked(default: Any, value: Any, where: str) -> Any:
    """``value`` if it has the type of ``default`` (ints are accepted for floats); else a KitError."""
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(default, bool) and isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float))
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise KitError(f"{where}: expected {_type_name(default)}, got {value!r}")
    if isinstance(default, list) and default:
        value = [_checked_item(default[0], item, f"{where}[{i}]") for i, item in enumerate(value)]
    return value


def _checked_item(default: Any, item: Any, where: str) -> Any:
    if isinstance(default, dict):
        if not isinstance(item, dict):
            raise KitError(f"{where}: expected a table, got {item!r}")
        missing = sorted(set(default) - set(item))
        if missing:
            raise KitError(f"{where}: missing key '{missing[0]}'")
        return merge_checked(default, item, where)
    return _checked(default, item, where)


def merge_checked(base: Mapping[str, Any], override: Mapping[str, Any], source: str, prefix: str = "") -> Config:
    """``base`` updated from ``override``; an unknown key or a wrong type names ``source`` and the key."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        dotted = f"{prefix}{key}"
        if key not in base:
            known = ", ".join(sorted(base))
            raise KitError(f"{source}: unknown key '{dotted}' (known here: {known})")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise KitError(f"{source}: '{dotted}' must be a table")
            merged[key] = merge_checked(base[key], value, source, f"{dotted}.")
        else:
            merged[key] = _checked(base[key], value, f"{source}: '{dotted}'")
    return merged


def parse_set_option(text: str) -> tuple[list[str], Any]:
    """``model.channels=32`` as (["model", "channels"], 32); the value is parsed as a TOML value."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise KitError(f"--set {text}: expected KEY=VALUE, e.g. --set model.channels=32")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # a bare word is a string
    return key.strip().split("."), value


def _nest(path: list[str], value: Any) -> Config:
    nested: Config = {path[-1]: value}
    for key in reversed(path[:-1]):
        nested = {key: nested}
    return nested


def resolve_config(
    workload: str,
    *,
    smoke: bool = False,
    config_file: str | os.PathLike[str] | None = None,
    sets: Iterable[str] = (),
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """The configuration of one run: packaged defaults < smoke preset < user file < ``--set`` < flags."""
    check_workload(workload)
    source = f"configs/{workload}.toml"
    packaged = tomllib.loads(packaged_config_text(workload))
    smoke_table = packaged.pop("smoke", {})
    config = copy.deepcopy(packaged)
    if smoke:
        config = merge_checked(config, smoke_table, f"{source} [smoke]")
    if config_file is not None:
        user = load_toml_file(config_file)
        user_smoke = user.pop("smoke", {})
        if user.get("workload", workload) != workload:
            raise KitError(f"{config_file}: 'workload' is '{user['workload']}', but the run is '{workload}'")
        config = merge_checked(config, user, str(config_file))
        if smoke:
            config = merge_checked(config, user_smoke, f"{config_file} [smoke]")
    for text in sets:
        path, value = parse_set_option(text)
        config = merge_checked(config, _nest(path, value), f"--set {text}")
    for key, value in (overrides or {}).items():
        if value is not None:
            config = merge_checked(config, _nest(key.split("."), value), f"--{key.replace('_', '-')}")
    validate_config(config, source)
    return config


def validate_config(config: Config, source: str) -> None:
    """Range checks the types alone do not catch."""

    def positive(key: str, value: float) -> None:
        if value <= 0:
            raise KitError(f"{source}: '{key}' must be > 0, got {value}")

    positive("epochs", config["epochs"])
    positive("batch_per_rank", config["batch_per_rank"])
    positive("optimizer.lr", config["optimizer"]["lr"])
    if config["optimizer"]["name"] not in ("adam", "sgd"):
        raise KitError(f"{source}: 'optimizer.name' must be 'adam' or 'sgd', got '{config['optimizer']['name']}'")
    if config["optimizer"]["schedule"] not in ("constant", "cosine", "step"):
        raise KitError(f"{source}: 'optimizer.schedule' must be constant, cosine or step")
    if not 0.0 <= config["validation_fraction"] < 1.0:
        raise KitError(f"{source}: 'validation_fraction' must be in [0, 1)")
    positive("preemption_check_steps", config["preemption_check_steps"])
    if config["steps_per_epoch"] < 0:
        raise KitError(f"{source}: 'steps_per_epoch' must be >= 0")
    if "stages" in config:
        total = sum(stage["epochs"] for stage in config["stages"])
        if not config["stages"] or total <= 0:
            raise KitError(f"{source}: 'stages' needs at least one stage with epochs > 0")
        config["epochs"] = min(config["epochs"], total)
