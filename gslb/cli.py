"""The `gslb` command: serve, check, explain."""

from __future__ import annotations

import argparse
from dataclasses import replace
import logging
import sys
from pathlib import Path

from gslb import __version__
from gslb.config.problem_report import report
from gslb.settings import LOG_LEVELS, load_settings


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="server config file (YAML); flags win over it")
    parser.add_argument("--zones", help="directory of *.yaml zone files (default: the example zones)")
    parser.add_argument("--geoip", help="GeoIP City or Country .mmdb (default: the embedded DB-IP Lite data)")


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
    serve.add_argument("--state", metavar="FILE",
                       help="admin overrides file (YAML: address -> up|down|drain), watched for changes")
    serve.add_argument("--api", metavar="HOST:PORT",
                       help="HTTP API for status, explain, metrics and admin (default 127.0.0.1:8053; 'off' for none)")
    serve.add_argument("--api-token-file", dest="api_token_file", metavar="FILE",
                       help="file holding the bearer token for /admin calls (else $GSLB_API_TOKEN)")
    serve.add_argument("--query-log", dest="query_log", metavar="FILE",
                       help="log queries as JSON lines to FILE ('-' for standard output); off by default")
    serve.add_argument("--query-log-sample", dest="query_log_sample", metavar="N",
                       help="log one query in N (default 1: every query)")
    serve.add_argument("--workers", metavar="N",
                       help="DNS processes sharing the listeners (SO_REUSEPORT); probes run once (default 1)")

    check = commands.add_parser("check", help="validate the zones and settings without serving")
    _common(check)

    explain = commands.add_parser("explain", help="show which region and answer a client gets, and why")
    _common(explain)
    explain.add_argument("name", help="the name to ask for, like www.gslb.example.com")
    explain.add_argument("--type", default="A", help="record type (default A)")
    who = explain.add_mutually_exclusive_group()
    who.add_argument("--client", help="the client (or resolver) address, no ECS")
    who.add_argument("--subnet", help="the client subnet sent as EDNS Client Subnet, like 81.2.69.0/24")
    explain.add_argument("--assume-down", dest="assume_down", action="append", default=[], metavar="REGION|ADDRESS",
                         help="answer as if this region or endpoint were down (repeatable): a failure drill")
    explain.add_argument("--json", action="store_true", help="JSON for scripts")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    flags = {k: v for k, v in vars(args).items() if k in ("zones", "geoip", "listen", "node_name", "log_level", "state",
                                                          "api", "api_token_file", "query_log", "query_log_sample", "workers")}
    settings, problems = load_settings(args.config, flags)
    if args.command != "serve":
        settings = replace(settings, region_compile="sync" if args.command == "check" else "off")
    if problems:
        return report(problems)
    logging.basicConfig(
        level=getattr(logging, settings.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from gslb import build

    loaded, problems = build.load(settings)
    if loaded is None:
        return report(problems)
    if args.command == "check":
        zones = len(loaded.catalog.zones)
        print(f"gslb: {zones} zone{'s' if zones != 1 else ''} OK in {settings.zones}")
        return 0
    if args.command == "explain":
        return _explain(loaded, args)
    from gslb import service

    return service.run_event_loop(service.serve(settings, loaded))


def _explain(loaded, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    import json

    from gslb.explain import ExplainError
    from gslb.whatif import AssumeDownError, explain_assuming

    try:
        result = explain_assuming(loaded, args.name, args.type, client=args.client, subnet=args.subnet,
                                  down=args.assume_down)
    except (ExplainError, AssumeDownError) as error:
        print(f"gslb explain: {str(error).replace('down: ', '--assume-down: ', 1)}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({**result.as_dict(), "assume_down": args.assume_down}, indent=2))
    else:
        if args.assume_down:
            print(f"assume:  {', '.join(args.assume_down)} down (what if; live state unchanged)")
        print(result.as_text())
    return 0
