"""The console's files, served from the package: ``/ui/`` (the page), ``/ui/app.js`` and
``/ui/app.css``, and redirects of ``/ui`` and ``/`` to ``/ui/``.

The files are the committed build of ``web/`` (``npm run build`` there writes them
into ``assets/``), so installing the package needs no Node.js. Every answer carries
a Content-Security-Policy that allows nothing but this origin: the console makes no
request to anywhere else (fonts, CDNs), and the browser enforces it.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from fluxmq_core.http.server import HTTPError, Request, Response

__all__ = ["CSP", "StaticSite"]

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
}
_HEADERS = [
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-cache"),
]


class StaticSite:
    """The committed bundle, read once, answered from memory."""

    def __init__(self) -> None:
        root = resources.files("fluxmq_dashboard") / "assets"
        self.files: dict[str, bytes] = {}
        for entry in root.iterdir():
            name = entry.name
            if entry.is_file() and any(name.endswith(ext) for ext in _TYPES):
                self.files[name] = entry.read_bytes()
        if "index.html" not in self.files:
            raise RuntimeError(
                "fluxmq-dashboard: the built console (assets/index.html) is missing from the "
                "package; run `npm ci && npm run build` in plugins/fluxmq-dashboard/web"
            )

    def install(self, router: Any) -> None:
        if not any(r.method == "GET" and r.pattern == "/" for r in router.routes):
            router.add("GET", "/", self.to_ui, "Redirect to the web console", "dashboard")
        # The router ignores a trailing slash: "/ui" and "/ui/" reach the same route.
        router.add("GET", "/ui/", self.index, "The web console", "dashboard")
        # One route per file (no path parameter): the OpenAPI document lists each.
        for name in sorted(self.files):
            if name != "index.html":
                router.add(
                    "GET", f"/ui/{name}", self.asset, f"The web console's {name}", "dashboard"
                )

    async def to_ui(self, req: Request) -> Response:
        return Response(302, b"", "text/plain", [("Location", "/ui/"), *_HEADERS])

    async def index(self, req: Request) -> Response:
        if not req.path.endswith("/"):  # relative file names need the slash
            return await self.to_ui(req)
        return self._file("index.html")

    async def asset(self, req: Request) -> Response:
        return self._file(req.path.rsplit("/", 1)[-1])

    def _file(self, name: str) -> Response:
        body = self.files.get(name)
        if body is None:
            raise HTTPError(404, f"no file {name!r} in the web console")
        ext = name[name.rfind(".") :]
        return Response(200, body, _TYPES[ext], list(_HEADERS))
