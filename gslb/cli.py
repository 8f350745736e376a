"""The `gslb` command: serve, check, explain, and reload and status against a running server."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from gslb import __version__
from gslb.config.problem_report import report
from gslb.dns.server import Listener
from gslb.settings import DEFAULT_API, LOG_LEVELS, choose_default_zones, load_settings

SERVER_FLAGS = ("zones", "geoip", "asn_db", "cache_dir", "listen", "node_name", "log_level", "state", "api", "api_token_file",
                "query_log", "query_log_sample", "workers", "redis", "vantage", "probe_source")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="server config file (YAML); flags win over it")
    parser.add_argument("--zones", help="directory of *.yaml zone files (default: the example zones)")
    parser.add_argument("--geoip", help="GeoIP City or Country .mmdb (default: the embedded DB-IP Lite data)")
    parser.add_argument("--asn-db", dest="asn_db", metavar="FILE",
                        help="ASN .mmdb (GeoLite2-ASN, DB-IP ASN Lite) for regions that serve AS numbers")
    parser.add_argument("--cache-dir", dest="cache_dir", metavar="DIR",
                        help="where GeoIP region tables are cached (default $GSLB_CACHE_DIR, else ~/.cache/gslb)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gslb", description="DNS-based global server load balancer")
    parser.add_argument("--version", action="version", version=f"gslb {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="answer DNS queries for the zones")
    _common(serve)
    serve.add_argument("--listen", action="append", metavar="HOST:PORT",
                       help="address to answer on, UDP and TCP; repeatable (default 127.0.0.1:1053 and [::1]:1053)")
    serve.add_argument("--node-name", dest="node_name", help="this node's name, for NSID and CH TXT id.server")
    serve.add_argument("--log-level", dest="log_level", choices=LOG_LEVELS, metavar="LEVEL",
                       help=f"the least severe log lines written to standard error: {', '.join(LOG_LEVELS)} "
                            "(default info)")
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
    serve.add_argument("--pid-file", dest="pid_file", type=Path, metavar="FILE",
                       help="write the server's process id to FILE while it runs (removed at exit)")
    serve.add_argument("--redis", metavar="URL",
                       help="take health from the probe agents' verdicts and share admin overrides through Redis, "
                            "like redis://USER:PASSWORD@HOST:6379/0 (rediss:// for TLS)")
    serve.add_argument("--vantage", metavar="NAME",
                       help="with --redis: also probe, and publish the verdicts as this vantage")

    probe = commands.add_parser("probe", help="a probe agent: probe every check from this vantage and publish the "
                                              "verdicts to Redis for the DNS nodes")
    _common(probe)
    probe.add_argument("--redis", metavar="URL", help="where to publish, like redis://USER:PASSWORD@HOST:6379/0 "
                                                      "(rediss:// for TLS); else redis: in the config")
    probe.add_argument("--vantage", metavar="NAME", help="this agent's vantage, like eu; else vantage: in the config")
    probe.add_argument("--source", dest="probe_source", metavar="ADDRESS",
                       help="the local address the probes leave from (multi-homed hosts)")
    probe.add_argument("--log-level", dest="log_level", choices=LOG_LEVELS, metavar="LEVEL",
                       help=f"the least severe log lines written to standard error: {', '.join(LOG_LEVELS)}")

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
    explain.add_argument("--redis", metavar="URL", help="read the probe agents' verdicts and the shared overrides from "
                                                       "Redis first, as a DNS node would (else redis: in the config)")

    reload = commands.add_parser("reload", help="make the running server reload its zones and GeoIP data, and "
                                                "say whether the new configuration loaded")
    _api_client(reload)
    reload.add_argument("--api-token-file", dest="api_token_file", type=Path, metavar="FILE",
                        help="file holding the admin API's bearer token (else the server config's "
                             "api_token_file, else $GSLB_API_TOKEN)")
    reload.add_argument("--wait", type=float, default=60.0, metavar="SECONDS",
                        help="how long to wait for the reload's result (default 60; 0: only ask for it)")

    dnssec = commands.add_parser("dnssec", help="DNSSEC keys of a signed zone: create, DS for the parent, list, "
                                                "and activate/retire/remove for a rollover (docs/dnssec.md)")
    actions = dnssec.add_subparsers(dest="action", required=True)
    for action, text in (("keygen", "create a key (ECDSA P-256, algorithm 13) in the zone's dnssec.keys directory"),
                         ("ds", "print the DS records to give the parent zone"),
                         ("list", "list the keys of a zone (or of every signed zone) and their states"),
                         ("activate", "make a key sign (rollover step)"),
                         ("retire", "stop a key signing; it stays in the DNSKEY set (rollover step)"),
                         ("remove", "delete a retired or published key's files (last rollover step)")):
        sub = actions.add_parser(action, help=text)
        sub.add_argument("--zones", type=Path, required=True, help="the directory of *.yaml zone files")
        sub.add_argument("zone", nargs="?" if action == "list" else None, metavar="ZONE",
                         help="the zone's origin, like gslb.example.com")
        if action == "keygen":
            sub.add_argument("--role", choices=("csk", "ksk", "zsk"), default="csk",
                             help="csk: one key signs everything (default); ksk + zsk: a pair")
        if action in ("activate", "retire", "remove"):
            sub.add_argument("tag", metavar="TAG", help="the key tag (gslb dnssec list)")

    status = commands.add_parser("status", help="a short summary of the running server: zones, regions, "
                                                "endpoints down, last reload, alerts")
    _api_client(status)
    status.add_argument("--json", action="store_true", help="the whole /status document, for scripts")
    return parser


def _api_client(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api", metavar="URL",
                        help="the running server's API, like http://127.0.0.1:8053 (default: the server "
                             "config's api:, else http://127.0.0.1:8053)")
    parser.add_argument("--config", type=Path,
                        help="the server config file gslb serve runs with, for its api: and api_token_file:")


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """parse_args, but an unknown flag after a command gets that command's usage, not the
    top-level one (argparse leaves unknown arguments to the top-level parser)."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        commands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
        words = sys.argv[1:] if argv is None else argv
        command_at = words.index(args.command) if args.command in words else len(words)
        if all(word in words[command_at + 1:] for word in unknown):
            commands.choices[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    if args.command in ("reload", "status"):
        return _control(args)
    if args.command == "dnssec":
        from gslb.dnssec.commands import run

        return run(args.action, args.zones, args.zone, role=getattr(args, "role", "csk"), tag=getattr(args, "tag", None))
    flags = {k: v for k, v in vars(args).items() if k in SERVER_FLAGS}
    settings, problems = load_settings(args.config, flags)
    if problems:
        return report(problems)
    if args.command == "serve" and settings.vantage is not None and settings.redis is None:
        print("gslb serve: --vantage needs --redis URL (or redis: in the config): the vantage's verdicts "
              "go there", file=sys.stderr)
        return 2
    if args.command == "probe" and (settings.redis is None or settings.vantage is None):
        missing = " and ".join(flag for flag, value in (("--redis URL", settings.redis), ("--vantage NAME", settings.vantage))
                               if value is None)
        print(f"gslb probe: give {missing} (or redis:/vantage: in the config file)", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=getattr(logging, settings.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from gslb import build

    if args.command == "probe":
        return _probe(settings)
    loaded, problems = build.load(settings)
    if loaded is None:
        return report(problems)
    if args.command == "check":
        bad_lines = [p for source in (loaded.health.board.sources if loaded.health is not None else ())
                     for p in getattr(source, "problems", ())]  # the external health file's (gslb/health/external.py)
        if bad_lines:
            return report(bad_lines)
        zones = len(loaded.catalog.zones)
        print(f"gslb: {zones} zone{'s' if zones != 1 else ''} OK in {settings.zones}")
        return 0
    if args.command == "explain":
        if settings.redis is not None and loaded.health is not None:
            from gslb.health.redis_link import read_shared
            from gslb.runtime import run_event_loop

            try:
                run_event_loop(read_shared(loaded.health))
            except Exception as error:  # noqa: BLE001 - explain without shared health rather than not at all
                print(f"gslb explain: could not read the shared health from Redis ({error}); explaining with "
                      "every endpoint at its check's cold start", file=sys.stderr)
        return _explain(loaded, args)
    from gslb import service
    from gslb.runtime import run_event_loop

    choice = choose_default_zones()
    where = choice.describe() if settings.zones == choice.path else str(settings.zones)
    print(f"gslb: serving zones from {where}", flush=True)
    if args.pid_file is None:
        return run_event_loop(service.serve(settings, loaded))
    try:
        _write_pid_file(args.pid_file)
    except OSError as error:
        print(f"gslb: --pid-file {args.pid_file}: cannot write it ({error.strerror or error})", file=sys.stderr)
        return 1
    try:
        return run_event_loop(service.serve(settings, loaded))
    finally:
        _remove_pid_file(args.pid_file)


def _probe(settings) -> int:  # type: ignore[no-untyped-def]
    from gslb import build
    from gslb.health.agent import ProbeAgent
    from gslb.health.redis_link import StoreUnavailable, _redis
    from gslb.runtime import run_event_loop

    try:
        _redis()
    except StoreUnavailable as error:
        print(f"gslb probe: {error}", file=sys.stderr)
        return 1
    catalog, geo, problems = build.read(settings)
    if catalog is None or geo is None or problems:
        return report(problems)
    agent = ProbeAgent(settings, settings.vantage)
    problems_text = agent.take(catalog)
    if problems_text:
        for line in problems_text:
            print(line, file=sys.stderr)
        return 1
    return run_event_loop(agent.run(geo))


def _write_pid_file(path: Path) -> None:
    # Written whole under another name and renamed: a reader never sees an empty file.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(f"{os.getpid()}\n")
    os.replace(temporary, path)


def _remove_pid_file(path: Path) -> None:
    try:
        if path.read_text().strip() == str(os.getpid()):  # not a file a newer server wrote since
            path.unlink()
    except OSError:
        pass


def _control(args: argparse.Namespace) -> int:
    from gslb import control

    command = f"gslb {args.command}"
    try:
        configured: Listener | None = DEFAULT_API
        token_file: Path | None = None
        if args.config is not None:
            settings, problems = load_settings(args.config, {})
            if problems:
                return report(problems)
            configured, token_file = settings.api, settings.api_token_file
        url = control.api_url(args.api, configured)
        if args.command == "status":
            document = control.Client(url).get("/status")
            print(json.dumps(document, indent=2) if args.json else control.status_text(document))
            return 0
        token = control.read_token(args.api_token_file or token_file)
        if args.wait < 0:
            raise control.ControlError("--wait: must be >= 0 seconds")
        outcome = control.reload(control.Client(url, token), wait=args.wait)
    except control.ControlError as error:
        print(f"{command}: {error}", file=sys.stderr)
        return 1
    if args.wait == 0:
        print(f"{command}: reload requested from {url}")
        return 0
    if outcome.ok is None:
        print(f"{command}: reload requested; no result within {args.wait:g}s (see {url}/status)", file=sys.stderr)
        return 1
    if outcome.ok:
        print(f"{command}: reloaded ({outcome.reason}) in {outcome.duration_ms} ms: generation {outcome.generation}, "
              f"loaded {outcome.loaded_at}")
        return 0
    for problem in outcome.problems:
        print(problem, file=sys.stderr)
    print(f"{command}: reload ({outcome.reason}) failed: {len(outcome.problems)} problem"
          f"{'' if len(outcome.problems) == 1 else 's'}; still serving the configuration loaded at {outcome.loaded_at}",
          file=sys.stderr)
    return 1


def _explain(loaded, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
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
