"""The status page's files: HTML, script, style and the world map, shipped inside the package
(gslb/api/static/) and served from memory. Nothing is fetched from anywhere else, at build time
or when the page runs: the browser loads these and then polls /status."""

from __future__ import annotations

from importlib import resources

from aiohttp import web

TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
# The page never changes while a server runs, but a browser must not keep an old one across upgrades.
HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
           "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                      "script-src 'self'; connect-src 'self'; frame-ancestors 'none'"}


class Page:
    """The assets by file name, read once from the package."""

    def __init__(self) -> None:
        folder = resources.files("gslb.api") / "static"
        self._assets: dict[str, tuple[bytes, str]] = {}
        for item in folder.iterdir():
            suffix = "." + item.name.rpartition(".")[2]
            if item.is_file() and suffix in TYPES:
                self._assets[item.name] = (item.read_bytes(), TYPES[suffix])

    def names(self) -> list[str]:
        return sorted(name for name in self._assets if name != "index.html")

    def has(self, name: str) -> bool:
        return name in self._assets

    def response(self, name: str) -> web.Response:
        body, content_type = self._assets[name]
        return web.Response(body=body, content_type=content_type, charset="utf-8" if content_type != "image/svg+xml"
                            else None, headers=HEADERS)
