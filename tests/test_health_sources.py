"""Health sources merged by one board: a source plugs in without selection changing; probe-layer
sources are asked in order (a preferred one falls back by having no verdict), overrides go on top;
a worker's snapshot is a source like any other."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from types import MappingProxyType

from gslb.health.admin import Overrides
from gslb.health.board import HealthBoard, ReplicaBoard
from gslb.health.checks import Check, CheckTiming, HttpSpec
from gslb.health.monitor import HealthMonitor
from gslb.health.probes import ProbeResult
from gslb.health.sources import AdminOverrides, Changed, HealthSnapshot, Key, Layer, LocalProbes, Verdict
from gslb.health.status import Status
from gslb.health_stats import CountingBoard

UP, DRAIN, DOWN = Status.UP, Status.DRAIN, Status.DOWN
A1, A2 = "198.51.100.10", "198.51.100.11"
USERS = {("web", A1): ("www.example. eu",), ("web", A2): ("www.example. eu",)}
CHECKS = {"web": Check("web", HttpSpec(), CheckTiming(5.0, 2.0, 2, 2))}


class Verdicts:
    """A source a test sets by hand: what a Redis quorum, an external file or API overrides with
    an expiry would be to the board."""

    def __init__(self, name: str, layer: Layer) -> None:
        self.name = name
        self.layer = layer
        self.held: dict[Key, Verdict] = {}
        self._changed: Changed | None = None

    def bind(self, changed: Changed) -> None:
        self._changed = changed

    def verdict(self, check: str | None, address: str) -> Verdict | None:
        return self.held.get((check, address))

    def keys(self) -> Iterable[Key]:
        return self.held.keys()

    def say(self, key: Key, verdict: Verdict | None) -> None:
        if verdict is None:
            self.held.pop(key, None)
        else:
            self.held[key] = verdict
        assert self._changed is not None
        self._changed(self, (key,))


def messages(caplog) -> list[str]:  # type: ignore[no-untyped-def]
    return [r.getMessage() for r in caplog.records if r.name == "gslb.health.board"]


def test_a_preferred_probe_source_decides_while_it_has_a_verdict_then_local_probes_do(caplog):
    caplog.set_level(logging.INFO, "gslb.health.board")
    remote, local = Verdicts("vantages", Layer.PROBES), LocalProbes()
    board = HealthBoard(sources=(remote, local, AdminOverrides()))
    board.track(USERS, CHECKS)
    remote.say(("web", A1), Verdict(DOWN, "2 of 3 vantages: connection refused", rtt=None))
    assert board.status("web", A1) is DOWN and not board.everything_up()
    for _ in range(3):
        board.record("web", A1, ProbeResult(True, "HTTP 200", rtt=0.01))  # this process sees it UP
    assert board.status("web", A1) is DOWN  # the preferred source still decides
    remote.say(("web", A1), None)  # its verdicts lapse (stale): fall back to the local probes
    assert board.status("web", A1) is UP and board.rtt("web", A1) is not None and board.everything_up()
    assert messages(caplog) == ["www.example. eu 198.51.100.10 DOWN 2 of 3 vantages: connection refused",
                                "www.example. eu 198.51.100.10 UP after 1 success: HTTP 200"]


def test_an_override_source_goes_on_top_of_the_probes_and_its_lapse_is_logged(caplog):
    caplog.set_level(logging.INFO, "gslb.health.board")
    api = Verdicts("API override", Layer.OVERRIDES)
    board = HealthBoard(sources=(LocalProbes(), api, AdminOverrides()))
    board.track(USERS, CHECKS)
    api.say(("web", A2), Verdict(DRAIN, "by API override drain (for 30m)", expires=2e9))
    assert board.status("web", A2) is DRAIN and board.report("web", A2).override == "drain"
    assert not board.forced_down("web", A2)
    api.say(("web", A2), Verdict(DOWN, "by API override down"))
    assert board.forced_down("web", A2)
    api.say(("web", A2), None)  # lapsed
    assert board.status("web", A2) is UP
    assert messages(caplog) == ["www.example. eu 198.51.100.11 DRAIN by API override drain (for 30m)",
                                "www.example. eu 198.51.100.11 DOWN by API override down",
                                "www.example. eu 198.51.100.11 UP API override removed; probes say UP"]


def test_the_version_grows_only_when_what_dns_serves_changes():
    board = HealthBoard()
    board.track(USERS, CHECKS)
    start = board.version
    board.record("web", A1, ProbeResult(True, "HTTP 200", rtt=0.01))
    board.record("web", A1, ProbeResult(False, "HTTP 503"))  # one of two failures: still UP
    assert board.version == start
    board.record("web", A1, ProbeResult(False, "HTTP 503"))
    assert board.version > start and board.status("web", A1) is DOWN


def test_a_replica_board_answers_from_the_snapshot_of_the_main_board_without_logging(caplog):
    caplog.set_level(logging.DEBUG, "gslb.health.board")
    main = HealthBoard()
    main.track({**USERS, (None, A1): ("static.example. eu",)}, CHECKS)
    for _ in range(2):
        main.record("web", A1, ProbeResult(False, "connection refused"))
    main.record("web", A2, ProbeResult(True, "HTTP 200", rtt=0.02, load=0.5))
    main.set_overrides(Overrides(MappingProxyType({A2: DRAIN}), MappingProxyType({("web", A1): DOWN})))
    caplog.clear()
    replica = ReplicaBoard()
    assert replica.everything_up()
    before = replica.version
    replica.apply(main.snapshot())
    for key in (("web", A1), ("web", A2), (None, A1), ("other", A2)):
        assert replica.status(*key) is main.status(*key), key
        assert replica.forced_down(*key) == main.forced_down(*key), key
        assert (replica.rtt(*key), replica.load(*key)) == (main.rtt(*key), main.load(*key)), key
    assert replica.forced_down("web", A1) and replica.status("web", A2) is DRAIN and replica.load("web", A2) == 0.5
    assert replica.version > before and not replica.everything_up()
    replica.apply(HealthSnapshot())  # everything back UP
    assert replica.status("web", A1) is UP and not replica.forced_down("web", A1) and replica.everything_up()
    assert messages(caplog) == []  # the main process logs; its workers do not repeat it


def test_the_server_wiring_takes_extra_sources_before_the_local_ones():
    remote = Verdicts("vantages", Layer.PROBES)
    monitor = HealthMonitor.build(None, sources=(remote,))
    board = monitor.board
    assert isinstance(board, CountingBoard)
    assert board.sources[0] is remote and isinstance(board.local, LocalProbes) and isinstance(board.admin, AdminOverrides)
    board.track(USERS, CHECKS)
    remote.say(("web", A1), Verdict(DOWN, "3 of 3 vantages: timeout"))
    assert board.status("web", A1) is DOWN
    assert board.stats.changes == {("web", A1, "DOWN"): 1}  # counted for /metrics like any change
