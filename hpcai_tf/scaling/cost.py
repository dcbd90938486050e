"""Cloud-equivalent cost of runs: device-hours times a price per device-hour (the paper's cloud-vs-HPC view)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hpcai_tf.catalog import SITE_ID, Site
from hpcai_tf.errors import KitError
from hpcai_tf.scaling.report import Run, read_runs


def device_hours(ranks: int, seconds: float) -> float:
    """Device-hours of ``ranks`` devices busy for ``seconds``."""
    return ranks * seconds / 3600.0


def price_for(run: Run, price: float | None, site: Site | None, load_site: Callable[[str], Site]) -> float:
    """The price per device-hour: given, else the site's (given or the run's) default node type's."""
    if price is not None:
        if price <= 0:
            raise KitError(f"--price: expected a positive USD amount, got {price}")
        return price
    if site is None:
        if run.site == "host":
            raise KitError(f"{run.path}: the run names no site; give --price or --site")
        if not SITE_ID.fullmatch(run.site):
            raise KitError(f"{run.path}: provenance: site expected a site id, got {run.site[:40]!r}")
        site = load_site(run.site)
    catalog_price = site.node_type().cloud_price_per_device_hour
    if catalog_price is None:
        raise KitError(f"site {site.id} has no node_types.cloud_price_per_device_hour; give --price USD")
    return catalog_price


def run_costs(
    run_dirs: list[Path], price: float | None, site: Site | None, load_site: Callable[[str], Site]
) -> list[str]:
    """One line per run: its device-hours and cost, and the projected cost of a full training."""
    lines = []
    for run in read_runs(run_dirs):
        usd = price_for(run, price, site, load_site)
        used = device_hours(run.ranks, run.wall_time_s)
        full = device_hours(run.ranks, run.epochs_to_train * run.dataset_size / run.throughput)
        lines.append(
            f"{run.path.parent}: {run.ranks} devices x {run.wall_time_s:.1f} s = {used:.4f} device-h, "
            f"USD {used * usd:.4f}; full training ({run.epochs_to_train} epochs x {run.dataset_size:,} samples) "
            f"{full:,.1f} device-h, USD {full * usd:,.2f} at USD {usd:.2f}/device-h"
        )
    return lines
