"""A site's calibration: what ``hpcai calibrate`` measured and fitted there, as ``runs/calibration/<site>.json``.

The file holds its provenance (site, host, date, image, threads and ranks, the stack it measured and the site's pins
at the time), the fitted link within a node (latency, bandwidth, and the reduction's seconds per byte, with the
probe's points), the same between two emulated nodes when measured (``link_across_nodes``, else null), and per
workload the measured compute (step times alone on the node and with ``ranks`` copies at once, per epoch), the
allreduce of its gradients as one training step issues them, and the per-step overhead fitted from that.
:func:`read_calibration` refuses, in one line naming the file, a file with a missing or wrong field, one made for
another site, and one whose pins differ from the site's pins now (the image it measured is not the one the catalog
would build).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from hpcai_tf.catalog import Site
from hpcai_tf.errors import KitError
from hpcai_tf.files import read_text_file
from hpcai_tf.paths import KIT_ROOT

FORMAT = "hpcai-calibration/3"
"""Version 3 keeps the step times per epoch (version 2 kept their means and pooled the spread over the epochs);
version 2 measured when each gradient becomes ready and the allreduce's speed beside the backward pass, where
version 1 had a compute-loop overlap share."""
CALIBRATION_DIR = KIT_ROOT / "runs" / "calibration"
PINNED = ("python", "tensorflow", "tensorflow_package", "keras", "numpy", "horovod", "horovod_patches", "mpi4py")
"""The site's stack fields a calibration is only valid for: a change of any is another image."""


def default_path(site_id: str) -> Path:
    """Where ``hpcai calibrate`` writes and ``hpcai estimate`` looks for a site's calibration."""
    return CALIBRATION_DIR / f"{site_id}.json"


def site_pins(site: Site) -> dict[str, Any]:
    """The stack fields of ``site`` a calibration records and is checked against, plus its MPI."""
    stack = site.stack.model_dump()
    return {**{name: stack[name] for name in PINNED}, "mpi": site.mpi.model_dump()}


@dataclass(frozen=True)
class LinkCalibration:
    """The link the probe measured (within one node here), fitted; ``points`` are the probe's timings."""

    level: str
    ranks: int
    latency_s: float
    bandwidth: float
    """Bytes per second."""
    reduction_s_per_byte: float
    worst_residual: float
    points: list[dict[str, float]]


@dataclass(frozen=True)
class WorkloadCalibration:
    """One workload's measured compute and communication on the site."""

    batch_per_device: int
    step_time_epochs_s: list[float]
    """Mean step time of one rank alone on the node, per epoch after the first."""
    shared_step_time_epochs_s: list[float]
    """Mean step time of ``ranks`` ranks running at once, independently (the node's devices all busy), per epoch
    after the first: the ranks' mean in each."""
    shared_step_quantiles_s: list[list[float]]
    """Those ranks' per-step times at every 5th percentile, per epoch after the first (the ranks' 21 each, pooled):
    the spread from which the slowest of p ranks is taken."""
    gradient_bytes: int
    gradient_tensors: int
    gradient_allreduce_s: float
    """The probe's allreduce of all the workload's gradients as one step issues them, over ``ranks`` ranks."""
    gradient_ready: list[list[float]]
    """[bytes, share of the step] per gradient tensor in the model's order: when in a 1-rank step Horovod
    enqueued its allreduce (the backward probe's)."""
    probe_step_s: float
    """The probe's forward and backward pass of the workload on ``ranks`` ranks at once, no allreduce."""
    probe_step_with_allreduce_s: float
    """The same with each gradient's allreduce issued as Horovod's Keras optimizer issues it."""
    beside_rate: float
    """The allreduce's speed beside the backward pass as a share of its speed alone: the rate at which the
    schedule of :func:`hpcai_tf.scaling.estimate.allreduce_finish` exposes what the probe's two passes differ by."""
    step_overhead_s: float
    """``gradient_allreduce_s`` beyond the fitted link's time for the fused buffers: Horovod's negotiation, cycle
    and per-tensor work, paid once per multi-rank step."""
    train_args: list[str]

    @property
    def step_time_s(self) -> float:
        """Step time alone over the measured epochs: batch over their mean samples per second (the harmonic mean
        of their step times), as a scaling report averages a run's epochs."""
        return statistics.harmonic_mean(self.step_time_epochs_s)

    @property
    def shared_step_time_s(self) -> float:
        """Step time with the node's devices all busy over the measured epochs, averaged the same way."""
        return statistics.harmonic_mean(self.shared_step_time_epochs_s)


@dataclass(frozen=True)
class Calibration:
    """A site's calibration file."""

    site: str
    provenance: dict[str, Any]
    link: LinkCalibration
    workloads: dict[str, WorkloadCalibration]
    link_across_nodes: LinkCalibration | None = None
    """Fitted between two emulated nodes (``hpcai calibrate --across-nodes``); None when not measured."""
    path: Path | None = None

    def to_json(self) -> str:
        data = {"format": FORMAT, "site": self.site, "provenance": self.provenance, "link": asdict(self.link)}
        data["link_across_nodes"] = asdict(self.link_across_nodes) if self.link_across_nodes else None
        data["workloads"] = {name: asdict(entry) for name, entry in sorted(self.workloads.items())}
        return json.dumps(data, indent=2) + "\n"


def _field(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in data:
        raise KitError(f"{where}: missing field '{key}'")
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        expected = "a number" if kind == (int, float) else f"a {getattr(kind, '__name__', kind)}"
        raise KitError(f"{where}: field '{key}' is {value!r}, expected {expected}")
    if kind == (int, float) and not (value >= 0 and value != float("inf")):
        raise KitError(f"{where}: field '{key}' is {value!r}, expected a finite number >= 0")
    return value


NUMBER = (int, float)


def _link(data: Mapping[str, Any], where: str, key: str = "link") -> LinkCalibration:
    where = f"{where}: {key}"
    values = {
        "level": _field(data, "level", str, where),
        "ranks": _field(data, "ranks", int, where),
        "points": _field(data, "points", list, where),
    }
    for key in ("latency_s", "bandwidth", "reduction_s_per_byte", "worst_residual"):
        values[key] = float(_field(data, key, NUMBER, where))
    if values["ranks"] < 2 or values["bandwidth"] <= 0:
        raise KitError(f"{where}: expected ranks >= 2 and bandwidth > 0")
    return LinkCalibration(**values)


def _workload(name: str, data: Mapping[str, Any], where: str) -> WorkloadCalibration:
    where = f"{where}: workloads.{name}"
    values: dict[str, Any] = {
        "batch_per_device": _field(data, "batch_per_device", int, where),
        "gradient_bytes": _field(data, "gradient_bytes", int, where),
        "gradient_tensors": _field(data, "gradient_tensors", int, where),
        "train_args": _field(data, "train_args", list, where),
    }
    for key in (
        "gradient_allreduce_s",
        "probe_step_s",
        "probe_step_with_allreduce_s",
        "beside_rate",
        "step_overhead_s",
    ):
        values[key] = float(_field(data, key, NUMBER, where))
    if values["beside_rate"] > 1:
        raise KitError(f"{where}: field 'beside_rate' is {values['beside_rate']}, expected 0 to 1")
    ready = _field(data, "gradient_ready", list, where)
    if not ready or not all(_is_ready_pair(pair) for pair in ready):
        raise KitError(f"{where}: field 'gradient_ready' must be a non-empty list of [bytes > 0, share 0 to 1]")
    values["gradient_ready"] = [[float(size), float(share)] for size, share in ready]
    for key in ("step_time_epochs_s", "shared_step_time_epochs_s"):
        values[key] = _positive_numbers(_field(data, key, list, where), key, where)
    quantiles = _field(data, "shared_step_quantiles_s", list, where)
    if len(quantiles) != len(values["shared_step_time_epochs_s"]) or not all(isinstance(q, list) for q in quantiles):
        raise KitError(f"{where}: field 'shared_step_quantiles_s' must hold one list per shared epoch")
    values["shared_step_quantiles_s"] = [
        _positive_numbers(q, f"shared_step_quantiles_s[{i}]", where) for i, q in enumerate(quantiles)
    ]
    return WorkloadCalibration(**values)


def _positive_numbers(values: list, key: str, where: str) -> list[float]:
    """``values`` as floats; refused unless a non-empty list of finite numbers > 0."""
    if not values or not all(_positive(v) for v in values):
        raise KitError(f"{where}: field '{key}' must be a non-empty list of finite positive numbers")
    return [float(v) for v in values]


def _positive(value: Any) -> bool:
    return isinstance(value, NUMBER) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _is_ready_pair(pair: Any) -> bool:
    """One [bytes, share of the step] entry of ``gradient_ready``."""
    if not isinstance(pair, list) or len(pair) != 2:
        return False
    if any(isinstance(x, bool) or not isinstance(x, NUMBER) for x in pair):
        return False
    return pair[0] > 0 and 0 <= pair[1] <= 1


def parse_calibration(data: Any, where: str) -> Calibration:
    """A calibration from its JSON value; a KitError naming ``where`` and the field if anything is off."""
    if not isinstance(data, dict):
        raise KitError(f"{where}: expected a JSON object")
    if data.get("format") != FORMAT:
        raise KitError(f"{where}: field 'format' is {data.get('format')!r}, expected {FORMAT!r}")
    site = _field(data, "site", str, where)
    provenance = _field(data, "provenance", dict, where)
    for key in ("host", "date", "image", "threads_per_rank", "ranks", "stack", "pins"):
        _field(provenance, key, (str, int, dict, list), f"{where}: provenance")
    workloads = _field(data, "workloads", dict, where)
    if "link_across_nodes" not in data:
        raise KitError(f"{where}: missing field 'link_across_nodes' (null when not measured)")
    across = data["link_across_nodes"]
    if across is not None and not isinstance(across, dict):
        raise KitError(f"{where}: field 'link_across_nodes' is {across!r}, expected an object or null")
    return Calibration(
        site=site,
        provenance=provenance,
        link=_link(_field(data, "link", dict, where), where),
        workloads={name: _workload(name, entry, where) for name, entry in workloads.items()},
        link_across_nodes=_link(across, where, "link_across_nodes") if across is not None else None,
    )


def read_calibration(path: Path, site: Site) -> Calibration:
    """The calibration in ``path`` for ``site``; refused in one line if malformed, of another site or stale."""
    where = str(path)
    try:
        data = json.loads(read_text_file(path, "calibration file"))
    except json.JSONDecodeError as err:
        raise KitError(f"{where}: not JSON ({err.msg}, line {err.lineno})") from None
    calibration = parse_calibration(data, where)
    if calibration.site != site.id:
        raise KitError(f"{where}: a calibration of site '{calibration.site}', not of '{site.id}'")
    recorded, now = calibration.provenance["pins"], site_pins(site)
    for name in now:
        if recorded.get(name) != now[name]:
            raise KitError(
                f"{where}: measured with {name} {recorded.get(name)!r}, but site {site.id} now pins {now[name]!r}; "
                f"run hpcai calibrate --site {site.id} again"
            )
    return replace(calibration, path=path)
