"""Validated catalog + GeoIP -> a Generation: everything the DNS side answers from, frozen, self-tested.

A generation is built whole and swapped whole (gslb/reload.py): `read` validates the zone files
(and opens the GeoIP database), `assemble` builds the Selector, the Answerer and its fast-path
tables around them, and `self_test` asks the result for every zone's SOA. None of the three
changes anything live - not the board, not the probes, not the counters - so a reload runs all of
them in a worker thread while the event loop keeps answering. The one thing a generation changes
when it goes live is the health monitor's set of probes: `assemble` only *prepares* that change
(`Loaded.pending`, HealthMonitor.prepare); the reloader commits it right before the swap.
"""

from __future__ import annotations

import gc
import ipaddress
import logging
from dataclasses import dataclass

from dnslib import DNSRecord

from gslb.config.catalog import collector_paused, load_catalog
from gslb.config.problems import Problem
from gslb.dns.answer import Answerer, AnswerSettings
from gslb.dns.dynamic_answer import DynamicAnswers
from gslb.dns.fastpath import FastPath
from gslb.dns.fastpath_dnssec import SignedFast
from gslb.geo import AsnDatabase, GeoDatabase, GeoDataError, TableCache, locate_catalog
from gslb.geo.rules import asn_text
from gslb.health.external import external_sources
from gslb.health.monitor import HealthMonitor, PendingHealth
from gslb.health.redis_link import StoreUnavailable, redis_sources
from gslb.health.status import HealthView
from gslb.querylog import QueryLog
from gslb.selection import Selector
from gslb.settings import ServerSettings
from gslb.stats import QueryStats
from gslb.zone import Catalog

log = logging.getLogger(__name__)

@dataclass(frozen=True, slots=True, weakref_slot=True)  # weakref: tests check an old one is freed
class Loaded:
    """One generation: what the DNS side answers from, built whole, swapped whole."""

    catalog: Catalog
    answerer: Answerer
    selector: Selector
    geo: GeoDatabase
    health: HealthMonitor | None  # probes, rise/fall board, admin overrides; started by serve(). None
    # when built over a board someone else feeds (a replica answering from a copy of the health state)
    pending: PendingHealth | None = None  # a reload's health changes: commit() right before the swap
    asn: AsnDatabase | None = None  # the ASN file zones' ASN rules were placed with (asn_db:), if any


Generation = Loaded  # the concept's name; `Loaded` is kept for the code that already says it


def open_geo(settings: ServerSettings) -> tuple[GeoDatabase | None, list[Problem]]:
    try:
        return GeoDatabase.open(settings.geoip_file), []
    except GeoDataError as error:
        return None, [Problem("", "", str(error))]


def open_asn(settings: ServerSettings) -> tuple[AsnDatabase | None, list[Problem]]:
    """The ASN database of `asn_db:` / `--asn-db`, read into memory (None when not set)."""
    if settings.asn_db is None:
        return None, []
    try:
        return AsnDatabase.open(settings.asn_db), []
    except GeoDataError as error:
        return None, [Problem("", "", str(error))]


def asn_rules_without_database(catalog: Catalog) -> list[Problem]:
    """ASN rules (`serves: [AS13335]`) with no ASN database to place clients by: one problem per
    region that has them, at its key path."""
    problems = []
    for zone in catalog.zones:
        rules = zone.region_rules
        if rules is None or not rules.asns:
            continue
        by_region: dict[str, list[int]] = {}
        for number, region in rules.asns.items():
            by_region.setdefault(region, []).append(number)
        for region, numbers in by_region.items():
            listed = ", ".join(asn_text(number) for number in sorted(numbers))
            problems.append(Problem(zone.file, f"regions.{region}.serves",
                                    f"{listed} {'needs' if len(numbers) == 1 else 'need'} an ASN database: pass --asn-db FILE "
                                    "(GeoLite2-ASN or DB-IP ASN Lite .mmdb) or set asn_db: in the server config"))
    return problems


def read(settings: ServerSettings, geo: GeoDatabase | None = None,
         asn: AsnDatabase | None = None) -> tuple[Catalog | None, GeoDatabase | None, list[Problem]]:
    """The validated zones with their region locators built (and the GeoIP database, opened
    unless given; the ASN database of `asn_db:` likewise). Touches no live state, so a reload
    runs it in a worker thread; a region table not in the cache is built here (~1 s for the
    bundled GeoIP data)."""
    catalog, geo, asn, problems = _read(settings, geo, asn)
    return catalog, geo, problems


def _read(settings: ServerSettings, geo: GeoDatabase | None,
          asn: AsnDatabase | None) -> tuple[Catalog | None, GeoDatabase | None, AsnDatabase | None, list[Problem]]:
    if geo is None:
        geo, problems = open_geo(settings)
        if geo is None:
            return None, None, None, problems
    if asn is None:
        asn, problems = open_asn(settings)
        if problems:
            return None, geo, None, problems
    catalog, problems = load_catalog(settings.zones, max_bytes=settings.max_zone_file_size)
    if catalog is None:
        return None, geo, asn, problems
    if asn is None and (missing := asn_rules_without_database(catalog)):
        return None, geo, asn, problems + missing
    try:
        catalog = locate_catalog(catalog, geo, TableCache.at(settings.cache_dir), asn)
    except GeoDataError as error:
        return None, geo, asn, [Problem("", "", str(error))]
    return catalog, geo, asn, problems


def assemble(
    settings: ServerSettings,
    catalog: Catalog,
    geo: GeoDatabase,
    *,
    stats: QueryStats | None = None,
    health: HealthMonitor | None = None,
    board: HealthView | None = None,
    querylog: QueryLog | None = None,
    asn: AsnDatabase | None = None,
) -> tuple[Loaded | None, list[Problem]]:
    """Everything the DNS side needs around a catalog. A reload passes the running `health`
    monitor (kept endpoints keep their state once the change is committed) and the running
    `stats` (counters continue); a `--workers` replica passes the `board` it is fed instead.
    Neither: a new monitor and board, with the catalog already applied (nothing runs yet).
    Changes nothing live: with a running monitor, its change waits in `health_change`."""
    with collector_paused():
        return _assemble(settings, catalog, geo, stats=stats, health=health, board=board, querylog=querylog, asn=asn)


def _assemble(
    settings: ServerSettings,
    catalog: Catalog,
    geo: GeoDatabase,
    *,
    stats: QueryStats | None,
    health: HealthMonitor | None,
    board: HealthView | None,
    querylog: QueryLog | None,
    asn: AsnDatabase | None = None,
) -> tuple[Loaded | None, list[Problem]]:
    records = [r for zone in catalog.zones for node in zone.nodes.values() for r in node.dynamic.values()]
    pending = None
    if health is None and board is None:
        try:
            shared = redis_sources(settings)  # with --redis: the vantages' quorum and the shared overrides
        except StoreUnavailable as error:
            return None, [Problem("command line", "--redis", str(error))]
        # External verdicts first (the API's, the file's), then the vantages', then this node's probes;
        # the admin overrides on top. The state file and the external file are read now, before any query.
        health = HealthMonitor.build(settings.state, sources=(*external_sources(settings), *shared))
        problems = health.apply(catalog)  # nothing serves from this monitor yet: take the catalog at once
        if problems:
            return None, problems
    elif health is not None:
        # Reads the live monitor, writes nothing (this runs in the build thread): the reloader
        # commits it on the event loop right before the swap.
        pending = health.prepare(catalog)
        if pending.problems:
            return None, pending.problems
    if health is not None:
        board = health.board
    assert board is not None
    selector = Selector(records, board)
    dynamic = DynamicAnswers(selector)  # GSLB answers: gslb.resolve's decisions over this selector
    answerer = Answerer(catalog, AnswerSettings(node_name=settings.node_name), dynamic, stats=stats)
    # The fast path's tables come from gslb/dns/lookup.py and its GSLB answers from the same
    # Resolver: it holds no reference back to the Answerer, so a generation stays a tree (no
    # reference cycle for the collector after each swap: issue 11 item 4).
    answerer.fast = FastPath(catalog, dynamic.resolver, answerer.settings.edns_udp_size)
    if answerer.fast.signed_zones:
        answerer.fast.dnssec = SignedFast(catalog)  # DO answers of signed zones stay on the fast path
    answerer.querylog = querylog
    return Loaded(catalog, answerer, selector, geo, health, pending, asn), []


def load(
    settings: ServerSettings,
    geo: GeoDatabase | None = None,
    *,
    stats: QueryStats | None = None,
    health: HealthMonitor | None = None,
    board: HealthView | None = None,
    querylog: QueryLog | None = None,
) -> tuple[Loaded | None, list[Problem]]:
    """Everything the DNS side needs, validated; None with every problem when anything is wrong."""
    catalog, geo, asn, problems = _read(settings, geo, None)
    if catalog is None or geo is None:
        return None, problems
    return assemble(settings, catalog, geo, stats=stats, health=health, board=board, querylog=querylog, asn=asn)


def self_test(loaded: Loaded) -> list[Problem]:
    """Ask the new Answerer for each zone's SOA (general path, counted in a throwaway QueryStats).
    The generation is not serving yet, so nobody else reads the counters swapped here."""
    answerer = loaded.answerer
    counters, querylog = answerer.stats, answerer.querylog
    answerer.stats, answerer.querylog = QueryStats(), None
    problems = []
    try:
        for zone in loaded.catalog.zones:
            query = DNSRecord.question(zone.label, "SOA")
            raw = answerer.respond(query.pack(), ipaddress.ip_address("127.0.0.1"), True)
            reply = DNSRecord.parse(raw) if raw else None
            if reply is None or reply.header.rcode != 0 or not reply.rr:
                problems.append(Problem(zone.file, "", "self-test: the zone's SOA query did not get an answer"))
    finally:
        answerer.stats, answerer.querylog = counters, querylog
    return problems


def build(
    settings: ServerSettings,
    geo: GeoDatabase | None = None,
    *,
    stats: QueryStats | None = None,
    health: HealthMonitor | None = None,
    board: HealthView | None = None,
    querylog: QueryLog | None = None,
) -> tuple[Loaded | None, list[Problem]]:
    """read -> assemble -> self-test: a generation ready to commit and swap, or every problem.
    Touches nothing live, so it runs in a worker thread; an unexpected exception is a problem
    too (logged with its traceback), never the end of the server.

    The cyclic collector stays paused for the whole build, and a generation that built is
    frozen (gc.freeze) before the collector runs again. Without that, the first collections
    after the build each scan every object of the new generation (~0.35 s for 50,000 records,
    holding the GIL, so the event loop stalls three times per reload); frozen, a generation is
    never scanned, and it is still freed by reference counting when the next one replaces it
    (generations hold no reference cycles: tests/test_reload_memory.py)."""
    gc.collect(1)  # the young garbage of the running server, so that little of it is frozen below
    enabled = gc.isenabled()
    gc.disable()
    try:
        loaded, problems = load(settings, geo, stats=stats, health=health, board=board, querylog=querylog)
        if loaded is not None:
            problems = self_test(loaded)
            if problems:
                loaded = None
        if loaded is not None:
            gc.freeze()
    except Exception as error:  # noqa: BLE001 - a bad configuration must never take the server down
        log.exception("building the new configuration failed")
        return None, [Problem("", "", f"internal error while building the configuration: {error}")]
    finally:
        if enabled:
            gc.enable()
    return loaded, problems
