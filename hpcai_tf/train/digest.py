"""Digest of a model's trainable weights: equal digests mean bitwise-equal weights."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import numpy as np


def weights_digest(variables: Iterable[Any]) -> str:
    """SHA-256 over the names, shapes, dtypes and bytes of ``variables``, in order."""
    digest = hashlib.sha256()
    for variable in variables:
        value = np.ascontiguousarray(variable.numpy())
        digest.update(f"{variable.name}|{value.shape}|{value.dtype}|".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def average_non_trainable(model: Any, ranks: Any) -> None:
    """Average non-trainable float variables (BatchNorm moving statistics) over ranks, in place.

    Under Horovod each rank normalises its own data, so the moving statistics drift apart; averaging them
    makes every rank hold the same model before a checkpoint or an evaluation.
    """
    if ranks.size == 1 or ranks.hvd is None:
        return
    for index, variable in enumerate(model.non_trainable_variables):
        if variable.dtype.is_floating:
            averaged = ranks.hvd.allreduce(variable.value(), op=ranks.hvd.Average, name=f"hpcai.bn_average.{index}")
            variable.assign(averaged)
