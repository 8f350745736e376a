#!/usr/bin/env python3
"""Turn Natural Earth's country outlines (world-atlas's countries-110m.json TopoJSON) into the
status page's world map, gslb/api/static/world.svg.

    mkdir /tmp/atlas && npm install --prefix /tmp/atlas world-atlas@2
    python tools/make_world_svg.py /tmp/atlas/node_modules/world-atlas/countries-110m.json

Equirectangular projection in a 360 x 180 viewBox: x = longitude + 180, y = 90 - latitude, so
the page places a region's [lat, lon] with no map library. Coordinates are rounded to 0.1 degree
(the 1:110m data is coarser than that). Licences: gslb/api/static/README.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "gslb" / "api" / "static" / "world.svg"


def decode_arcs(topology: dict) -> list[list[tuple[float, float]]]:
    """TopoJSON arcs: quantized, delta-encoded positions -> absolute (lon, lat) points."""
    transform = topology.get("transform")
    arcs = []
    for arc in topology["arcs"]:
        x = y = 0
        points = []
        for position in arc:
            if transform is not None:
                x += position[0]
                y += position[1]
                (sx, sy), (tx, ty) = transform["scale"], transform["translate"]
                points.append((x * sx + tx, y * sy + ty))
            else:
                points.append((position[0], position[1]))
        arcs.append(points)
    return arcs


def ring(indexes: list[int], arcs: list[list[tuple[float, float]]]) -> list[tuple[float, float]]:
    """One ring from its arcs; a negative index ~i is arc i reversed. Each arc after the first
    starts where the previous one ended: that point is dropped."""
    points: list[tuple[float, float]] = []
    for index in indexes:
        arc = arcs[index] if index >= 0 else list(reversed(arcs[~index]))
        points.extend(arc if not points else arc[1:])
    return points


def unwrap(points: list[tuple[float, float]]) -> list[list[tuple[float, float]]]:
    """A ring as drawable rings. world-atlas stitches rings across the antimeridian (Fiji, Russia's
    Chukotka) and around the south pole (Antarctica): longitudes are made continuous (so a ring may
    reach past +-180), a ring around a pole is closed along that pole, and a ring reaching past
    +-180 is drawn again shifted by 360 degrees; the viewBox clips what lies outside."""
    if not points:
        return []
    unwrapped = [points[0]]
    for lon, lat in points[1:]:
        previous = unwrapped[-1][0]
        while lon - previous > 180:
            lon -= 360
        while lon - previous < -180:
            lon += 360
        unwrapped.append((lon, lat))
    drift = unwrapped[-1][0] - unwrapped[0][0]
    if abs(drift) > 180:  # around a pole: close the ring along it
        pole = -90.0 if sum(lat for _, lat in unwrapped) < 0 else 90.0
        unwrapped += [(unwrapped[-1][0], pole), (unwrapped[0][0], pole)]
    rings = [unwrapped]
    low, high = min(lon for lon, _ in unwrapped), max(lon for lon, _ in unwrapped)
    if high > 180:
        rings.append([(lon - 360, lat) for lon, lat in unwrapped])
    if low < -180:
        rings.append([(lon + 360, lat) for lon, lat in unwrapped])
    return rings


def path_data(rings: list[list[tuple[float, float]]]) -> str:
    parts = []
    for points in (drawn for r in rings for drawn in unwrap(r)):
        coordinates = []
        last = None
        for lon, lat in points:
            xy = (round(lon + 180, 1), round(90 - lat, 1))
            if xy != last:
                coordinates.append(f"{xy[0]:g} {xy[1]:g}")
                last = xy
        if len(coordinates) >= 3:
            parts.append("M" + "L".join(coordinates) + "Z")
    return "".join(parts)


def world_svg(topology: dict) -> str:
    arcs = decode_arcs(topology)
    paths = []
    for geometry in topology["objects"]["countries"]["geometries"]:
        kind = geometry.get("type")
        if kind == "Polygon":
            polygons = [geometry["arcs"]]
        elif kind == "MultiPolygon":
            polygons = geometry["arcs"]
        else:
            continue
        data = path_data([ring(r, arcs) for polygon in polygons for r in polygon])
        if data:
            name = geometry.get("properties", {}).get("name", "")
            title = f"<title>{name}</title>" if name else ""
            paths.append(f'<path d="{data}">{title}</path>')
    return ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 360 180" class="world">\n'
            "<!-- Natural Earth 1:110m countries (public domain) via world-atlas (ISC); tools/make_world_svg.py -->\n"
            '<g class="land">\n' + "\n".join(paths) + "\n</g>\n</svg>\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("topojson", type=Path, help="world-atlas's countries-110m.json")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    svg = world_svg(json.loads(args.topojson.read_text()))
    args.out.write_text(svg)
    print(f"{args.out}: {len(svg.encode())} bytes")


if __name__ == "__main__":
    main()
