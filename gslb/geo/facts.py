"""What a GeoIP database says about one network: the few fields region matching reads."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GeoFacts:
    """The location facts of one GeoIP record; any field may be missing.

    Codes are as the database stores them: ``continent`` "EU", ``country`` "GB" (ISO 3166-1),
    ``subdivision`` "ENG" (the first-level ISO 3166-2 code, without the country prefix).
    Country-type databases carry no latitude/longitude.
    """

    continent: str | None = None
    country: str | None = None
    subdivision: str | None = None
    latitude: float | None = None
    longitude: float | None = None
