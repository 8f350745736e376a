"""The `gslb` command: serve, check, explain."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from gslb import __version__
from gslb.config.problem_report import report
from gslb.settings import LOG_LEVELS, load_settings


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="server config file (YAML); flags win over it")
    parser.add_argument("--zones", help="directory of *.yaml zone files (default: the example zones)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gslb", description="DNS-based global server load balancer")
    parser.add_argument("--version", action="version", version=f"gslb {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="answer DNS queries for the zones")
    _common(serve)
    serve.add_argument("--listen", action="append", metavar="HOST:PORT",
                       help="address to answer on, UDP and TCP; repeatable (default 127.0.0.1:1053 and [::1]:1053)")
    serve.add_argument("--node-name", dest="node_name", help="this node's name, for NSID and CH TXT id.server")
    serve.add_argument("--log-level", dest="log_level", choices=LOG_LEVELS)

    check = commands.add_parser("check", help="validate the zones and settings without serving")
    _common(check)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    flags = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
    settings, problems = load_settings(args.config, flags)
    if problems:
        return report(problems)
    logging.basicConfig(
        level=getattr(logging, settings.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from gslb import service

    loaded, problems = service.load(settings)
    if loaded is None:
        return report(problems)
    if args.command == "check":
        zones = len(loaded.catalog.zones)
        print(f"gslb: {zones} zone{'s' if zones != 1 else ''} OK in {settings.zones}")
        return 0
    return service.run_event_loop(service.serve(settings, loaded))
