"""`edgeflower data review SAVED --serve`: sort the saved frames in the browser, by click or by key.

A standard-library HTTP server on loopback (127.0.0.1:8765 by default) in front of ``sorting.Sorter``; the folder
is the state, so a second tab or a reload sees the same frames. It refuses, each with its own status:
- a Host header that is not the address it serves on, or a loopback name (403), unless ``--allow-remote``: a web page
  elsewhere cannot reach it through DNS rebinding, and on another address it answers only when asked to;
- a POST from another origin (403), or not ``application/json`` (415): no form on another site can sort frames;
- a body over 4 KiB (413); a frame or class that is not one (400 or 404): nothing outside SAVED is read or written.
"""

from __future__ import annotations

import json
import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from edgeflower.data.sorting import Sorter, SortError
from edgeflower.errors import DataError

log = logging.getLogger(__name__)

MAX_BODY = 4096
LOOPBACK = ("127.0.0.1", "localhost", "[::1]", "::1")
PAGE = (Path(__file__).with_name("review_page.html")).read_text


class ReviewServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int, sorter: Sorter, allow_remote: bool = False):
        self.sorter, self.allow_remote = sorter, allow_remote
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}/"

    def host_ok(self, header: str | None) -> bool:
        """The Host header names this server: a loopback name or the bound address with its port, or anything
        with --allow-remote."""
        if self.allow_remote:
            return True
        if not header:
            return False
        host, _, port = header.rpartition(":") if not header.endswith("]") else (header, "", "")
        bound = self.server_address[0]
        return port == str(self.server_address[1]) and (host in LOOPBACK or host == bound)


class _Handler(BaseHTTPRequestHandler):
    server: ReviewServer
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # the terminal is the user's, not an access log
        log.debug("review: " + fmt, *args)

    # ---- answers
    def _send(self, status: int, body: bytes, ctype: str = "application/json", cache: str = "no-store") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", "default-src 'self'; img-src 'self'; style-src 'unsafe-inline' "
                                                    "'self'; script-src 'unsafe-inline' 'self'")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: dict) -> None:
        self._send(status, json.dumps(obj).encode())

    def _refuse(self, status: int, why: str) -> None:
        self.close_connection = True
        self._json(status, {"error": why})

    def _checked(self) -> bool:
        if not self.server.host_ok(self.headers.get("Host")):
            self._refuse(403, "this page answers on its own address only (data review --allow-remote to share it)")
            return False
        return True

    # ---- requests
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if not self._checked():
            return
        path = urlsplit(self.path).path
        try:
            if path == "/":
                self._send(200, PAGE().encode(), "text/html; charset=utf-8")
            elif path == "/state.json":
                self._json(200, self.server.sorter.state())
            elif path.startswith("/frame/"):
                jpg = self.server.sorter.image(unquote(path[len("/frame/"):]))
                self._send(200, jpg.read_bytes(), "image/jpeg", cache="private, max-age=3600")  # a name, one photo
            else:
                self._refuse(404, "not found")
        except SortError as exc:
            self._refuse(404, str(exc))

    def do_POST(self) -> None:  # noqa: N802
        if not self._checked():
            return
        origin = self.headers.get("Origin")
        if origin and not self.server.host_ok(urlsplit(origin).netloc):
            return self._refuse(403, "a request from another site")
        if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
            return self._refuse(415, "send application/json")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return self._refuse(400, "a bad Content-Length")
        if length > MAX_BODY or length < 0:
            return self._refuse(413, f"a body over {MAX_BODY} bytes")
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(body, dict):
                raise ValueError
        except ValueError:
            return self._refuse(400, "the body is not a JSON object")
        path = urlsplit(self.path).path
        try:
            if path == "/file":
                frame, target = body.get("frame"), body.get("to")
                if not isinstance(frame, str) or not isinstance(target, str):
                    return self._refuse(400, "expected {\"frame\": NAME, \"to\": CLASS}")
                self._json(200, self.server.sorter.file(frame, target))
            elif path == "/undo":
                self._json(200, self.server.sorter.undo())
            else:
                self._refuse(404, "not found")
        except SortError as exc:
            self._refuse(400, str(exc))

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()


def serve(saved: str, classes: list[str], host: str = "127.0.0.1", port: int = 8765, allow_remote: bool = False,
          ready=None) -> None:
    """Serve the sorting page until Ctrl-C (or SIGTERM); ``ready(url)`` is called once it listens."""
    sorter = Sorter(saved, classes)
    if not classes:
        raise DataError(f"no classes to sort {saved} into: pass --into DATASET (its class folders)")
    try:
        server = ReviewServer(host, port, sorter, allow_remote=allow_remote)
    except OSError as exc:
        raise DataError(f"cannot listen on {host}:{port} ({exc.strerror}): pass another --serve HOST:PORT") from None
    if ready:
        ready(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
