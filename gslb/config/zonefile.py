"""Zone YAML -> an immutable Zone, with every problem reported by file and key path."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Any

from dnslib import QTYPE, RD, RR, SOA, DNSLabel

from gslb.config.dynamic import parse_dynamic
from gslb.config.files import DEFAULT_MAX_BYTES
from gslb.config.problems import Problems, join_path, shown
from gslb.config.rdata import PARSERS, _integer, article, seconds
from gslb.config.regions import parse_regions
from gslb.config.yamlload import load_yaml
from gslb.dnssec.config import build_signer, parse_dnssec
from gslb.dnssec.signer import ZoneSigner
from gslb.geo.rules import RegionRules
from gslb.health.checks import Check, parse_checks
from gslb.names import WILDCARD, Name, NameError_, is_subdomain, is_wildcard, parse_absolute, parse_owner, to_text
from gslb.zone import Node, Referral, RRset, Zone

MAX_TTL = 2**31 - 1  # RFC 2181 section 8
ZONE_KEYS = {"origin", "ttl", "soa", "ns", "records", "regions", "subnets", "default_region", "checks", "dnssec"}
SOA_DEFAULTS = {"refresh": 3600, "retry": 600, "expire": 1209600, "minimum": 60}
STATIC_RECORD_KEYS = {"type", "value", "values", "ttl"}
A, NS, CNAME, SOA_TYPE, AAAA = 1, 2, 5, 6, 28


def _ttl(value: Any, path: str, problems: Problems) -> int | None:
    try:
        return seconds(value, "ttl", 0, MAX_TTL)
    except ValueError as error:
        problems.add(path, str(error))
        return None


def _rrset(name: Name, rtype: int, ttl: int, rdatas: list[RD]) -> RRset:
    owner = DNSLabel(to_text(name))
    # Equal values listed twice would be sent twice; an RRset is a set (RFC 2181 section 5).
    if len(rdatas) > 1:
        unique: dict[str, RD] = {}
        for rdata in rdatas:
            unique.setdefault(repr(rdata), rdata)
        rdatas = list(unique.values())
    records = tuple(RR(owner, rtype, 1, ttl, rdata) for rdata in rdatas)
    return RRset(name, rtype, ttl, records)


class ZoneBuilder:
    """Reads one zone document. Problems go to `problems`; `build()` returns None if there were any."""

    def __init__(self, file: str, document: Any, problems: Problems) -> None:
        self.file = file
        self.rules: RegionRules | None = None
        self.check_names: set[str] = set()
        self.checks: dict[str, Check] = {}
        self.doc = document
        self.problems = problems
        self.origin: Name = ()
        self.ttl = 300
        # name -> type -> (ttl, rdatas, path)
        self.static: dict[Name, dict[int, tuple[int, list[RD], str]]] = {}
        self.dynamic: dict[Name, dict[int, Any]] = {}
        self.signer: ZoneSigner | None = None

    # -- top level ---------------------------------------------------------------------------
    def build(self) -> Zone | None:
        doc = self.doc
        if not isinstance(doc, dict):
            self.problems.add("", "a zone file must be a mapping with origin, ns and records")
            return None
        for key in doc:
            if key not in ZONE_KEYS:
                self.problems.add(str(key), f"unknown key; expected one of {', '.join(sorted(ZONE_KEYS))}")
        origin = doc.get("origin")
        if origin is None:
            self.problems.add("origin", "missing; set the zone's name, like 'gslb.example.com.'")
            return None
        if not isinstance(origin, str):
            # str() of a mapping or list would be checked as a name, and echoed whole.
            self.problems.add("origin", f"must be the zone's name, like 'gslb.example.com.', got {shown(origin)}")
            return None
        try:
            self.origin = parse_absolute(origin if origin.endswith(".") else f"{origin}.")
        except NameError_ as error:
            self.problems.add("origin", str(error))
            return None
        if "ttl" in doc:
            self.ttl = _ttl(doc["ttl"], "ttl", self.problems) or self.ttl
        self.rules = parse_regions(doc, self.problems)
        checks = doc.get("checks", {})
        self.checks = parse_checks(checks, self.problems)  # health checks (gslb/health/checks.py)
        if isinstance(checks, dict):
            self.check_names = {str(name) for name in checks}
        self._apex_ns(doc.get("ns"))
        self._records(doc.get("records", {}))
        soa, serial, minimum = self._soa(doc.get("soa", {}))
        self._check_tree()
        if "dnssec" in doc:
            # The keys are read here, once; the denial TTL needs the SOA.
            spec = parse_dnssec(doc["dnssec"], Path(self.file).parent, self.problems)
            if spec is not None and soa is not None:
                self.signer = build_signer(spec, self.origin, min(soa.ttl, minimum), self.problems)
        if self.problems or soa is None:
            return None
        return self._freeze(soa, serial, minimum)

    def _apex_ns(self, value: Any) -> None:
        if value is None:
            self.problems.add("ns", "missing; list the zone's name servers, like [ns1.example.com.]")
            return
        names = value if isinstance(value, list) else [value]
        rdatas = []
        for index, target in enumerate(names):
            try:
                rdatas.append(PARSERS["NS"][1](target))
            except ValueError as error:
                self.problems.add(join_path("ns", index) if isinstance(value, list) else "ns", str(error))
        if not names:
            self.problems.add("ns", "must list at least one name server")
        self.static.setdefault(self.origin, {})[NS] = (self.ttl, rdatas, "ns")

    def _soa(self, value: Any) -> tuple[RRset | None, int, int]:
        if not isinstance(value, dict):
            self.problems.add("soa", "must be a mapping (mname, rname, serial, refresh, retry, expire, minimum)")
            return None, 0, 0
        fields = {"mname", "rname", "serial", *SOA_DEFAULTS}
        for key in value:
            if key not in fields:
                self.problems.add(f"soa.{key}", f"unknown key; expected one of {', '.join(sorted(fields))}")
        ns_list = self.doc.get("ns")
        first_ns = ns_list[0] if isinstance(ns_list, list) and ns_list else ns_list
        mname_text = value.get("mname", first_ns if isinstance(first_ns, str) else None)
        rname_text = value.get("rname", f"hostmaster.{to_text(self.origin)}")
        names = []
        for key, text in (("mname", mname_text), ("rname", rname_text)):
            try:
                names.append(DNSLabel(to_text(parse_absolute(text))))  # type: ignore[arg-type]  # None: NameError_ below
            except NameError_ as error:
                self.problems.add(f"soa.{key}", str(error))
        numbers = []
        for key in ("serial", "refresh", "retry", "expire", "minimum"):
            number = value.get(key, SOA_DEFAULTS.get(key, 1))
            try:
                # The timers are durations (1h, 2w, as in BIND); the serial is a plain number.
                numbers.append((_integer if key == "serial" else seconds)(number, key, 0, 2**32 - 1))
            except ValueError as error:
                self.problems.add(f"soa.{key}", str(error))
        if len(names) != 2 or len(numbers) != 5:
            return None, 0, 0
        rrset = _rrset(self.origin, SOA_TYPE, self.ttl, [SOA(names[0], names[1], numbers)])
        return rrset, numbers[0], numbers[4]

    # -- records -----------------------------------------------------------------------------
    def _records(self, value: Any) -> None:
        if not isinstance(value, dict):
            self.problems.add("records", "must be a mapping of names to records")
            return
        for owner_text, entries in value.items():
            path = join_path("records", owner_text)
            try:
                name = parse_owner(str(owner_text), self.origin)
            except NameError_ as error:
                self.problems.add(path, str(error))
                continue
            items = entries if isinstance(entries, list) else [entries]
            for index, entry in enumerate(items):
                self._record(name, entry, join_path(path, index) if isinstance(entries, list) else path)

    def _record(self, name: Name, entry: Any, path: str) -> None:
        if not isinstance(entry, dict):
            self.problems.add(path, "must be a mapping like {type: A, value: 192.0.2.1}")
            return
        raw_type = entry.get("type", "")
        type_name = raw_type.upper() if isinstance(raw_type, str) else ""
        if type_name not in PARSERS:
            self.problems.add(join_path(path, "type"), f"must be one of {', '.join(PARSERS)}, got {shown(entry.get('type'))}")
            return
        rtype, parse = PARSERS[type_name]
        if "pools" in entry:
            self._dynamic_record(name, rtype, entry, path)
            return
        for key in entry:
            if key not in STATIC_RECORD_KEYS:
                self.problems.add(join_path(path, key), f"unknown key for {article(type_name)} record; "
                                  "expected one of type, value, values, ttl (or pools for a GSLB record)")
        ttl = _ttl(entry["ttl"], join_path(path, "ttl"), self.problems) if "ttl" in entry else self.ttl
        if "value" in entry and "values" in entry:
            self.problems.add(path, "has both value and values; use one")
            return
        if "value" in entry:
            values, value_paths = [entry["value"]], [join_path(path, "value")]
        elif isinstance(entry.get("values"), list) and entry["values"]:
            values = entry["values"]
            value_paths = [join_path(join_path(path, "values"), i) for i in range(len(values))]
        else:
            self.problems.add(path, "needs value: or a non-empty values: list")
            return
        rdatas = []
        for value, value_path in zip(values, value_paths):
            try:
                rdatas.append(parse(value))
            except ValueError as error:
                self.problems.add(value_path, str(error))
        if rtype == CNAME and len(values) > 1:
            self.problems.add(path, "a CNAME has exactly one value")
        types = self.static.setdefault(name, {})
        if rtype in types or rtype in self.dynamic.get(name, {}):
            self.problems.add(path, f"{type_name} is given twice for this name; put all values in one values: list")
            return
        if ttl is not None:
            types[rtype] = (ttl, rdatas, path)

    def _dynamic_record(self, name: Name, rtype: int, entry: dict[str, Any], path: str) -> None:
        if rtype in self.static.get(name, {}) or rtype in self.dynamic.get(name, {}):
            self.problems.add(path, f"{QTYPE.get(rtype)} is given twice for this name")
            return
        record = parse_dynamic(name, rtype, entry, path, self.ttl, self.rules, self.check_names, self.problems,
                               checks=self.checks)
        if record is not None:
            self.dynamic.setdefault(name, {})[rtype] = record

    # -- whole-tree rules --------------------------------------------------------------------
    def _check_tree(self) -> None:
        cuts = {name for name, types in self.static.items()
                if NS in types and name != self.origin and not is_wildcard(name)}
        for name, types in self.static.items():
            if not types:
                continue  # every record here was invalid, and is reported already
            path = next(iter(types.values()))[2]
            all_types = set(types) | set(self.dynamic.get(name, {}))
            if is_wildcard(name):
                if NS in types:
                    self.problems.add(types[NS][2], "NS cannot stand at a wildcard name (RFC 4592 section 4.2): "
                                      "a delegation needs a real name; name the child zone instead")
                under = [cut for cut in cuts if is_subdomain(name, cut)]
                if under:
                    self.problems.add(path, f"a wildcard cannot stand below the delegation {to_text(under[0])}: "
                                      "names there are answered by the child zone; put it in the child zone")
                    continue
            if CNAME in types and len(all_types) > 1:  # a GSLB CNAME beside others: reported at it, below
                self.problems.add(path, "a CNAME cannot stand beside other records at the same name (RFC 1034 section 3.6.2)")
            if name == self.origin and CNAME in types:
                self.problems.add(path, "the zone apex cannot be a CNAME (it holds SOA and NS)")
            below_cut = [cut for cut in cuts if is_subdomain(name, cut) and (name != cut)]
            at_cut = name in cuts
            if below_cut or at_cut:
                # Only glue may stand below a cut, and only NS (and glue addresses) at it.
                allowed = {A, AAAA} if below_cut else {NS, A, AAAA}
                extra = all_types - allowed
                if extra:
                    names = ", ".join(QTYPE.get(t) for t in sorted(extra))
                    where = f"below the delegation {to_text(below_cut[0])}" if below_cut else "at a delegation point"
                    self.problems.add(path, f"{names} cannot stand {where}; that data belongs in the child zone")
        for name, records in self.dynamic.items():
            if any(is_subdomain(name, cut) for cut in cuts):
                self.problems.add(next(iter(records.values())).path, "a GSLB record cannot stand at or below a delegation")
            elif CNAME in records:
                self._gslb_cname_alone(name, records)
        self._cname_loops()

    def _gslb_cname_alone(self, name: Name, records: dict[int, Any]) -> None:
        """A GSLB CNAME, like any CNAME, is the only data at its name (RFC 1034 3.6.2, RFC 2181 10.1)."""
        path = records[CNAME].path
        if name == self.origin:
            self.problems.add(path, "the zone apex cannot be a CNAME (it holds SOA and NS)")
            return
        others = (set(self.static.get(name, {})) | set(records)) - {CNAME}
        if others:
            names = ", ".join(QTYPE.get(t) for t in sorted(others))
            self.problems.add(path, f"a CNAME cannot stand beside other records at the same name ({names} here; "
                                    "RFC 1034 section 3.6.2): move them to another name or remove them")

    def _cname_loops(self) -> None:
        """A chain of CNAMEs inside the zone that comes back to itself never reaches data: every
        query for a name on it would fail (RFC 1034 section 3.6.2 asks to avoid them), so the
        zone is refused. Each loop is reported once, at its first record in the file."""
        targets: dict[Name, Name] = {}
        for name, types in self.static.items():
            found = types.get(CNAME)
            if found is not None and found[1]:
                label = found[1][0].label.label
                targets[name] = tuple(part.lower() for part in label)
        if any(is_wildcard(name) for name in targets):
            # A target with no node of its own may be answered by a wildcard CNAME (RFC 4592): the
            # chain goes on from that '*' record, as `lookup` would follow it.
            existing = {self.origin}
            for name in (*self.static, *self.dynamic):
                existing.update(name[start:] for start in range(len(name) - len(self.origin)))
            for name, target in targets.items():
                if target not in existing and is_subdomain(target, self.origin):
                    encloser = next(target[start:] for start in range(1, len(target) + 1) if target[start:] in existing)
                    if (WILDCARD,) + encloser in targets:
                        targets[name] = (WILDCARD,) + encloser
        order = {name: index for index, name in enumerate(targets)}
        walked: set[Name] = set()  # names whose chain was followed already: each link is walked once
        for start in targets:  # file order
            if start in walked:
                continue
            chain: list[Name] = []
            position: dict[Name, int] = {}
            name = start
            while name in targets and name not in walked:
                position[name] = len(chain)
                chain.append(name)
                walked.add(name)
                name = targets[name]
                if name in position:
                    loop = chain[position[name]:]
                    first = min(loop, key=order.__getitem__)
                    at = loop.index(first)
                    names = [to_text(n) for n in loop[at:] + loop[:at] + [first]]
                    if len(names) > 6:
                        names[3:-2] = [f"({len(names) - 5} more)"]
                    self.problems.add(self.static[first][CNAME][2], f"CNAME loop {' -> '.join(names)}; "
                                      "a chain of CNAMEs must end at a name with records")
                    break

    def _freeze(self, soa: RRset, serial: int, minimum: int) -> Zone:
        rrsets: dict[Name, dict[int, RRset]] = {}
        for name, types in self.static.items():
            for rtype, (ttl, rdatas, _path) in types.items():
                rrsets.setdefault(name, {})[rtype] = _rrset(name, rtype, ttl, rdatas)
        rrsets[self.origin][SOA_TYPE] = soa
        for name in self.dynamic:
            rrsets.setdefault(name, {})
        nodes = {
            name: Node(name, MappingProxyType(types), MappingProxyType(dict(self.dynamic.get(name, {}))))
            for name, types in rrsets.items()
        }
        nonterminals = set()
        for name in nodes:
            for length in range(len(self.origin) + 1, len(name)):
                ancestor = name[len(name) - length:]
                if ancestor not in nodes:
                    nonterminals.add(ancestor)

        def addresses(target: Name) -> tuple[RRset, ...]:
            node = nodes.get(target)
            if node is None:
                return ()
            return tuple(node.rrsets[t] for t in (A, AAAA) if t in node.rrsets)

        def glue_for(ns: RRset) -> tuple[RRset, ...]:
            found: list[RRset] = []
            for record in ns.records:
                target = tuple(label.lower() for label in record.rdata.label.label)
                if is_subdomain(target, self.origin):
                    found.extend(addresses(target))
            return tuple(found)

        referrals = {}
        for name, node in nodes.items():
            if name != self.origin and NS in node.rrsets:
                referrals[name] = Referral(name, node.rrsets[NS], glue_for(node.rrsets[NS]))
        return Zone(
            origin=self.origin,
            file=self.file,
            serial=serial,
            soa=soa,
            negative_ttl=min(soa.ttl, minimum),
            nodes=MappingProxyType(nodes),
            nonterminals=frozenset(nonterminals),
            referrals=MappingProxyType(referrals),
            apex_glue=glue_for(nodes[self.origin].rrsets[NS]),
            region_rules=self.rules,  # the locator is built from them later (gslb.geo.locate_catalog)
            checks=MappingProxyType(dict(self.checks)),
            signer=self.signer,
            wildcards=MappingProxyType({name[1:]: node for name, node in nodes.items() if is_wildcard(name)}),
        )


def load_zone_file(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[Zone | None, Problems]:
    """One zone file; a file over `max_bytes` (the max_zone_file_size setting) is not read."""
    problems = Problems(str(path))
    document = load_yaml(path, problems, max_bytes, limit_setting="max_zone_file_size")
    if problems:
        return None, problems
    zone = ZoneBuilder(str(path), document, problems).build()
    return zone, problems
