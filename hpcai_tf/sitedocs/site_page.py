"""Generated site tutorials: ``docs/sites/<id>.md`` from the catalog, the rendered recipe and the launcher.

Each page says what the system is, what its image holds (the build steps and pins), how to build it and how to
run on it; ``hpcai docs`` writes them and a test keeps them in sync with the catalog. Whether the image builds
on the kit's reference machine is :func:`hpcai_tf.image.host.build_blockers`, the check ``hpcai build`` runs.
"""

from __future__ import annotations

import jinja2

from hpcai_tf.catalog import NodeType, Site
from hpcai_tf.image.host import REFERENCE_HOST, build_blockers
from hpcai_tf.paths import DOCS_DIR
from hpcai_tf.recipes.render import image_tag, render_steps, sif_name

LAUNCH_NOTES = {
    "mpirun": "The job script starts the ranks with the host's `mpirun`, one per {unit}, each running "
    "`{runtime} exec{flag} IMAGE hpcai train ...`: the hybrid model, where the image's Open MPI "
    "{image_mpi} talks to the host's {host_mpi} through {pmi}.",
    "srun": "The job script starts the ranks with `srun --mpi={pmi}`, one per {unit}, each running "
    "`{runtime} exec{flag} IMAGE hpcai train ...`: Slurm's PMIx server wires up the image's Open MPI "
    "{image_mpi} (hybrid model).",
    "jsrun": "The job script starts the ranks with `jsrun` resource sets (by default one GPU, one rank and "
    "7 cores per set, 6 sets per node), each running `{runtime} exec{flag} IMAGE hpcai train ...` with the host's "
    "{host_mpi} bound into the image (bind model): the image's own Open MPI {image_mpi} is only its "
    "build-time stand-in.",
}


def site_page(site: Site) -> str:
    """The Markdown tutorial of one site."""
    node = site.node_type()
    notes = LAUNCH_NOTES[site.scheduler.launcher].format(
        unit="GPU" if node.gpus else "core",
        runtime=site.runtime.command,
        flag=f" {site.runtime.gpu_flag}" if site.runtime.gpu_flag else "",
        image_mpi=site.mpi.image_version,
        host_mpi=f"{site.mpi.flavour} {site.mpi.host_version}",
        pmi=site.mpi.pmi,
    )
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(DOCS_DIR / "templates")),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    blockers = build_blockers(site, REFERENCE_HOST)
    return env.get_template("site.md.j2").render(
        site=site,
        steps=render_steps(site),
        tag=image_tag(site),
        sif=sif_name(site),
        blockers=[b.reason for b in blockers],
        example_nodes=1 if site.partitions[0].max_nodes == 1 and len(site.partitions) == 1 else 2,
        launch_notes=notes,
        scale_counts=",".join(str(n) for n in example_counts(node)),
    )


def example_counts(node: NodeType) -> list[int]:
    """Rank counts for a site's example scaling study: 1, one node, then 2 and 4 nodes where the site has them."""
    return sorted({1, *(node.devices * nodes for nodes in (1, 2, 4) if nodes <= node.count)})
