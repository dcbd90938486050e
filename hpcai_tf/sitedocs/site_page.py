"""Generated site tutorials: ``docs/sites/<id>.md`` from the catalog, the rendered recipe and the launcher.

Each page says what the system is, what its image holds (the build steps and pins), how to build it and how to
run on it; ``hpcai docs`` writes them and a test keeps them in sync with the catalog. Whether the image builds
on the kit's reference machine is :func:`hpcai_tf.image.host.build_blockers`, the check ``hpcai build`` runs.
"""

from __future__ import annotations

from hpcai_tf.catalog import NodeType, Site
from hpcai_tf.image.host import REFERENCE_HOST, build_blockers
from hpcai_tf.paths import DOCS_DIR
from hpcai_tf.recipes.image_labels import PIN_PREFIX
from hpcai_tf.recipes.render import image_tag, jinja_environment, native_pins, render_steps, sif_name, stack_pins
from hpcai_tf.train.image_contract import IMAGE_PATHS

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
    blockers = build_blockers(site, REFERENCE_HOST)
    template = jinja_environment(DOCS_DIR / "templates").get_template("site.md.j2")
    return template.render(
        site=site,
        pins=pins_text(site),
        pin_prefix=PIN_PREFIX,
        kit_dir=IMAGE_PATHS.kit,
        steps=render_steps(site),
        tag=image_tag(site),
        sif=sif_name(site),
        blockers=[b.reason for b in blockers],
        example_nodes=1 if site.partitions[0].max_nodes == 1 and len(site.partitions) == 1 else 2,
        launch_notes=notes,
        scale_counts=",".join(str(n) for n in example_counts(node)),
    )


PIN_TITLES = {
    "python": "Python",
    "cuda": "CUDA",
    "cudnn": "cuDNN",
    "nccl": "NCCL",
    "horovod": "Horovod",
    "numpy": "NumPy",
}
"""How the page names a pin, where not by its name."""


def pins_text(site: Site) -> list[str]:
    """Each pin of the image as the page says it: what the stack runs on, then its Python packages."""
    stack = site.stack
    texts = {name: f"{PIN_TITLES.get(name, name)} {version}" for name, version in native_pins(site).items()}
    texts["mpi"] = f"Open MPI {site.mpi.image_version} in the image"
    for name, version in stack_pins(site).items():
        texts[name] = f"{PIN_TITLES.get(name, name)} {version}"
    texts["tensorflow"] = f"{stack.tensorflow_package} {stack.tensorflow}"
    if stack.horovod_patches:
        texts["horovod"] += f" with patches {', '.join(stack.horovod_patches)}"
    return list(texts.values())


def example_counts(node: NodeType) -> list[int]:
    """Rank counts for a site's example scaling study: 1, one node, then 2 and 4 nodes where the site has them."""
    return sorted({1, *(node.devices * nodes for nodes in (1, 2, 4) if nodes <= node.count)})
