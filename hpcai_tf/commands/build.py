"""``hpcai build``, ``base``, ``verify``, ``inspect``, ``export``, ``clean``: images from the rendered recipes."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from hpcai_tf.image.singularity import SQUASHFS_COMPRESSION
from hpcai_tf.paths import WHEELS_DIR
from hpcai_tf.train.image_contract import CONTEXT_PATHS, IMAGE_PATHS

RUNTIMES = ("docker", "singularity")


def _default_ca_bundle() -> str | None:
    """The CA bundle the host's own pip and requests use, when the environment names one."""
    for name in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        if os.environ.get(name):
            return os.environ[name]
    return None


def _optional_path(value: str) -> Path | None:
    return None if value.lower() == "none" else Path(value)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``build``, ``base``, ``verify``, ``inspect``, ``export`` and ``clean``."""
    build = sub.add_parser(
        "build",
        help="build a site's image (Docker, or Apptainer/Singularity)",
        description="Build the image of a site from its rendered recipe and tag it hpcai/<site>:<recipe hash>. "
        "Docker builds go through the Docker SDK to the engine at $DOCKER_HOST; Singularity builds convert the "
        "site's Docker image (docker-daemon://), else its exported docker-archive, else build the .def.",
    )
    target = build.add_mutually_exclusive_group(required=True)
    target.add_argument("--site", help="site id (containers/sites/<id>.toml)")
    target.add_argument(
        "--recipe",
        type=Path,
        metavar="DIR",
        help=f"build DIR/Dockerfile (or DIR/Singularity.def) from DIR's files plus {CONTEXT_PATHS.options}/ "
        "(e.g. a derived recipe from `hpcai extend`)",
    )
    build.add_argument("--runtime", choices=RUNTIMES, default="docker", help="image format (default: docker)")
    build.add_argument(
        "--ca-bundle",
        type=_optional_path,
        default=_default_ca_bundle(),
        metavar="FILE",
        help="CA bundle for HTTPS inside the build, for hosts behind an intercepting proxy "
        "(default: $PIP_CERT, $SSL_CERT_FILE or $REQUESTS_CA_BUNDLE; 'none' for no bundle)",
    )
    build.add_argument(
        "--index-url",
        default=os.environ.get("PIP_INDEX_URL"),
        metavar="URL",
        help="PyPI mirror for pip inside the build (default: $PIP_INDEX_URL)",
    )
    build.add_argument(
        "--wheels",
        type=_optional_path,
        default=WHEELS_DIR,
        metavar="DIR",
        help="prebuilt Horovod wheels, staged when they fit the site (default: .cache/wheels, which "
        "scripts/setup-venv.sh fills; 'none' compiles Horovod in the image)",
    )
    build.add_argument(
        "--sif-compression",
        choices=list(SQUASHFS_COMPRESSION),
        default="gzip",
        help="with --runtime singularity: the SIF's squashfs compression (default gzip, which every runtime mounts; "
        "zstd compresses about 4x faster at the same size where the kernel or squashfuse has zstd)",
    )
    build.add_argument("--no-cache", action="store_true", help="rebuild every layer")
    build.add_argument(
        "--quiet", action="store_true", help="print only the step lines (and cache hits), not their output"
    )
    build.set_defaults(func=_build)

    base = sub.add_parser(
        "base",
        help="make (debootstrap) or pull a site's base image",
        description="Make the site's base image: with debootstrap and `docker import` when base.origin is "
        "'debootstrap' (cached by name: nothing happens when it exists), else pull it from its registry.",
    )
    base.add_argument("--site", required=True, help="site id")
    base.add_argument("--rebuild", action="store_true", help="debootstrap again even when the image exists")
    base.set_defaults(func=_base)

    verify = sub.add_parser(
        "verify",
        help="run the self-test inside a site's built image",
        description="Run checks inside the built image: TensorFlow imports with the pinned versions, "
        "`horovodrun --check-build` lists the expected frameworks and controllers, a 2-rank mpirun allreduce "
        "sums right on every rank, and a tiny Keras model trains a few steps under 2 ranks. On a GPU site, also "
        "TensorFlow's CUDA build against the pins and the CUDA, cuDNN and NCCL libraries by soname; its GPU checks "
        "(training steps and an NCCL all-reduce across the GPUs, Horovod one rank per GPU) run only on a host with "
        "NVIDIA GPUs, and one line says when they did not.",
    )
    verify.add_argument("--site", required=True, help="site id")
    verify.add_argument("--runtime", choices=RUNTIMES, default="docker", help="image format (default: docker)")
    verify.add_argument("--image", help="image to check (default: the site's tag, or its SIF)")
    verify.add_argument("--ranks", type=int, default=2, help="MPI ranks of the 2-rank checks (default: 2)")
    verify.add_argument("--steps", type=int, default=5, help="training steps per rank (default: 5)")
    verify.set_defaults(func=_verify)

    inspect = sub.add_parser(
        "inspect",
        help="print the pins, labels and embedded recipe of a built image",
        description="Print a built image's labels, its pinned stack and the recipe embedded under "
        f"{IMAGE_PATHS.recipe}/, and whether that recipe matches what the catalog renders now.",
    )
    inspect.add_argument("image", nargs="?", help="Docker tag or id, or a .sif file")
    inspect.add_argument("--site", help="inspect the site's image instead of naming one")
    inspect.add_argument("--runtime", choices=RUNTIMES, default="docker", help="with --site: which image")
    inspect.add_argument("--json", action="store_true", help="print one JSON document")
    inspect.set_defaults(func=_inspect)

    export = sub.add_parser(
        "export",
        help="write a site's image as a tar (docker save) or SIF, with its sha256",
        description="Write the site's image for copying to a cluster: `docker save` of the tag as a tar, or "
        "the SIF, each with a sha256sum-style file beside it.",
    )
    export.add_argument("--site", required=True, help="site id")
    export.add_argument("--runtime", choices=RUNTIMES, default="docker", help="tar (docker) or SIF (singularity)")
    export.add_argument("--out", type=Path, help="output directory (default: build/export/)")
    export.set_defaults(func=_export)

    clean = sub.add_parser(
        "clean",
        help="remove the images, build caches, temp roots and left emulated clusters the kit created",
        description="Remove what the kit created: images it built or imported (found by their org.hpcai labels), "
        "with their build cache layers, build/{context,roots,logs,images,export}, and the directories "
        "/var/tmp/hpcai-cluster-* of emulated clusters that no process runs any more (left by a failed or "
        "interrupted `hpcai rehearse`). Nothing else.",
    )
    clean.add_argument("--keep-base", action="store_true", help="keep the debootstrap base images")
    clean.add_argument("--dry-run", action="store_true", help="list what would be removed")
    clean.set_defaults(func=_clean)


def _build(args: argparse.Namespace) -> int:
    from hpcai_tf.catalog import load_site
    from hpcai_tf.image.build import build_recipe_dir, build_recipe_sif, build_site_docker, build_site_sif
    from hpcai_tf.image.context import BuildOptions
    from hpcai_tf.image.docker_engine import human_size

    options = BuildOptions(
        ca_bundle=args.ca_bundle,
        index_url=args.index_url,
        wheels_dir=args.wheels,
        sif_compression=args.sif_compression,
    )
    if args.recipe is not None:
        if args.runtime == "docker":
            result = build_recipe_dir(args.recipe, options, no_cache=args.no_cache, quiet=args.quiet)
        else:
            result = build_recipe_sif(args.recipe, options)
    else:
        site = load_site(args.site)
        if args.runtime == "docker":
            result = build_site_docker(site, options, no_cache=args.no_cache, quiet=args.quiet)
        else:
            result = build_site_sif(site, options)
    print(f"built {result.image} ({human_size(result.size)}) in {result.seconds:.0f} s")
    return 0


def _base(args: argparse.Namespace) -> int:
    from hpcai_tf.catalog import load_site
    from hpcai_tf.image.base import ensure_base_image, make_base_image
    from hpcai_tf.image.docker_engine import docker_client

    site = load_site(args.site)
    client = docker_client()
    if args.rebuild and site.base.origin == "debootstrap":
        make_base_image(site, client)
    else:
        ensure_base_image(site, client)
    print(site.base.ref)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from hpcai_tf.catalog import load_site
    from hpcai_tf.image.verify import verify_image

    verify_image(load_site(args.site), args.runtime, image=args.image, ranks=args.ranks, steps=args.steps)
    return 0  # a failed check ends in a KitError naming it


def _inspect(args: argparse.Namespace) -> int:
    from hpcai_tf.errors import KitError
    from hpcai_tf.image.inspection import format_inspection, inspect_image, site_image

    if bool(args.image) == bool(args.site):
        raise KitError("inspect: name an IMAGE or give --site, not both")
    image = args.image or site_image(args.site, args.runtime)
    info = inspect_image(image)
    print(json.dumps(info, indent=2, sort_keys=True) if args.json else format_inspection(info), end="\n")
    return 0


def _export(args: argparse.Namespace) -> int:
    from hpcai_tf.catalog import load_site
    from hpcai_tf.image.export import export_image

    path, digest = export_image(load_site(args.site), args.runtime, args.out)
    print(f"{path}\nsha256 {digest} (in {path.name}.sha256)")
    return 0


def _clean(args: argparse.Namespace) -> int:
    from hpcai_tf.image.clean import clean
    from hpcai_tf.launch.emulated_cluster import remove_left_clusters

    clean(keep_base=args.keep_base, dry_run=args.dry_run)
    remove_left_clusters(dry_run=args.dry_run)
    return 0
