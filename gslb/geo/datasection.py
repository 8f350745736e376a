"""Read the few GeoFacts fields (or the ASN) out of a MaxMind DB data record, skipping the rest.

Why not ``maxminddb.decoder.Decoder``: it builds the whole record (names in eight languages,
time zone, postal code, registered country ...), about 70 us per City record in pure Python. We
need four fields. This reader walks the record's top-level map, compares key bytes without
decoding them, skips unwanted values by their encoded sizes, and memoises every sub-map reached
through a pointer: real databases store a country or continent map once and point to it from every
record, so after warm-up a record costs a handful of byte reads.

Format (MaxMind DB spec 2.0, "Data Section"): each value starts with a control byte whose top 3
bits are the type (0 = extended: type is 7 + next byte) and low 5 bits the size (29, 30, 31 mean
the size continues in 1, 2, 3 more bytes). A pointer (type 1) uses its size bits as 2 bits of
pointer length and 3 bits of value; its target is an offset from the start of the data section.
"""

from __future__ import annotations

import struct
from typing import Any

from gslb.geo.facts import GeoFacts

_POINTER, _STRING, _DOUBLE, _UINT16, _UINT32, _MAP, _UINT64, _UINT128, _ARRAY, _BOOLEAN, _FLOAT = (
    1, 2, 3, 5, 6, 7, 9, 10, 11, 14, 15)
_UINTS = frozenset((_UINT16, _UINT32, _UINT64, _UINT128))
_POINTER_BIAS = (0, 0, 2048, 526336, 0)  # added to 1-, 2-, 3-byte pointers (spec); 4-byte: none
_DOUBLE_STRUCT = struct.Struct(">d")
_FLOAT_STRUCT = struct.Struct(">f")

# The record keys we read and, inside them, the keys of the values we want.
_CONTINENT, _COUNTRY, _SUBDIVISIONS, _LOCATION = b"continent", b"country", b"subdivisions", b"location"
_RECORD_KEYS = frozenset((_CONTINENT, _COUNTRY, _SUBDIVISIONS, _LOCATION))
_CODE, _ISO_CODE = frozenset((b"code",)), frozenset((b"iso_code",))
_LAT_LON = frozenset((b"latitude", b"longitude"))
_ASN = b"autonomous_system_number"
_ASN_KEYS = frozenset((_ASN,))


class DataFormatError(Exception):
    """The data section does not follow the MaxMind DB format at some offset."""


class FactsReader:
    """Decodes GeoFacts from records of one data section (``buffer[data_start:]``)."""

    __slots__ = ("_buffer", "_data_start", "_end", "_key_at", "_memo")

    def __init__(self, buffer: Any, data_start: int, data_end: int) -> None:
        self._buffer = buffer  # bytes: indexing gives an int, slicing gives bytes
        self._data_start = data_start
        self._end = data_end
        self._key_at: dict[int, bytes] = {}  # pointed-to key strings, by absolute offset
        # (absolute offset, field) -> extracted value, for values reached through a pointer.
        self._memo: dict[tuple[int, bytes], Any] = {}

    def facts(self, offset: int) -> GeoFacts:
        """The facts of the record at ``offset`` from the start of the data section."""
        try:
            fields = self._map_fields(self._data_start + offset, _RECORD_KEYS)
            subdivision = None
            if _SUBDIVISIONS in fields:
                subdivision = self._cached(fields[_SUBDIVISIONS], _SUBDIVISIONS)
            latitude = longitude = None
            if _LOCATION in fields:
                latitude, longitude = self._cached(fields[_LOCATION], _LOCATION)
            return GeoFacts(
                continent=self._cached(fields[_CONTINENT], _CONTINENT) if _CONTINENT in fields else None,
                country=self._cached(fields[_COUNTRY], _COUNTRY) if _COUNTRY in fields else None,
                subdivision=subdivision,
                latitude=latitude,
                longitude=longitude,
            )
        except (IndexError, struct.error, UnicodeDecodeError, RecursionError) as error:
            raise DataFormatError(f"bad data record at data offset {offset}: {error}") from None

    def asn(self, offset: int) -> int | None:
        """The ``autonomous_system_number`` of the record at ``offset`` (GeoLite2-ASN, DB-IP ASN
        Lite, GeoIP2-ISP records); None when the record has none."""
        try:
            fields = self._map_fields(self._data_start + offset, _ASN_KEYS)
            position = fields.get(_ASN)
            if position is None:
                return None
            kind, size, start = self._resolve(position)
            if kind not in _UINTS or size > 16:
                return None
            return int.from_bytes(self._buffer[start:start + size], "big")
        except (IndexError, struct.error, RecursionError) as error:
            raise DataFormatError(f"bad data record at data offset {offset}: {error}") from None

    # -- fields ------------------------------------------------------------------------------
    def _cached(self, position: int, field: bytes) -> Any:
        """Extract ``field`` from the value at ``position``, memoised when it is a shared pointer."""
        buffer = self._buffer
        if buffer[position] >> 5 == _POINTER:
            target = self._pointer_target(position)[0]
            key = (target, field)
            memo = self._memo
            if key in memo:
                return memo[key]
            value = memo[key] = self._extract(target, field)
            return value
        return self._extract(position, field)

    def _extract(self, position: int, field: bytes) -> Any:
        if field == _CONTINENT:
            return self._string(self._map_fields(position, _CODE).get(b"code"))
        if field == _COUNTRY:
            return self._string(self._map_fields(position, _ISO_CODE).get(b"iso_code"))
        if field == _SUBDIVISIONS:
            # The first subdivision is the largest (a US state, an English country): the level
            # octoDNS codes such as NA-US-CA name. Later ones are counties and the like.
            kind, size, position = self._resolve(position)
            if kind != _ARRAY or size == 0:
                return None
            return self._string(self._map_fields(position, _ISO_CODE).get(b"iso_code"))
        fields = self._map_fields(position, _LAT_LON)  # _LOCATION
        latitude = self._number(fields.get(b"latitude"))
        longitude = self._number(fields.get(b"longitude"))
        if latitude is None or longitude is None:
            return None, None
        return latitude, longitude

    def _map_fields(self, position: int, wanted: frozenset[bytes]) -> dict[bytes, int]:
        """Positions of the values of the ``wanted`` keys of the map at ``position``."""
        kind, size, position = self._resolve(position)
        found: dict[bytes, int] = {}
        if kind != _MAP:
            return found
        for _ in range(size):
            key, position = self._key(position)
            if key in wanted:
                found[key] = position
                if len(found) == len(wanted):
                    break
            position = self._skip(position)
        return found

    def _key(self, position: int) -> tuple[bytes, int]:
        """(key bytes, position after the key) for the map key at ``position``."""
        buffer = self._buffer
        if buffer[position] >> 5 == _POINTER:
            target, after = self._pointer_target(position)
            key = self._key_at.get(target)
            if key is None:
                kind, size, start = self._control(target)
                key = self._key_at[target] = buffer[start:start + size] if kind == _STRING else b""
            return key, after
        kind, size, start = self._control(position)
        return (buffer[start:start + size] if kind == _STRING else b""), start + size

    def _string(self, position: int | None) -> str | None:
        if position is None:
            return None
        kind, size, start = self._resolve(position)
        if kind != _STRING:
            return None
        return str(self._buffer[start:start + size].decode("utf-8"))

    def _number(self, position: int | None) -> float | None:
        if position is None:
            return None
        kind, size, start = self._resolve(position)
        if kind == _DOUBLE and size == 8:
            return float(_DOUBLE_STRUCT.unpack(self._buffer[start:start + 8])[0])
        if kind == _FLOAT and size == 4:
            return float(_FLOAT_STRUCT.unpack(self._buffer[start:start + 4])[0])
        return None

    # -- encoding ----------------------------------------------------------------------------
    def _control(self, position: int) -> tuple[int, int, int]:
        """(type, size, payload position) of the value at ``position``; pointers not followed."""
        buffer = self._buffer
        if position >= self._end:
            raise IndexError(f"offset {position - self._data_start} is past the data section")
        control = buffer[position]
        position += 1
        kind = control >> 5
        if kind == 0:  # extended type
            kind = 7 + buffer[position]
            position += 1
        size = control & 0x1F
        if size >= 29:
            extra = size - 28  # 1, 2 or 3 more size bytes
            size = (29, 285, 65821)[extra - 1] + int.from_bytes(buffer[position:position + extra], "big")
            position += extra
        return kind, size, position

    def _pointer_target(self, position: int) -> tuple[int, int]:
        """(absolute target, position after the pointer) for the pointer at ``position``."""
        buffer = self._buffer
        control = buffer[position]
        length = ((control >> 3) & 0x3) + 1
        value = int.from_bytes(buffer[position + 1:position + 1 + length], "big")
        if length < 4:
            value |= (control & 0x7) << (8 * length)
        target = self._data_start + value + _POINTER_BIAS[length]
        return target, position + 1 + length

    def _resolve(self, position: int) -> tuple[int, int, int]:
        """Like _control, but through one pointer (the spec forbids pointers to pointers)."""
        if self._buffer[position] >> 5 == _POINTER:
            position = self._pointer_target(position)[0]
        kind, size, start = self._control(position)
        if kind == _POINTER:
            raise IndexError("pointer to a pointer")
        return kind, size, start

    def _skip(self, position: int) -> int:
        """The position just after the value at ``position``."""
        if self._buffer[position] >> 5 == _POINTER:
            return self._pointer_target(position)[1]
        kind, size, position = self._control(position)
        if kind == _MAP:
            for _ in range(2 * size):
                position = self._skip(position)
        elif kind == _ARRAY:
            for _ in range(size):
                position = self._skip(position)
        elif kind != _BOOLEAN:  # a boolean's value is its size; it has no payload
            position += size
        return position
