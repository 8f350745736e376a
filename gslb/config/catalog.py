"""A directory of zone files -> one Catalog, or every problem found in all of them."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gslb.config.files import DEFAULT_MAX_BYTES
from gslb.config.problems import Problem, Problems
from gslb.config.zonefile import load_zone_file
from gslb.names import Name, to_text
from gslb.zone import Catalog, Zone


def zone_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.yaml") if p.is_file()) + sorted(
        p for p in directory.glob("*.yml") if p.is_file()
    )


@contextmanager
def collector_paused() -> Iterator[None]:
    """Loading builds hundreds of thousands of objects and no garbage cycles; the cyclic
    collector would rescan the growing heap again and again (more than half the load time of a
    100,000-record directory). Reference counting still frees everything as usual."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def load_catalog(directory: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[Catalog | None, list[Problem]]:
    """Every `*.yaml` zone in `directory`. The catalog is None when any file has a problem:
    serving some zones of a directory and silently not others is worse than refusing to start.
    Zones carry their validated region rules; locators are built from them by the build step
    (gslb.geo.locate_catalog), not here. A file over `max_bytes` (the max_zone_file_size
    setting) is a problem, not read."""
    with collector_paused():
        return _load_catalog(directory, max_bytes)


def _load_catalog(directory: Path, max_bytes: int) -> tuple[Catalog | None, list[Problem]]:
    problems: list[Problem] = []
    if not directory.is_dir():
        return None, [Problem(str(directory), "", "zones directory not found; pass --zones DIR")]
    files = zone_files(directory)
    if not files:
        return None, [Problem(str(directory), "", "no *.yaml zone files here; add one or pass --zones DIR")]
    zones: list[Zone] = []
    origins: dict[Name, str] = {}
    for path in files:
        zone, file_problems = load_zone_file(path, max_bytes)
        problems.extend(file_problems)
        if zone is None:
            continue
        if zone.origin in origins:
            bad = Problems(str(path))
            bad.add("origin", f"{to_text(zone.origin)} is already served by {origins[zone.origin]}; one file per zone")
            problems.extend(bad)
            continue
        origins[zone.origin] = str(path)
        zones.append(zone)
    if problems:
        return None, problems
    return Catalog(tuple(zones)), []
