"""``hpcai sites``, ``render``, ``constraints``, ``extend``, ``docs``: the catalog, and what it renders."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hpcai_tf.paths import DOCS_DIR, RECIPES_DIR


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``sites`` and ``render``."""
    sites = sub.add_parser(
        "sites",
        help="list the sites in the catalog and their pinned stacks",
        description="List every site in the catalog (containers/sites/*.toml) with its pinned stack.",
    )
    sites.add_argument("--schema", action="store_true", help="print the catalog's JSON schema instead")
    sites.set_defaults(func=_sites)

    render = sub.add_parser(
        "render",
        help="render the Dockerfile, Singularity.def and provenance of each site",
        description="Render recipes/<site>/{Dockerfile,Singularity.def,provenance.json} from the site catalog "
        "and containers/templates/. Everything is validated and rendered before any file is written.",
    )
    render.add_argument("--site", action="append", help="site id (repeatable; default: every site)")
    render.add_argument("--out", type=Path, default=RECIPES_DIR, help="output directory (default: recipes/)")
    render.add_argument("--print", action="store_true", dest="show", help="print the recipes instead of writing")
    render.set_defaults(func=_render)

    constraints = sub.add_parser(
        "constraints",
        help="resolve the pip constraints of each pip site (containers/constraints/<site>.txt)",
        description="Run pip's resolver for each pip site's image (its Python, platform and environment markers; "
        "wheels only) and write containers/constraints/<site>.txt: the versions of every package the site's pins "
        "pull in. A resolution equal to the file's leaves it untouched. Needs the package index; then `hpcai "
        "render` and `hpcai docs` (or `make constraints`, which runs all three).",
    )
    constraints.add_argument("--site", action="append", help="site id (repeatable; default: every pip site)")
    constraints.add_argument("--index-url", help="package index the resolver reads (default: PyPI's)")
    constraints.set_defaults(func=_constraints)

    extend = sub.add_parser(
        "extend",
        help="write a derived recipe: a site's base image plus your packages",
        description="Write a Dockerfile and a Singularity.def that start FROM the site's base image and add "
        "your packages, with a pip constraints file that holds TensorFlow, Horovod and NumPy at the base's pins.",
    )
    extend.add_argument("--site", required=True, help="site whose base image to extend")
    extend.add_argument("--name", required=True, help="name of the derived image (lowercase, digits, '-')")
    extend.add_argument("--pip", nargs="+", default=[], metavar="NAME==VERSION", help="pip packages to add")
    extend.add_argument("--apt", nargs="+", default=[], metavar="NAME", help="system packages to add")
    extend.add_argument("--out", type=Path, help="output directory (default: derived/<name>)")
    extend.set_defaults(func=_extend)

    docs = sub.add_parser(
        "docs",
        help="regenerate docs/stack.md, docs/catalog.md and docs/sites/*.md from the catalog",
        description="Write the pinned-stack table (docs/stack.md), the catalog reference (docs/catalog.md) and a "
        "tutorial per site (docs/sites/<id>.md).",
    )
    docs.add_argument("--out", type=Path, default=DOCS_DIR, help="output directory (default: docs/)")
    docs.set_defaults(func=_docs)


def _sites(args: argparse.Namespace) -> int:
    from hpcai_tf.catalog import Site, load_catalog
    from hpcai_tf.sitedocs.stack_table import stack_table

    if args.schema:
        print(json.dumps(Site.model_json_schema(), indent=2))
        return 0
    print(stack_table(load_catalog()), end="")
    return 0


def _render(args: argparse.Namespace) -> int:
    from hpcai_tf.catalog import load_catalog, load_site
    from hpcai_tf.files import check_targets
    from hpcai_tf.recipes.render import patch_files, render_site, write_site

    sites = [load_site(s) for s in args.site] if args.site else load_catalog()
    for site in sites:  # validate and render everything first: no half-written output
        patch_files(site)
        rendered = render_site(site)
        if not args.show:
            check_targets([args.out / site.id / name for name in rendered])
    for site in sites:
        if args.show:
            for name, text in render_site(site).items():
                print(f"==> recipes/{site.id}/{name} <==\n{text}")
        else:
            for path in write_site(site, args.out):
                print(path)
    return 0


def _constraints(args: argparse.Namespace) -> int:
    from hpcai_tf.catalog import load_catalog, load_site
    from hpcai_tf.files import display_path
    from hpcai_tf.recipes.constraints import PYPI, write_constraints

    sites = [load_site(s) for s in args.site] if args.site else [s for s in load_catalog() if s.stack.channel == "pip"]
    for site in sites:
        path, changed = write_constraints(site, args.index_url or PYPI)
        print(f"{display_path(path)}: {'written' if changed else 'unchanged'}")
    return 0


def _extend(args: argparse.Namespace) -> int:
    from hpcai_tf.catalog import load_site
    from hpcai_tf.recipes.derived import write_derived

    out = args.out or Path("derived") / args.name
    for path in write_derived(load_site(args.site), args.name, args.pip, args.apt, out):
        print(path)
    return 0


def _docs(args: argparse.Namespace) -> int:
    from hpcai_tf.catalog import load_catalog
    from hpcai_tf.files import check_targets, write_atomic
    from hpcai_tf.sitedocs.compatibility import compatibility_page
    from hpcai_tf.sitedocs.site_page import site_page
    from hpcai_tf.sitedocs.stack_table import catalog_reference, stack_page
    from hpcai_tf.sitedocs.train_flags import train_flags_page

    sites = load_catalog()
    pages = {
        "stack.md": stack_page(sites),
        "catalog.md": catalog_reference(),
        "compatibility.md": compatibility_page(sites),
        "train-flags.md": train_flags_page(),
    }
    pages.update({f"sites/{site.id}.md": site_page(site) for site in sites})
    check_targets([args.out / name for name in pages])
    for name, text in pages.items():
        write_atomic(args.out / name, text)
        print(args.out / name)
    return 0
