"""The ``hpcai`` command line: one parser, one sub-command module per step of the pipeline.

Each module in :mod:`hpcai_tf.commands` defines ``register(subparsers)``, which adds its sub-commands and
sets ``func`` on them. Modules import their heavy dependencies (TensorFlow, Docker SDK) inside the
handlers, so ``hpcai --help`` and the recipe commands work without TensorFlow installed.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from hpcai_tf import __version__, commands
from hpcai_tf.errors import KitError


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="hpcai",
        description="Container-first reproducibility kit for distributed deep learning on HPC clusters.",
    )
    parser.add_argument("--version", action="version", version=f"hpcai {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; bad input ends in a one-line error and exit code 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KitError as err:
        print(f"hpcai: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("hpcai: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
