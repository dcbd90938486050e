"""The ``hpcai`` command line: one parser, one sub-command module per step of the pipeline.

Each module in :mod:`hpcai_tf.commands` defines ``register(subparsers)``, which adds its sub-commands and
sets ``func`` on them. Modules import their heavy dependencies (TensorFlow, Docker SDK) inside the
handlers, so ``hpcai --help`` and the recipe commands work without TensorFlow installed.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

from hpcai_tf import __version__, commands
from hpcai_tf.errors import KitError

DEBUG_ENV = "HPCAI_DEBUG"
"""``HPCAI_DEBUG=1``: an unexpected exception prints its traceback instead of one line."""


class KitParser(argparse.ArgumentParser):
    """An argument parser that takes no abbreviations: ``--run-di`` is not ``--run-dir``.

    Sub-command parsers are made by ``add_subparsers`` with the parser's own class, so every parser of
    the CLI, however deeply nested, is one of these.
    """

    def __init__(self, *args, **kwargs):
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        """Usage errors as one line (argparse prints the usage block first), exit 2."""
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every sub-command registered."""
    parser = KitParser(
        prog="hpcai",
        description="Container-first reproducibility kit for distributed deep learning on HPC clusters.",
    )
    parser.add_argument("--version", action="version", version=f"hpcai {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def split_passthrough(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """``hpcai launch gw --site local -- --smoke``: the kit's arguments, and those after the first ``--``."""
    argv = list(argv)
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1 :]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; bad input ends in a one-line error and exit code 2.

    Everything after the first ``--`` is handed to the command as ``args.passthrough`` (the arguments of the
    ``hpcai train`` that ``launch`` and ``scale`` run); commands that set ``passthrough_to`` accept it.
    """
    parser = build_parser()
    own, passthrough = split_passthrough(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(own)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if passthrough and not getattr(args, "passthrough_to", None):
        parser.error(f"hpcai {args.command} takes no arguments after --")
    args.passthrough = passthrough
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
    except Exception as err:  # a bug or an unforeseen input: one line, the traceback only when asked for
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        from hpcai_tf.image.docker_engine import engine_error

        engine = engine_error(err)
        if engine:
            print(f"hpcai: error: {engine}", file=sys.stderr)
            return 2
        detail = " ".join(str(err).split())[:300]
        print(
            f"hpcai: error: hpcai {args.command}: unexpected {type(err).__name__}"
            + (f": {detail}" if detail else "")
            + f" (rerun with {DEBUG_ENV}=1 for the traceback)",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
