"""Command line: ``python -m skebm demo`` and ``python -m skebm plugins``."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys


def _plugins(args) -> int:
    # Plugins run when they load; whatever they print goes to stderr, so that
    # stdout holds nothing but the JSON.
    with contextlib.redirect_stdout(sys.stderr):
        from skebm.plugins import COMPONENT_KINDS, get_registry

        registry = get_registry()
        plugins = [
            p.as_dict() for p in registry.plugins if args.all or p.status != "builtin"
        ]
        components = [
            c.as_dict()
            for kind in COMPONENT_KINDS
            for c in registry.components(kind)
            if args.all or not c.builtin
        ]
    json.dump({"plugins": plugins, "components": components}, sys.stdout, indent=2)
    print()
    return 0


def _demo(args) -> int:
    from skebm._demo import run_demo

    run_demo(args.output, fast=args.fast)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skebm")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo", help="fit, score and sample two moons; compare with KernelDensity"
    )
    demo.add_argument("--output", default="skebm-demo.png", help="PNG to write")
    demo.add_argument("--fast", action="store_true", help="5 epochs (smoke test)")
    demo.set_defaults(func=_demo)

    plugins = commands.add_parser(
        "plugins", help="list plugins and their components as JSON"
    )
    plugins.add_argument(
        "--all", action="store_true", help="include skebm's built-in components"
    )
    plugins.set_defaults(func=_plugins)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
