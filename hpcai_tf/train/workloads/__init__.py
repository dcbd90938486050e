"""The three workloads behind one interface (:class:`~hpcai_tf.train.workloads.base.Workload`)."""

from __future__ import annotations

import importlib

from hpcai_tf.train.config import check_workload
from hpcai_tf.train.workloads.base import Workload

_MODULES = {"gw": "gw", "des": "des", "resnet50": "resnet50"}


def get_workload(name: str) -> Workload:
    """The workload named ``name`` (gw, des or resnet50)."""
    check_workload(name)
    module = importlib.import_module(f"{__name__}.{_MODULES[name]}")
    return module.WORKLOAD
