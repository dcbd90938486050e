"""TensorBoard scalars written with TensorFlow alone.

``tf.summary.scalar`` lives in the tensorboard package, which TensorFlow >= 2.16 no longer installs (TF 2.21 raises
TBNotInstalledError without it). ``tf.summary.write`` is TensorFlow's own; with the scalar plugin's metadata the
event file is the same one ``tf.summary.scalar`` writes, on TensorFlow 2.15 and 2.21 alike.
"""

from __future__ import annotations

from typing import Any

SCALARS_PLUGIN = "scalars"
"""The TensorBoard plugin that shows a tag as a scalar curve; its plugin data is empty (version 0)."""


def scalar_metadata() -> Any:
    """SummaryMetadata that marks a summary as a scalar of TensorBoard's scalars plugin."""
    from tensorflow.core.framework import summary_pb2

    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=SCALARS_PLUGIN, content=b""),
        data_class=summary_pb2.DATA_CLASS_SCALAR,
    )


def write_scalar(tf: Any, name: str, value: float) -> bool:
    """Write ``value`` as scalar ``name`` at the default writer's step; False when no writer is the default."""
    return bool(tf.summary.write(name, tf.constant(value, dtype=tf.float32), metadata=scalar_metadata()))
