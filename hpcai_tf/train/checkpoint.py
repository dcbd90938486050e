"""Checkpoints: one HDF5 file per run holding model and optimizer variables by name, the training state and
the resolved configuration. Written atomically (temporary file, fsync, rename), so a killed job leaves the
last complete checkpoint in place.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from hpcai_tf import __version__
from hpcai_tf.errors import KitError
from hpcai_tf.train.atomic import atomic_path

CHECKPOINT_FILE = "checkpoint.h5"
FORMAT = "hpcai-checkpoint-1"


@dataclass
class Checkpoint:
    """The content of a checkpoint file, as NumPy arrays keyed by variable name."""

    workload: str
    config: dict[str, Any]
    state: dict[str, Any]
    model: dict[str, np.ndarray] = field(default_factory=dict)
    optimizer: dict[str, np.ndarray] = field(default_factory=dict)


def variables_by_name(
    variables: Iterable[Any], read: Callable[[Any], np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """``{name: value}`` of TensorFlow variables (names are unique in a Keras model with named layers); ``read``
    reads a value (default ``variable.numpy()``; a backend's read of this rank's copy)."""
    values: dict[str, np.ndarray] = {}
    for variable in variables:
        if variable.name in values:
            raise ValueError(f"two variables are named {variable.name}")
        values[variable.name] = read(variable) if read else variable.numpy()
    return values


def save_checkpoint(path: str | os.PathLike[str], checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` to ``path`` atomically."""
    with atomic_path(path, suffix=".h5") as tmp, h5py.File(tmp, "w") as h5:
        h5.attrs["format"] = FORMAT
        h5.attrs["kit_version"] = __version__
        h5.attrs["workload"] = checkpoint.workload
        h5.attrs["config"] = json.dumps(checkpoint.config)
        h5.attrs["state"] = json.dumps(checkpoint.state)
        for group_name, values in (("model", checkpoint.model), ("optimizer", checkpoint.optimizer)):
            group = h5.create_group(group_name)
            for index, (name, value) in enumerate(values.items()):
                dataset = group.create_dataset(f"{index:06d}", data=value)
                dataset.attrs["name"] = name


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint; a missing, truncated or foreign file is a one-line error naming it."""
    path = Path(path)
    if not path.is_file():
        raise KitError(f"{path}: checkpoint not found")
    try:
        with h5py.File(path, "r") as h5:
            if h5.attrs.get("format") != FORMAT:
                raise KitError(f"{path}: not an hpcai checkpoint (expected format {FORMAT})")
            groups = {}
            for group_name in ("model", "optimizer"):
                group = h5[group_name]
                groups[group_name] = {str(group[key].attrs["name"]): group[key][()] for key in sorted(group)}
            return Checkpoint(
                workload=str(h5.attrs["workload"]),
                config=json.loads(h5.attrs["config"]),
                state=json.loads(h5.attrs["state"]),
                model=groups["model"],
                optimizer=groups["optimizer"],
            )
    except KitError:
        raise
    except (OSError, KeyError, ValueError) as err:
        reason = str(err).split("\n")[0]
        raise KitError(f"{path}: unreadable checkpoint (truncated or corrupt HDF5: {reason})") from None


def assign_by_name(variables: Iterable[Any], values: Mapping[str, np.ndarray], source: str, what: str) -> None:
    """Assign ``values`` to ``variables`` by name; every variable must be present with its shape."""
    for variable in variables:
        if variable.name not in values:
            raise KitError(f"{source}: the {what} variable '{variable.name}' is missing from the checkpoint")
        value = values[variable.name]
        if tuple(value.shape) != tuple(variable.shape):
            raise KitError(
                f"{source}: {what} variable '{variable.name}' has shape {tuple(value.shape)} in the "
                f"checkpoint, the model built from the config expects {tuple(variable.shape)}"
            )
        variable.assign(value)


def remove_stale_temporaries(run_dir: Path) -> None:
    """Remove the temporary files of checkpoint writes that a killed job left behind."""
    for stale in run_dir.glob(f".{CHECKPOINT_FILE}.*.tmp.h5"):
        stale.unlink(missing_ok=True)
