"""Prometheus metrics, built at scrape time from the counters the server keeps anyway.

Nothing on the DNS path touches prometheus-client: queries are counted with one dict update in
QueryStats, probes in ProbeStats (gslb/health_stats.py), reloads by the Reloader, and this
collector turns all of it into metric families when `/metrics` is scraped. The scrape runs on
the event loop (in the API's handler), the same thread that writes the counters, so it reads
them without locks. Do not serve this registry from prometheus-client's own HTTP thread.

Label values use the words of the logs and `/status`: zones as "gslb.example.com.", qtypes and
rcodes by name ("AAAA", "NXDOMAIN"), endpoint states "UP", "DRAIN", "DOWN".
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from gslb import __version__
from gslb.dns.rrl import ACTIONS as RRL_ACTIONS
from gslb.dns.rrl import KINDS as RRL_KINDS
from gslb.health_stats import RTT_BUCKETS, CountingBoard
from gslb.querylog import qtype_name, rcode_name
from gslb.stats import LATENCY_BUCKETS, QueryStats

# A, NS, CNAME, SOA, PTR, MX, TXT, AAAA, SRV, NAPTR, DS, RRSIG, DNSKEY, SVCB, HTTPS, ANY, CAA, AXFR, IXFR
LABELLED_QTYPES = frozenset({1, 2, 5, 6, 12, 15, 16, 28, 33, 35, 43, 46, 48, 64, 65, 255, 257, 252, 251})

if TYPE_CHECKING:
    from gslb.runtime import Runtime

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATES = ("UP", "DRAIN", "DOWN")


def _buckets(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[str, float]]:
    """Per-bucket counts (the last one +Inf) -> cumulative Prometheus buckets."""
    cumulative: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip(bounds, counts):
        running += count
        cumulative.append((repr(float(bound)), running))
    running += counts[len(bounds)]
    cumulative.append(("+Inf", running))
    return cumulative


class GslbCollector:
    """A prometheus-client custom collector over one running server."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        runtime = self.runtime
        yield from self._queries(runtime.stats)
        yield from self._rrl(runtime)
        yield from self._health(runtime)
        yield from self._vantages(runtime)
        yield from self._config(runtime)
        yield from self._alerts(runtime)
        yield from self._query_log(runtime)
        yield from self._api(runtime)
        yield from self._notify(runtime)
        yield from self._dnssec(runtime)
        info = GaugeMetricFamily("gslb_build_info", "The gslb version running.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        udp = GaugeMetricFamily("gslb_udp_io_info", "How UDP is read and answered: batched (recvmmsg) or per-datagram.",
                                labels=["mode"])
        udp.add_metric([runtime.server.udp_io], 1)
        yield udp
        counters = runtime.server.udp_counters()
        if counters is not None:
            dropped = CounterMetricFamily(
                "gslb_dns_udp_dropped", "UDP datagrams the batched path did not answer (this process): truncated, "
                "a query larger than its 4,096-byte slot; unsent, a reply the kernel would not take at once.",
                labels=["reason"])
            dropped.add_metric(["truncated"], counters.truncated)
            dropped.add_metric(["unsent"], counters.dropped)
            yield dropped

    # -- DNS ---------------------------------------------------------------------------------------
    def _queries(self, stats: QueryStats) -> Iterator[Metric]:
        queries = CounterMetricFamily("gslb_dns_queries", "DNS responses sent, by zone (\"\" = not ours), query type, "
                                      "response code, transport and the region whose pool answered.",
                                      labels=["zone", "qtype", "rcode", "transport", "region"])
        # Query types are the client's choice: the uncommon ones share one label value, so a
        # client walking all 65,536 types cannot create 65,536 series.
        merged: dict[tuple[str, str, str, str, str], int] = {}
        for (zone, qtype, rcode, transport, region), value in list(stats.counts.items()):
            key = (zone, qtype_name(qtype) if qtype in LABELLED_QTYPES else "other", rcode_name(rcode), transport, region)
            merged[key] = merged.get(key, 0) + value
        for labels, value in merged.items():
            queries.add_metric(list(labels), value)
        yield queries
        yield CounterMetricFamily("gslb_dns_ecs_queries", "Queries that carried an EDNS Client Subnet option.",
                                  value=stats.ecs)
        yield HistogramMetricFamily(
            "gslb_dns_response_seconds",
            "Time to build a response, from a sample of queries (one in 16 on the UDP fast path, every other one).",
            buckets=_buckets(LATENCY_BUCKETS, stats.latency_counts), sum_value=stats.latency_sum)

    def _rrl(self, runtime: Runtime) -> Iterator[Metric]:
        rrl = runtime.server.rrl
        if rrl is None:
            return
        limited = CounterMetricFamily("gslb_dns_rrl_limited", "UDP responses held back by response rate limiting, "
                                      "by action (slipped: sent truncated, TC=1; dropped: not sent) and response kind.",
                                      labels=["action", "kind"])
        for kind, counts in zip(RRL_KINDS, rrl.limited):
            for action, value in zip(RRL_ACTIONS, counts):
                limited.add_metric([action, kind], value)
        yield limited

    # -- health ------------------------------------------------------------------------------------
    def _health(self, runtime: Runtime) -> Iterator[Metric]:
        monitor = runtime.loaded.health
        if monitor is None:
            return
        board = monitor.board
        up = GaugeMetricFamily("gslb_endpoint_up", "1 when DNS serves the endpoint normally (UP), 0 when DRAIN or DOWN.",
                               labels=["check", "address"])
        state = GaugeMetricFamily("gslb_endpoint_state", "The endpoint's state as DNS serves it: 1 for the current one.",
                                  labels=["check", "address", "state"])
        override = GaugeMetricFamily("gslb_endpoint_override", "1 for an admin override in force.",
                                     labels=["check", "address", "override"])
        rtt = GaugeMetricFamily("gslb_endpoint_rtt_seconds", "Smoothed probe round-trip time.", labels=["check", "address"])
        for report in board.reports():
            labels = [report.check or "", report.address]
            up.add_metric(labels, 1 if report.status == "UP" else 0)
            for name in STATES:
                state.add_metric(labels + [name], 1 if report.status == name else 0)
            if report.override is not None:
                override.add_metric(labels + [report.override], 1)
            if report.rtt is not None:
                rtt.add_metric(labels, report.rtt)
        yield from (up, state, override, rtt)
        restarts = CounterMetricFamily("gslb_probe_task_restarts", "Probe tasks that crashed and were restarted.",
                                       value=monitor.restarts)
        yield restarts
        if not isinstance(board, CountingBoard):
            return
        probe_stats = board.stats
        probes = CounterMetricFamily("gslb_probes", "Health probes run, by result.", labels=["check", "address", "result"])
        for (check, address, ok), value in list(probe_stats.results.items()):
            probes.add_metric([check, address, "ok" if ok else "failed"], value)
        yield probes
        histogram = HistogramMetricFamily("gslb_probe_rtt_seconds", "Round-trip time of probes that reached the endpoint.",
                                          labels=["check", "address"])
        for (check, address), counts in list(probe_stats.rtt_counts.items()):
            histogram.add_metric([check, address], _buckets(RTT_BUCKETS, counts), probe_stats.rtt_sums.get((check, address), 0.0))
        yield histogram
        changes = CounterMetricFamily("gslb_health_changes", "Changes of what DNS serves for an endpoint, by the new state "
                                      "(probes crossing rise/fall, admin overrides).", labels=["check", "address", "state"])
        for (changed_check, address, status), value in list(probe_stats.changes.items()):
            changes.add_metric([changed_check or "", address, str(status)], value)
        yield changes

    # -- health shared through Redis: each vantage's verdict, the link ---------------------------------
    def _vantages(self, runtime: Runtime) -> Iterator[Metric]:
        monitor = runtime.loaded.health
        if monitor is None:
            return
        from gslb.health.vantages import VantageVerdicts

        source = next((s for s in monitor.board.sources if isinstance(s, VantageVerdicts)), None)
        if source is None:
            return
        up = GaugeMetricFamily("gslb_vantage_up", "Each vantage's fresh verdict on an endpoint: 1 UP, 0 DOWN.",
                               labels=["check", "address", "vantage"])
        age = GaugeMetricFamily("gslb_vantage_verdict_age_seconds", "Seconds since the vantage last renewed its verdict.",
                                labels=["check", "address", "vantage"])
        for (check, address), _ in list(source.pairs()):
            for report in source.vantage_reports(check, address):
                labels = [check or "", address, report.vantage]
                up.add_metric(labels, 1 if report.status == "UP" else 0)
                age.add_metric(labels, report.age)
        yield up
        yield age
        ignored = CounterMetricFamily("gslb_vantage_verdicts_ignored", "Verdicts ignored because no check and no "
                                      "vantages: setting names their vantage.", labels=["vantage"])
        for vantage, count in list(source.ignored.items()):
            ignored.add_metric([vantage], count)
        yield ignored
        yield CounterMetricFamily("gslb_vantage_verdicts_expired", "Verdicts that lapsed, their agent no longer "
                                  "renewing them.", value=source.expired)
        yield CounterMetricFamily("gslb_vantage_verdicts_invalid", "Malformed verdicts dropped.", value=source.invalid)
        yield GaugeMetricFamily("gslb_shared_health_stale", "1 while the shared verdicts are stale (the store "
                                "unreachable for stale_after) and this node serves from its own probes.",
                                value=1 if source.stale else 0)
        connection = getattr(source, "connection", None)
        if connection is None:
            return
        links = [("verdicts", connection)]
        publisher = getattr(source, "publisher", None)
        if publisher is not None:
            links.append(("publisher", publisher.connection))
        connected = GaugeMetricFamily("gslb_redis_connected", "1 while the link to Redis is up.", labels=["link"])
        reconnects = CounterMetricFamily("gslb_redis_reconnects", "Times the link to Redis came back after a failure.",
                                         labels=["link"])
        for name, link in links:
            connected.add_metric([name], 1 if link.connected else 0)
            reconnects.add_metric([name], link.reconnects)
        yield connected
        yield reconnects

    # -- configuration -------------------------------------------------------------------------------
    def _config(self, runtime: Runtime) -> Iterator[Metric]:
        reloader = runtime.reloader
        reloads = CounterMetricFamily("gslb_config_reloads", "Reloads of the zones and GeoIP data, by result.",
                                      labels=["result"])
        reloads.add_metric(["ok"], reloader.ok)
        reloads.add_metric(["failed"], reloader.failed)
        yield reloads
        yield GaugeMetricFamily("gslb_config_last_reload_successful", "1 when the last reload (or the start) loaded.",
                                value=0 if reloader.last_ok is False else 1)
        yield GaugeMetricFamily("gslb_config_loaded_timestamp_seconds", "When the configuration serving now was loaded.",
                                value=reloader.loaded_at)
        serials = GaugeMetricFamily("gslb_zone_serial", "The SOA serial of each zone served.", labels=["zone"])
        for zone in runtime.loaded.catalog.zones:
            serials.add_metric([zone.label], zone.serial)
        yield serials

    # -- DNSSEC ------------------------------------------------------------------------------------
    def _dnssec(self, runtime: Runtime) -> Iterator[Metric]:
        """Per signed zone, since the zone was last loaded (a reload builds a new signer)."""
        signers = [(zone.label, zone.signer) for zone in runtime.loaded.catalog.zones if zone.signer is not None]
        if not signers:
            return
        made = CounterMetricFamily("gslb_dnssec_signatures", "RRSIGs computed (the crypto done), per signed zone.",
                                   labels=["zone"])
        lookups = CounterMetricFamily("gslb_dnssec_signature_cache_lookups",
                                      "RRsets the signer was asked to sign, by whether its cache held the signatures.",
                                      labels=["zone", "result"])
        size = GaugeMetricFamily("gslb_dnssec_signature_cache_rrsets", "RRsets with cached signatures.",
                                 labels=["zone"])
        for label, signer in signers:
            made.add_metric([label], signer.signatures_made)
            lookups.add_metric([label, "hit"], signer.hits)
            lookups.add_metric([label, "miss"], signer.misses)
            size.add_metric([label], signer.cache_size)
        yield made
        yield lookups
        yield size

    # -- alerts ------------------------------------------------------------------------------------
    def _alerts(self, runtime: Runtime) -> Iterator[Metric]:
        alerts = runtime.alerts
        if alerts is None:
            return
        ratio = GaugeMetricFamily("gslb_record_healthy_ratio", "Fraction of a GSLB record's endpoints that are UP.",
                                  labels=["record"])
        alerting = GaugeMetricFamily("gslb_alert_record_unhealthy",
                                     "1 while fewer than alerts.healthy_below of the record's endpoints are UP.",
                                     labels=["record"])
        for health in list(alerts.records.values()):
            ratio.add_metric([health.label], health.ratio)
            alerting.add_metric([health.label], 1 if health.alerting else 0)
        yield ratio
        yield alerting
        yield GaugeMetricFamily("gslb_servfail_ratio", "Fraction of the last minute's responses that were SERVFAIL.",
                                value=alerts.servfail_ratio)
        yield GaugeMetricFamily("gslb_alert_servfail", "1 while the SERVFAIL fraction is above alerts.servfail_above.",
                                value=1 if alerts.servfail_alerting else 0)

    # -- query log ---------------------------------------------------------------------------------
    def _query_log(self, runtime: Runtime) -> Iterator[Metric]:
        querylog = runtime.querylog
        if querylog is None:
            return
        entries = CounterMetricFamily("gslb_query_log_entries", "Query log entries, by outcome.", labels=["outcome"])
        entries.add_metric(["written"], querylog.written)
        entries.add_metric(["dropped"], querylog.dropped)
        entries.add_metric(["failed"], querylog.errors)
        yield entries


    # -- the HTTP API --------------------------------------------------------------------------------
    def _api(self, runtime: Runtime) -> Iterator[Metric]:
        api = runtime.api
        if api is None:
            return
        failures = CounterMetricFamily("gslb_api_auth_failures", "Admin API calls refused before the token was "
                                       "accepted: missing_token, wrong_token, throttled (429 during a backoff).",
                                       labels=["reason"])
        for reason, value in api.auth_failures.items():
            failures.add_metric([reason], value)
        yield failures
        closed = CounterMetricFamily("gslb_api_connections_closed", "API connections closed or refused by the "
                                     "server's limits: header_timeout, body_timeout, evicted (at the connection cap), "
                                     "refused (at the cap, all busy), bad_request (unparsable HTTP).", labels=["reason"])
        for reason, value in api.connections_closed.items():
            closed.add_metric([reason], value)
        yield closed


    # -- notifications -------------------------------------------------------------------------------
    def _notify(self, runtime: Runtime) -> Iterator[Metric]:
        notifier = runtime.notifier
        if notifier is None:
            return
        total = CounterMetricFamily("gslb_notify", "Webhook notifications by result: sent (a 2xx answer), failed "
                                    "(every try used, or refused), dropped (the oldest waiting, when the queue was full).",
                                    labels=["webhook", "result"])
        for (webhook, result), value in notifier.counts().items():
            total.add_metric([webhook, result], value)
        yield total
        queued = GaugeMetricFamily("gslb_notify_queued", "Notifications waiting to be sent, per webhook.",
                                   labels=["webhook"])
        for delivery in notifier.as_dict():
            queued.add_metric([delivery["url"]], delivery["queued"])
        yield queued


def registry_for(runtime: Runtime) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(GslbCollector(runtime))
    ProcessCollector(registry=registry)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
