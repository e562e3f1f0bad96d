"""The web page ``berth serve`` shows at ``/``: static files from ``transport/web``.

The files are plain ES modules and CSS, shipped as package data, so nothing is
built at install time. They are public; everything they fetch needs the API
token, which the page asks for and keeps in the browser's localStorage.
"""

from __future__ import annotations

from pathlib import Path

from werkzeug.wrappers import Response

ROOT = Path(__file__).resolve().parent / "web"
PREFIX = "/web/"
#: Only the page's own files and its own server; no inline script can run.
POLICY = "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'"
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


def page(path: str) -> Response | None:
    """The response for ``path`` if it is one of the page's files, else None (not ours)."""
    if path == "/":
        name = "index.html"
    elif path.startswith(PREFIX):
        name = path[len(PREFIX) :]
    else:
        return None
    file = (ROOT / name).resolve()
    if file.parent != ROOT or file.suffix not in TYPES or not file.is_file():
        return Response("not found", status=404, mimetype="text/plain")
    response = Response(file.read_bytes(), mimetype=TYPES[file.suffix])
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = POLICY
    return response
