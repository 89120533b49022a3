"""``sci-edge``: simulate, inspect, reconstruct and code spike streams; benchmarks; demo.

The parser is built from :data:`COMMANDS`, one module per command group; each
module has ``register(subparsers)`` that adds its sub-parser and sets its
handler with ``set_defaults(handler=...)``. A new group is one new module in
this package and one entry in the table.

Exit status: 0 on success; 2 with one line ``sci-edge <command>: error: ...``
on anything the user can fix (a bad file, option, config, output path or a
missing optional dependency); 1 with a traceback on a bug; 130 on Ctrl-C."""
from __future__ import annotations

import argparse
import importlib
import sys

EXIT_ERROR = 2

# command modules of this package, in the order `sci-edge --help` lists them
COMMANDS = (
    "simulate",
    "info",
    "reconstruct",
    "encode",
    "decode",
    "bench",
    "profile",
    "export",
    "train",
    "eval",
    "demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sci-edge", description="Spike coding for intelligence on the edge.",
        epilog="Exit status: 0 ok, 2 a one-line error you can fix (bad input, option, path "
               "or a missing optional dependency), 1 a bug (with its traceback).")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"{__package__}.{name}").register(sub)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"sci-edge {version('sci_edge')}"
    except PackageNotFoundError:
        return "sci-edge (not installed)"


def _os_error_text(exc: OSError) -> str:
    if exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror[0].lower()}{exc.strerror[1:]}"
    return str(exc)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    from .._deps import extra_for
    from ..errors import MissingDependencyError, SciEdgeError

    def fail(message: str) -> int:
        print(f"sci-edge {ns.command}: error: {message}", file=sys.stderr)
        return EXIT_ERROR

    try:
        return int(ns.handler(ns) or 0)
    except MissingDependencyError as exc:
        return fail(str(exc))
    except ModuleNotFoundError as exc:
        extra = extra_for(exc.name)
        if extra is None:
            raise   # not an optional dependency: a broken install or a bug
        return fail(f"{exc.name} is not installed: pip install 'sci_edge[{extra}]'")
    except SciEdgeError as exc:
        return fail(str(exc))
    except OSError as exc:   # the user's files: missing, unreadable, disk full
        return fail(_os_error_text(exc))
    except KeyboardInterrupt:
        print(f"sci-edge {ns.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
