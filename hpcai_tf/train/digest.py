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
