"""DNSSEC keys on disk: one ECDSA P-256 / SHA-256 key (algorithm 13, RFC 6605) per file pair.

`K<zone>.+013+<tag>.pem` holds the private key (PKCS#8 PEM, mode 0600) and
`K<zone>.+013+<tag>.json` its metadata: zone, key tag, flags, role, rollover state and when it
was created and last changed. The public half is derived from the private key, so the two cannot
disagree; the tag in the metadata is checked against it.

States follow a rollover: `published` (in the DNSKEY set, signs nothing), `active` (in the
DNSKEY set, signs), `retired` (still in the DNSKEY set so cached signatures keep validating,
signs nothing). `remove` deletes the files.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import os
import stat
import struct
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gslb.config.files import FileRefused, read_regular_file
from gslb.config.problems import shown
from gslb.names import Name, to_text

ALGORITHM = 13  # ECDSAP256SHA256, RFC 6605
PROTOCOL = 3  # RFC 4034 section 2.1.2: always 3
DIGEST_SHA256 = 2  # RFC 4509
FLAGS = {"csk": 257, "ksk": 257, "zsk": 256}  # 256: Zone Key; 257: Zone Key + Secure Entry Point
ROLES = tuple(FLAGS)
STATES = ("published", "active", "retired")
MAX_KEY_FILE_BYTES = 64 * 1024  # a PEM or metadata file is a few hundred bytes


class KeyFileError(ValueError):
    """A key file that cannot be used. `str()` is one line that starts with the file's path."""


@dataclass(frozen=True, slots=True)
class Key:
    zone: Name
    tag: int
    role: str  # csk | ksk | zsk
    state: str  # published | active | retired
    created: float  # Unix time
    changed: float  # Unix time of the last state change
    metadata_path: Path
    private_path: Path
    private_key: ec.EllipticCurvePrivateKey
    public_key: bytes  # the DNSKEY public key field: x || y, 64 bytes (RFC 6605 section 4)

    @property
    def flags(self) -> int:
        return FLAGS[self.role]

    @property
    def signs_keys(self) -> bool:
        """Signs the DNSKEY, CDS and CDNSKEY RRsets (a KSK or a CSK)."""
        return self.role in ("ksk", "csk")

    @property
    def signs_zone(self) -> bool:
        """Signs every other RRset (a ZSK or a CSK)."""
        return self.role in ("zsk", "csk")

    @property
    def dnskey_rdata(self) -> bytes:
        return dnskey_rdata(self.flags, self.public_key)


def dnskey_rdata(flags: int, public_key: bytes) -> bytes:
    return struct.pack("!HBB", flags, PROTOCOL, ALGORITHM) + public_key


def key_tag(rdata: bytes) -> int:
    """RFC 4034 appendix B, over the DNSKEY RDATA in wire form (algorithm 1 excepted, unused here)."""
    total = 0
    for index, byte in enumerate(rdata):
        total += byte if index & 1 else byte << 8
    total += (total >> 16) & 0xFFFF
    return total & 0xFFFF


def public_key_bytes(private_key: ec.EllipticCurvePrivateKey) -> bytes:
    point = private_key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return point[1:]  # drop the 0x04 "uncompressed" prefix: RFC 6605 keeps x || y only


def owner_wire(name: Name) -> bytes:
    """A name in canonical wire form: lowercased (a Name is already), uncompressed."""
    return b"".join(bytes((len(label),)) + label for label in name) + b"\x00"


def ds_digest(key: Key) -> bytes:
    """RFC 4034 section 5.1.4 with SHA-256 (RFC 4509): digest(owner name | DNSKEY RDATA)."""
    return hashlib.sha256(owner_wire(key.zone) + key.dnskey_rdata).digest()


def ds_records(key: Key) -> list[str]:
    """The DS record(s) for the parent, in zone-file form: `ZONE. IN DS tag 13 2 HEX`."""
    return [f"{to_text(key.zone)} IN DS {key.tag} {ALGORITHM} {DIGEST_SHA256} {ds_digest(key).hex().upper()}"]


def file_stem(zone: Name, tag: int) -> str:
    # BIND's naming, so an operator recognises the files: Kexample.com.+013+12345
    return f"K{to_text(zone)}+{ALGORITHM:03d}+{tag:05d}"


def keygen(directory: Path, zone: Name, role: str, state: str = "active", now: float | None = None) -> Key:
    """A new key for `zone` written to `directory` (created, mode 0700, if missing). The tag
    names the key in the commands, so a key whose tag another key of the zone already has is
    thrown away and drawn again."""
    if role not in FLAGS:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {shown(role)}")
    if state not in STATES:
        raise ValueError(f"state must be one of {', '.join(STATES)}, got {shown(state)}")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    taken = {int(path.stem.rsplit("+", 1)[1]) for path in _key_files(directory, zone, ".json")
             if path.stem.rsplit("+", 1)[1].isdigit()}
    taken |= {int(path.stem.rsplit("+", 1)[1]) for path in _key_files(directory, zone, ".pem")
              if path.stem.rsplit("+", 1)[1].isdigit()}
    while True:
        private_key = ec.generate_private_key(ec.SECP256R1())
        public_key = public_key_bytes(private_key)
        tag = key_tag(dnskey_rdata(FLAGS[role], public_key))
        if tag not in taken:
            break
    stamp = time.time() if now is None else now
    stem = file_stem(zone, tag)
    pem = private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    key = Key(zone, tag, role, state, stamp, stamp, directory / f"{stem}.json", directory / f"{stem}.pem",
              private_key, public_key)
    _write_new(key.private_path, pem)
    try:
        write_metadata(key)
    except BaseException:
        key.private_path.unlink(missing_ok=True)
        raise
    return key


def with_state(key: Key, state: str, now: float | None = None) -> Key:
    """`key` moved to `state`, its metadata file rewritten (whole, atomically)."""
    if state not in STATES:
        raise ValueError(f"state must be one of {', '.join(STATES)}, got {shown(state)}")
    changed = replace(key, state=state, changed=time.time() if now is None else now)
    write_metadata(changed)
    return changed


def remove(key: Key) -> None:
    key.metadata_path.unlink(missing_ok=True)
    key.private_path.unlink(missing_ok=True)


def write_metadata(key: Key) -> None:
    document = {
        "zone": to_text(key.zone),
        "tag": key.tag,
        "algorithm": ALGORITHM,
        "flags": key.flags,
        "role": key.role,
        "state": key.state,
        "created": _iso(key.created),
        "changed": _iso(key.changed),
    }
    text = json.dumps(document, indent=2) + "\n"
    temporary = key.metadata_path.with_name(f".{key.metadata_path.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    _write_new(temporary, text.encode())
    os.replace(temporary, key.metadata_path)


def _write_new(path: Path, data: bytes) -> None:
    # Created with mode 0600 from the start: there is no moment when another user could open it.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)


def _iso(stamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


def _from_iso(text: Any) -> float:
    if not isinstance(text, str):
        raise ValueError
    return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")))


def _key_files(directory: Path, zone: Name, suffix: str) -> list[Path]:
    prefix = f"K{to_text(zone)}+{ALGORITHM:03d}+"
    try:
        entries = sorted(directory.iterdir())
    except OSError:
        return []
    return [path for path in entries if path.name.startswith(prefix) and path.name.endswith(suffix)
            and path.name.count("+") == 2]


@dataclass(frozen=True, slots=True)
class KeyScan:
    """What a key directory holds for one zone: the usable keys, and one line per problem."""

    keys: tuple[Key, ...]
    errors: tuple[str, ...]
    warnings: tuple[str, ...]  # e.g. a private key readable by others: used, but said


def scan_keys(directory: Path, zone: Name) -> KeyScan:
    """Every key of `zone` in `directory`, every problem found (each names its file)."""
    errors: list[str] = []
    warnings: list[str] = []
    keys: list[Key] = []
    if not directory.is_dir():
        return KeyScan((), (f"{directory}: key directory not found; create keys with "
                            f"`gslb dnssec keygen --zones DIR {to_text(zone)}`",), ())
    metadata = _key_files(directory, zone, ".json")
    described = {path.with_suffix(".pem") for path in metadata}
    for pem in _key_files(directory, zone, ".pem"):
        if pem not in described:
            errors.append(f"{pem}: private key without its metadata file {pem.with_suffix('.json').name}; "
                          "restore it or remove the key")
    for path in metadata:
        try:
            key, warning = _read_key(path, zone)
        except KeyFileError as error:
            errors.append(str(error))
            continue
        keys.append(key)
        if warning:
            warnings.append(warning)
    return KeyScan(tuple(keys), tuple(errors), tuple(warnings))


def load_keys(directory: Path, zone: Name) -> tuple[Key, ...]:
    """The keys of `zone` in `directory`; KeyFileError (one line, naming the file) on the first
    problem. `scan_keys` gives every problem and the warnings."""
    scan = scan_keys(directory, zone)
    if scan.errors:
        raise KeyFileError(scan.errors[0])
    return scan.keys


def _read_key(path: Path, zone: Name) -> tuple[Key, str | None]:
    def bad(message: str, where: Path = path) -> KeyFileError:
        return KeyFileError(f"{where}: {message}")

    try:
        document = json.loads(read_regular_file(path, MAX_KEY_FILE_BYTES))
    except (OSError, FileRefused) as error:
        raise bad(f"cannot read it ({getattr(error, 'strerror', None) or error})") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise bad(f"not valid JSON ({error}); restore it from a backup") from None
    if not isinstance(document, dict):
        raise bad("must be a JSON object with zone, tag, role and state")
    role, state = document.get("role"), document.get("state")
    if role not in FLAGS:
        raise bad(f"role must be one of {', '.join(ROLES)}, got {shown(role)}")
    if state not in STATES:
        raise bad(f"state must be one of {', '.join(STATES)}, got {shown(state)}")
    if document.get("zone") != to_text(zone):
        raise bad(f"zone is {shown(document.get('zone'))}, but the file is named for {to_text(zone)}")
    if document.get("algorithm", ALGORITHM) != ALGORITHM:
        raise bad(f"algorithm must be {ALGORITHM} (ECDSAP256SHA256), got {shown(document.get('algorithm'))}")
    try:
        created = _from_iso(document.get("created"))
        changed = _from_iso(document.get("changed", document.get("created")))
    except ValueError:
        raise bad("created and changed must be times like 2026-01-31T12:00:00Z") from None
    private_path = path.with_suffix(".pem")
    try:
        pem = read_regular_file(private_path, MAX_KEY_FILE_BYTES)
        mode = stat.S_IMODE(os.stat(private_path).st_mode)
    except FileNotFoundError:
        raise bad("private key file not found; restore it or remove the key", private_path) from None
    except (OSError, FileRefused) as error:
        raise bad(f"cannot read it ({getattr(error, 'strerror', None) or error})", private_path) from None
    try:
        private_key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as error:
        raise bad(f"not an unencrypted PEM private key ({str(error).splitlines()[0] if str(error) else 'unreadable'})",
                  private_path) from None
    if not isinstance(private_key, ec.EllipticCurvePrivateKey) or not isinstance(private_key.curve, ec.SECP256R1):
        raise bad("not an ECDSA P-256 key (DNSSEC algorithm 13)", private_path)
    public_key = public_key_bytes(private_key)
    tag = key_tag(dnskey_rdata(FLAGS[role], public_key))
    if document.get("tag") != tag or not path.stem.endswith(f"+{tag:05d}"):
        raise bad(f"tag {shown(document.get('tag'))} does not match the private key's ({tag}) for role {role}")
    warning = None
    if mode & 0o077:
        warning = (f"{private_path}: private key readable by others (mode {mode:04o}); "
                   f"chmod 600 {private_path}")
    key = Key(zone, tag, role, state, created, changed, path, private_path, private_key, public_key)
    return key, warning
