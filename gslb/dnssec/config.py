"""A zone's `dnssec:` section -> the zone's signer, its keys read once, at load.

    dnssec:
      keys: keys/gslb.example.com   # the key directory, relative to the zones directory
      validity: 7d                  # how long a signature is valid (default 7d)
      dnskey_ttl: 1h                # TTL of DNSKEY, CDS and CDNSKEY (default 1h)

Every problem is one line with the zone file and key path; a private key file that others can
read is a warning (logged), not a refusal.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gslb.config.problems import Problems, join_path, shown
from gslb.config.rdata import seconds
from gslb.dnssec.keys import scan_keys
from gslb.dnssec.signer import DEFAULT_DNSKEY_TTL, DEFAULT_VALIDITY, MAX_VALIDITY, MIN_VALIDITY, ZoneSigner
from gslb.names import Name, to_text

log = logging.getLogger(__name__)

DNSSEC_KEYS = ("keys", "validity", "dnskey_ttl")
MAX_TTL = 2**31 - 1


@dataclass(frozen=True, slots=True)
class DnssecSpec:
    keys: Path  # absolute, or relative to the current directory as the zones directory was given
    validity: int = DEFAULT_VALIDITY
    dnskey_ttl: int = DEFAULT_DNSKEY_TTL


def parse_dnssec(value: Any, zones_dir: Path, problems: Problems, path: str = "dnssec") -> DnssecSpec | None:
    """The `dnssec:` mapping, or None with the problems added."""
    if not isinstance(value, dict):
        problems.add(path, f"must be a mapping like {{keys: keys/example.com}}, got {shown(value)}")
        return None
    ok = True
    for key in value:
        if key not in DNSSEC_KEYS:
            problems.add(join_path(path, key), f"unknown key; expected one of {', '.join(DNSSEC_KEYS)}")
            ok = False
    directory = value.get("keys")
    if not isinstance(directory, str) or not directory.strip() or "\x00" in directory:
        problems.add(join_path(path, "keys"), f"must be the key directory, relative to the zones directory, "
                                              f"like keys/example.com; got {shown(directory)}")
        ok = False
    validity, dnskey_ttl = DEFAULT_VALIDITY, DEFAULT_DNSKEY_TTL
    try:
        if "validity" in value:
            validity = seconds(value["validity"], "validity", MIN_VALIDITY, MAX_VALIDITY)
    except ValueError as error:
        problems.add(join_path(path, "validity"), str(error))
        ok = False
    try:
        if "dnskey_ttl" in value:
            dnskey_ttl = seconds(value["dnskey_ttl"], "dnskey_ttl", 0, MAX_TTL)
    except ValueError as error:
        problems.add(join_path(path, "dnskey_ttl"), str(error))
        ok = False
    if not ok or not isinstance(directory, str):
        return None
    return DnssecSpec(zones_dir / directory, validity, dnskey_ttl)


def build_signer(spec: DnssecSpec, origin: Name, negative_ttl: int, problems: Problems,
                 path: str = "dnssec.keys") -> ZoneSigner | None:
    """Reads the zone's keys (once: the signer never touches a file again) and checks that
    there is something to sign with: an active KSK or CSK for the DNSKEY set, an active ZSK or
    CSK for the rest."""
    scan = scan_keys(spec.keys, origin)
    for warning in scan.warnings:
        log.warning("%s: %s: %s", problems.file, path, warning)
    for error in scan.errors:
        problems.add(path, error)
    if scan.errors:
        return None
    command = f"gslb dnssec keygen --zones DIR {to_text(origin)}"
    if not scan.keys:
        problems.add(path, f"{spec.keys}: no keys for {to_text(origin)} here; create one with `{command}`")
        return None
    active = [key for key in scan.keys if key.state == "active"]
    if not any(key.signs_keys for key in active):
        problems.add(path, f"{spec.keys}: no active KSK or CSK to sign the DNSKEY set; activate one with "
                           f"`gslb dnssec activate --zones DIR {to_text(origin)} TAG` or create one with `{command}`")
    if not any(key.signs_zone for key in active):
        problems.add(path, f"{spec.keys}: no active ZSK or CSK to sign the zone; activate one with "
                           f"`gslb dnssec activate --zones DIR {to_text(origin)} TAG` or create one with `{command}`")
    if not any(key.signs_keys for key in active) or not any(key.signs_zone for key in active):
        return None
    return ZoneSigner(origin, scan.keys, negative_ttl=negative_ttl, validity=spec.validity, dnskey_ttl=spec.dnskey_ttl)
