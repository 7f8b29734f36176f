"""A tiny live page for headless Pis: an MJPEG stream with the current label and FPS (standard library only)."""

from __future__ import annotations

import html
import io
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>edgeflower live</title>
<style>body{{font-family:sans-serif;background:#111;color:#eee;margin:1em}}#label{{font-size:2em;font-weight:bold}}
img{{max-width:100%;border:1px solid #444}}</style></head>
<body><div><span id="label">{label}</span> <span id="score">{score}</span></div>
<div id="fps">{fps}</div><img id="stream" src="/stream.mjpg" alt="live stream">
<script>
async function tick(){{try{{const r=await fetch('/status.json',{{cache:'no-store'}});const s=await r.json();
document.getElementById('label').textContent=s.label||'waiting';
document.getElementById('score').textContent=s.score!=null?(s.score*100).toFixed(1)+'%':'';
document.getElementById('fps').textContent=(s.fps||0).toFixed(1)+' FPS, '+(s.latency_ms||0).toFixed(1)+' ms';}}catch(e){{}}}}
setInterval(tick,500);tick();
</script></body></html>
"""


class LiveState:
    """The newest annotated frame (as JPEG) and the current prediction, shared with the HTTP threads."""

    def __init__(self):
        self.cond = threading.Condition()
        self.jpeg: bytes | None = None
        self.status: dict = {"label": None, "score": None, "fps": 0.0, "latency_ms": 0.0, "frame": -1}
        self.seq = 0

    def update(self, frame: np.ndarray | None, status: dict) -> None:
        jpeg = None
        if frame is not None:
            img = Image.fromarray(frame)
            if img.width > 640:
                img = img.resize((640, round(img.height * 640 / img.width)))
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=75)
            jpeg = buf.getvalue()
        with self.cond:
            if jpeg is not None:
                self.jpeg = jpeg
            self.status = status
            self.seq += 1
            self.cond.notify_all()


def make_handler(state: LiveState):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):  # quiet: one line per request would flood the terminal
            log.debug(fmt, *args)

        def do_GET(self):  # noqa: N802 - http.server's naming
            if self.path in ("/", "/index.html"):
                s = state.status
                body = PAGE.format(label=html.escape(str(s.get("label") or "waiting")),
                                   score="" if s.get("score") is None else f"{s['score'] * 100:.1f}%",
                                   fps=f"{s.get('fps', 0):.1f} FPS").encode()
                self._send(200, "text/html; charset=utf-8", body)
            elif self.path.startswith("/status.json"):
                self._send(200, "application/json", json.dumps(state.status).encode())
            elif self.path.startswith("/stream.mjpg"):
                self._stream()
            else:
                self._send(404, "text/plain", b"not found")

        def _send(self, code, ctype, body):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _stream(self):
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            seen = -1
            try:
                while True:
                    with state.cond:
                        state.cond.wait_for(lambda: state.seq != seen and state.jpeg is not None, timeout=5)
                        seen, jpeg = state.seq, state.jpeg
                    if jpeg is None:
                        continue
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                     + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                return

    return Handler


def parse_hostport(spec: str) -> tuple[str, int]:
    """'8080' -> ('127.0.0.1', 8080); 'HOST:PORT' as given. Binding to all interfaces must be explicit."""
    host, _, port = spec.rpartition(":")
    try:
        p = int(port)
    except ValueError as exc:
        from edgeflower.errors import SourceError

        raise SourceError(f"--serve {spec!r}: expected HOST:PORT or PORT, e.g. 127.0.0.1:8080") from exc
    return host or "127.0.0.1", p


def start_server(spec: str, state: LiveState) -> ThreadingHTTPServer:
    host, port = parse_hostport(spec)
    try:
        server = ThreadingHTTPServer((host, port), make_handler(state))
    except OSError as exc:
        from edgeflower.errors import SourceError

        raise SourceError(f"cannot serve on {host}:{port}: {exc.strerror}; choose another port") from exc
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="edgeflower-http", daemon=True).start()
    return server
