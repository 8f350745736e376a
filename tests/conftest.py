"""Shared fixtures: real `gslb serve` processes on port 0 (see tests/dnsserver.py)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Region tables compiled by the servers the tests start go to a directory of this run, not the
# user's ~/.cache/gslb (inherited by every subprocess; a test may still point it elsewhere). It
# is removed when the run ends (pytest_unconfigure), once every server has stopped.
_RUN_CACHE_DIR: str | None = None
if "GSLB_CACHE_DIR" not in os.environ:
    _RUN_CACHE_DIR = tempfile.mkdtemp(prefix="gslb-test-cache-")
    os.environ["GSLB_CACHE_DIR"] = _RUN_CACHE_DIR

from dnsserver import (  # noqa: E402
    EXAMPLE_ZONES,
    WIRE_ZONES,
    GslbProcess,
    ipv6_loopback_works,
)

# The property tests (tests/test_fuzz_*.py and others using hypothesis) run under a fixed budget
# in the suite: a bounded number of examples, derandomized (the same examples on every run, so CI
# is reproducible and a failure reruns), no example database written to the worktree, no per-example
# deadline (a loaded machine is slow, not wrong). `--hypothesis-profile fuzz` (or
# HYPOTHESIS_PROFILE=fuzz) explores far more, with fresh random examples each run.
settings.register_profile(
    "ci", max_examples=100, derandomize=True, database=None, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
settings.register_profile(
    "fuzz", max_examples=5000, deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

NODE_NAME = "wire-node-1"
IPV6 = ipv6_loopback_works()

StartServer = Callable[..., GslbProcess]


def pytest_unconfigure(config: pytest.Config) -> None:
    if _RUN_CACHE_DIR is not None:
        shutil.rmtree(_RUN_CACHE_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def start_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartServer]:
    """A factory: `start_server(zones_dir, node_name=..., config=..., listen=[...])` returns a
    running GslbProcess; every server it started is stopped at the end of the session."""
    started: list[GslbProcess] = []
    log_dir = tmp_path_factory.mktemp("gslb-logs")

    def start(zones: Path, **options) -> GslbProcess:
        server = GslbProcess.start(zones, log_dir=log_dir, **options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def wire_server(start_server: StartServer) -> GslbProcess:
    """tests/data/zones_wire with a node name, on 127.0.0.1 and (when it works) [::1]."""
    listen = ["127.0.0.1:0"] + (["[::1]:0"] if IPV6 else [])
    return start_server(WIRE_ZONES, node_name=NODE_NAME, listen=listen)


@pytest.fixture(scope="session")
def wire_server6(wire_server: GslbProcess):
    """The wire server's [::1] address; tests using it skip where IPv6 loopback is unavailable."""
    if not IPV6:
        pytest.skip("IPv6 loopback ([::1]) is not available on this host")
    client = wire_server.clients[1]
    assert client.host == "::1"
    return client


@pytest.fixture(scope="session")
def example_server(start_server: StartServer) -> GslbProcess:
    """The shipped example zone (zones/), no node name."""
    return start_server(EXAMPLE_ZONES, probe_name="gslb.example.com.")


@pytest.fixture(params=[False, True], ids=["udp", "tcp"])
def tcp(request: pytest.FixtureRequest) -> bool:
    """Run the test over UDP and over TCP."""
    return request.param
