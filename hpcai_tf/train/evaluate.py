"""``hpcai evaluate``: the workload's quality figure from a checkpoint, in one process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpcai_tf.errors import KitError
from hpcai_tf.train.checkpoint import assign_by_name, load_checkpoint
from hpcai_tf.train.distributed import Ranks, seed_everything
from hpcai_tf.train.workloads import get_workload
from hpcai_tf.train.workloads.base import RunContext


def evaluate_checkpoint(workload_name: str, checkpoint_path: str | Path, data: str | None = None) -> dict[str, Any]:
    """{"workload", "checkpoint", "epoch", "step", "data", "quality"} of the checkpoint's model."""
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    workload = get_workload(workload_name)
    checkpoint = load_checkpoint(checkpoint_path)
    if checkpoint.workload != workload_name:
        raise KitError(f"{checkpoint_path}: a {checkpoint.workload} checkpoint, not {workload_name}")
    config = checkpoint.config
    data_path = data or config.get("run", {}).get("data")
    if not data_path and not config["data"].get("synthetic"):
        raise KitError(f"{checkpoint_path}: records no data path; pass --data")
    seed_everything(config["seed"], deterministic=False)
    context = RunContext(config, Ranks(), run_dir=None, data_path=Path(data_path) if data_path else None)
    prepared = workload.prepare_data(context)
    model = workload.build_model(context, prepared)
    assign_by_name(model.variables, checkpoint.model, str(checkpoint_path), "model")
    return {
        "workload": workload_name,
        "checkpoint": str(Path(checkpoint_path).absolute()),
        "epoch": checkpoint.state["epoch"],
        "step": checkpoint.state["step"],
        "data": str(data_path) if data_path else None,
        "quality": workload.quality(context, model, prepared),
    }
