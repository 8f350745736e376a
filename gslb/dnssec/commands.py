"""`gslb dnssec keygen|ds|list|activate|retire|remove`: a zone's keys, for setup and rollover.

The commands read only the zone file's `origin:` and `dnssec:` (a zone without keys yet does not
pass `gslb check`, and keygen is how it gets them), change files, and never talk to a running
server: it watches the key files like the zone files (gslb/reload.py) and serves the new key set
within its poll interval, or at once on `gslb reload` (or SIGHUP).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from gslb.config.catalog import zone_files
from gslb.config.problems import Problems, shown
from gslb.config.yamlload import load_yaml
from gslb.dnssec.config import DnssecSpec, parse_dnssec
from gslb.dnssec.keys import ROLES, Key, KeyScan, ds_records, keygen, remove, scan_keys, with_state
from gslb.names import Name, NameError_, parse_absolute, to_text

# gslb.reload.POLL_INTERVAL, not imported: that would load the whole server into a file command.
POLL_HINT = "within a second (its poll interval), or at once on `gslb reload`"
RELOAD_HINT = f"a server running on these files serves it {POLL_HINT}"


class CommandError(Exception):
    """One line for standard error: what is wrong and what to do."""


@dataclass(frozen=True, slots=True)
class ZoneKeys:
    file: Path
    origin: Name
    spec: DnssecSpec


def zone_name(text: str) -> Name:
    try:
        return parse_absolute(text if text.endswith(".") else f"{text}.")
    except NameError_ as error:
        raise CommandError(f"ZONE: {error}") from None


def find_zone(zones_dir: Path, origin: Name) -> ZoneKeys:
    """The zone file in `zones_dir` whose origin is `origin`, and its `dnssec:` settings."""
    if not zones_dir.is_dir():
        raise CommandError(f"{zones_dir}: zones directory not found; pass --zones DIR")
    documents = _documents(zones_dir)
    for path, document in documents:
        if not isinstance(document, dict) or _origin(document.get("origin")) != origin:
            continue
        if "dnssec" not in document:
            raise CommandError(f"{path}: the zone has no dnssec: section; add one like "
                               f"`dnssec: {{keys: keys/{to_text(origin).rstrip('.') or 'root'}}}` first")
        problems = Problems(str(path))
        spec = parse_dnssec(document["dnssec"], zones_dir, problems)
        if spec is None:
            raise CommandError(str(next(iter(problems))))
        return ZoneKeys(path, origin, spec)
    unread = len(zone_files(zones_dir)) - len(documents)
    also = f" ({unread} file{'s' if unread != 1 else ''} could not be read; see gslb check)" if unread else ""
    raise CommandError(f"{zones_dir}: no zone file with origin {to_text(origin)}{also}")


def signed_zones(zones_dir: Path) -> list[ZoneKeys]:
    found = []
    for path, document in _documents(zones_dir):
        if isinstance(document, dict) and "dnssec" in document:
            origin = _origin(document.get("origin"))
            spec = parse_dnssec(document["dnssec"], zones_dir, Problems(str(path)))
            if origin is not None and spec is not None:
                found.append(ZoneKeys(path, origin, spec))
    return found


def _documents(zones_dir: Path) -> list[tuple[Path, Any]]:
    documents = []
    for path in zone_files(zones_dir):
        problems = Problems(str(path))
        document = load_yaml(path, problems)
        if not problems:
            documents.append((path, document))
    return documents


def _origin(value: Any) -> Name | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_absolute(value if value.endswith(".") else f"{value}.")
    except NameError_:
        return None


def _scan(zone: ZoneKeys, err: TextIO) -> KeyScan:
    scan = scan_keys(zone.spec.keys, zone.origin)
    for line in scan.warnings:
        print(f"gslb dnssec: warning: {line}", file=err)
    for line in scan.errors:
        if "key directory not found" not in line:
            print(f"gslb dnssec: warning: skipped: {line}", file=err)
    return scan


def _by_tag(scan: KeyScan, zone: ZoneKeys, tag: str) -> Key:
    for key in scan.keys:
        if str(key.tag) == tag.strip():
            return key
    known = ", ".join(f"{key.tag} ({key.role}, {key.state})" for key in scan.keys) or "none"
    raise CommandError(f"{zone.spec.keys}: no key {shown(tag)} for {to_text(zone.origin)}; its keys: {known}")


def cmd_keygen(zone: ZoneKeys, role: str, out: TextIO, err: TextIO) -> int:
    if role not in ROLES:
        raise CommandError(f"--role must be one of {', '.join(ROLES)}, got {shown(role)}")
    scan = _scan(zone, err)
    active = [key for key in scan.keys if key.state == "active"]
    # A key that has no active key to take over from starts active (the zone's first key, or
    # the ZSK of a new KSK + ZSK pair); any other starts published, for a rollover.
    covers_keys = any(key.signs_keys for key in active)
    covers_zone = any(key.signs_zone for key in active)
    first = {"ksk": not covers_keys, "zsk": not covers_zone, "csk": not covers_keys and not covers_zone}[role]
    state = "active" if first else "published"
    try:
        key = keygen(zone.spec.keys, zone.origin, role, state)
    except OSError as error:
        raise CommandError(f"{zone.spec.keys}: cannot write the key ({error.strerror or error})") from None
    print(f"{key.tag} {key.role} {key.state} {key.private_path}", file=out)
    if first:
        print(f"gslb dnssec: key {key.tag} ({role}) of {to_text(zone.origin)} created active; {RELOAD_HINT}", file=err)
    else:
        print(f"gslb dnssec: key {key.tag} ({role}) of {to_text(zone.origin)} created published (in the DNSKEY set, "
              f"not signing); {RELOAD_HINT}, then follow the rollover steps in docs/dnssec.md", file=err)
    return 0


def cmd_ds(zone: ZoneKeys, out: TextIO, err: TextIO) -> int:
    scan = _scan(zone, err)
    keys = [key for key in scan.keys if key.signs_keys and key.state in ("published", "active")]
    if not keys:
        raise CommandError(f"{zone.spec.keys}: no published or active KSK/CSK for {to_text(zone.origin)}; "
                           f"create one with `gslb dnssec keygen --zones DIR {to_text(zone.origin)}`")
    for key in keys:
        for line in ds_records(key):
            print(line, file=out)
    return 0


def cmd_list(zones: list[ZoneKeys], out: TextIO, err: TextIO) -> int:
    print(f"{'ZONE':<30} {'TAG':>5} {'ROLE':<4} {'FLAGS':>5} {'STATE':<9} {'CREATED':<20} {'CHANGED':<20} FILE", file=out)
    for zone in zones:
        for key in sorted(_scan(zone, err).keys, key=lambda k: (k.role, k.created, k.tag)):
            print(f"{to_text(zone.origin):<30} {key.tag:>5} {key.role:<4} {key.flags:>5} {key.state:<9} "
                  f"{_when(key.created):<20} {_when(key.changed):<20} {key.private_path}", file=out)
    return 0


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


def cmd_state(zone: ZoneKeys, tag: str, action: str, out: TextIO, err: TextIO) -> int:
    scan = _scan(zone, err)
    key = _by_tag(scan, zone, tag)
    others = [other for other in scan.keys if other.tag != key.tag and other.state == "active"]
    if action in ("retire", "remove") and key.state == "active":
        # The zone would fail `gslb check` (and a reload) with nothing left to sign with.
        for job, signs in (("the DNSKEY set (KSK or CSK)", "signs_keys"), ("the zone (ZSK or CSK)", "signs_zone")):
            if getattr(key, signs) and not any(getattr(other, signs) for other in others):
                raise CommandError(f"key {key.tag} is the last active key signing {job} of {to_text(zone.origin)}; "
                                   "activate its successor first")
    if action == "remove":
        if key.state == "active":
            raise CommandError(f"key {key.tag} is active; retire it first, and remove it once its signatures "
                               "have expired from caches (docs/dnssec.md)")
        try:
            remove(key)
        except OSError as error:
            raise CommandError(f"{key.metadata_path}: cannot remove it ({error.strerror or error})") from None
        print(f"gslb dnssec: key {key.tag} ({key.role}) of {to_text(zone.origin)} removed; a server running "
              f"on these files stops publishing it {POLL_HINT}", file=err)
        return 0
    state = {"activate": "active", "retire": "retired"}[action]
    if key.state == state:
        print(f"gslb dnssec: key {key.tag} is already {state}", file=err)
        return 0
    try:
        changed = with_state(key, state)
    except OSError as error:
        raise CommandError(f"{key.metadata_path}: cannot write it ({error.strerror or error})") from None
    print(f"{changed.tag} {changed.role} {changed.state} {changed.private_path}", file=out)
    print(f"gslb dnssec: key {key.tag} ({key.role}) of {to_text(zone.origin)} is now {state}; {RELOAD_HINT}", file=err)
    return 0


def run(action: str, zones_dir: Path, zone_text: str | None, *, role: str = "csk", tag: str | None = None,
        out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """One `gslb dnssec` command; 0 on success, 1 with one line on standard error otherwise."""
    try:
        if action == "list":
            if zone_text is None:
                if not zones_dir.is_dir():
                    raise CommandError(f"{zones_dir}: zones directory not found; pass --zones DIR")
                return cmd_list(signed_zones(zones_dir), out, err)
            return cmd_list([find_zone(zones_dir, zone_name(zone_text))], out, err)
        if zone_text is None:
            raise CommandError("give the ZONE")
        zone = find_zone(zones_dir, zone_name(zone_text))
        if action == "keygen":
            return cmd_keygen(zone, role, out, err)
        if action == "ds":
            return cmd_ds(zone, out, err)
        if tag is None:
            raise CommandError("give the key's TAG (see gslb dnssec list)")
        return cmd_state(zone, tag, action, out, err)
    except CommandError as error:
        print(f"gslb dnssec {action}: {error}", file=err)
        return 1
