"""The check kinds, in one registry: a zone's `checks:` entry names its kind by a YAML key
(`http:`, `https:`, `tcp:`), and the kind says how that is parsed (gslb/health/specs.py), which
probe runs it (gslb/health/probes.py) and what its probes provide beyond UP/DOWN (RTT, load),
which `gslb check` holds against what a record's policy needs (gslb/policy/).

Adding a kind: a spec class (parse, provides, describe), a probe class, and one line here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from gslb.config.problems import Problems
from gslb.health.probes import HttpProbe, Probe, TcpProbe
from gslb.health.specs import HttpSpec, ProbeSpec, TcpSpec


@dataclass(frozen=True, slots=True)
class CheckKind:
    name: str  # the YAML key
    spec: type[HttpSpec] | type[TcpSpec]  # the immutable value a check of this kind parses into
    probe: type[Probe]  # built once per check with (spec, aiohttp session)
    parse: Callable[[Any, str, Problems], ProbeSpec | None]  # (raw, key path, problems) -> spec or None

    def provides(self, spec: ProbeSpec) -> frozenset[str]:
        """What the probes of a check of this kind provide beyond UP/DOWN ("rtt", "load")."""
        return spec.provides()


CHECK_KINDS: Mapping[str, CheckKind] = MappingProxyType({kind.name: kind for kind in (
    CheckKind("http", HttpSpec, HttpProbe, HttpSpec.parse),  # a GET: its status, body and reported load
    CheckKind("https", HttpSpec, HttpProbe, HttpSpec.parse_https),  # the same over TLS
    CheckKind("tcp", TcpSpec, TcpProbe, TcpSpec.parse),  # a handshake
)})


def probe_classes() -> dict[str, type[Probe]]:
    """A spec's `kind` -> the class that runs it: what the monitor builds probes from."""
    found: dict[str, type[Probe]] = {}
    for kind in CHECK_KINDS.values():
        spec_kind = kind.spec.kind
        if found.setdefault(spec_kind, kind.probe) is not kind.probe:
            raise RuntimeError(f"check kinds sharing the spec kind {spec_kind!r} name different probes")
    return found


PROBES: Mapping[str, type[Probe]] = MappingProxyType(probe_classes())
