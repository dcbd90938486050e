"""The first record of ``metrics.jsonl``: what ran, where, with which stack and which image."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hpcai_tf import __version__
from hpcai_tf.errors import KitError
from hpcai_tf.train.image_contract import IMAGE_PATHS, PROVENANCE_VARIABLE, SITE_VARIABLE
from hpcai_tf.train.options import DEFAULT_BACKEND

DEFAULT_PROVENANCE_PATH = IMAGE_PATHS.provenance
ENV_PREFIXES = ("HOROVOD_", "NCCL_", "OMPI_MCA_")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def image_provenance(env: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The image's ``provenance.json`` (path from ``HPCAI_PROVENANCE``), or None outside an image."""
    env = os.environ if env is None else env
    path = Path(env.get(PROVENANCE_VARIABLE, DEFAULT_PROVENANCE_PATH))
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise KitError(f"{path} ({PROVENANCE_VARIABLE}): not readable JSON ({err})") from None
    if not isinstance(data, dict):
        raise KitError(f"{path} ({PROVENANCE_VARIABLE}): expected a JSON object")
    return data


def distributed_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The Horovod, NCCL and Open MPI MCA settings of this process, and TF_CONFIG under ``--backend mwms``."""
    env = os.environ if env is None else env
    return {k: v for k, v in sorted(env.items()) if k.startswith(ENV_PREFIXES) or k == "TF_CONFIG"}


def mpi_library_version() -> str | None:
    """First line of the MPI library's version string (via mpi4py, without initialising MPI)."""
    try:
        import mpi4py

        mpi4py.rc.initialize = False
        mpi4py.rc.finalize = False
        from mpi4py import MPI

        return MPI.Get_library_version().strip().splitlines()[0]
    except Exception:  # mpi4py missing or built against another MPI: record that it is unknown
        return None


def horovod_build() -> dict[str, Any]:
    import horovod
    import horovod.tensorflow as hvd

    return {
        "version": horovod.__version__,
        "mpi_built": bool(hvd.mpi_built()),
        "gloo_built": bool(hvd.gloo_built()),
        "nccl_built": bool(hvd.nccl_built()),
        "mpi_enabled": bool(hvd.mpi_enabled()),
    }


def provenance_record(
    *,
    workload: str,
    config: Mapping[str, Any],
    ranks: int,
    hostnames: list[str],
    started: str,
    data: Mapping[str, Any],
    resumed_from: Mapping[str, Any] | None,
    launcher: str | None,
    backend: str = DEFAULT_BACKEND,
    backend_settings: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The record; Horovod's build is read only under ``--backend horovod`` (an MWMS run needs no Horovod)."""
    import tensorflow as tf

    build = horovod_build() if backend == "horovod" else None
    return {
        "type": "provenance",
        "workload": workload,
        "config": dict(config),
        "seed": config["seed"],
        "ranks": ranks,
        "kit_version": __version__,
        "tensorflow": tf.__version__,
        "backend": backend,
        "backend_settings": dict(backend_settings or {}),
        "horovod": build and build["version"],
        "horovod_build": build,
        "mpi": mpi_library_version(),
        "python": platform.python_version(),
        "threads_per_rank": {
            "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
        },
        "env": distributed_env(),
        "image": image_provenance(),
        "site": os.environ.get(SITE_VARIABLE),
        "hostnames": hostnames,
        "launcher": launcher,
        "data": dict(data),
        "resumed_from": dict(resumed_from) if resumed_from else None,
        "started": started,
    }
