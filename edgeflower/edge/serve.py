"""A tiny live page for headless Pis: an MJPEG stream with the current label and FPS (standard library only)."""

from __future__ import annotations

import html
import io
import json
import logging
import queue
import selectors
import socket
import threading
import time

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>edgeflower live</title>
<style>
*{{box-sizing:border-box}}body{{font-family:sans-serif;background:#111;color:#eee;margin:0;padding:12px;max-width:760px}}
#answer{{font-size:2em;font-weight:bold}}#nearest{{color:#aaa;min-height:1.2em}}
.row{{display:flex;align-items:center;gap:8px;margin:4px 0}}.name{{width:7.5em;overflow:hidden;text-overflow:ellipsis;
white-space:nowrap}}.bar{{flex:1;height:14px;background:#333;position:relative;border-radius:3px;overflow:hidden}}
.fill{{height:100%;background:#4a9;width:0}}.mark{{position:absolute;top:0;bottom:0;width:2px;background:#fc3}}
.val{{width:4.2em;text-align:right;font-variant-numeric:tabular-nums}}
#timeline{{display:flex;height:16px;width:100%;background:#222;margin:6px 0;border-radius:3px;overflow:hidden}}
#timeline span{{flex:1;min-width:0}}h2{{font-size:1em;color:#aaa;margin:14px 0 4px}}
img{{max-width:100%;height:auto;border:1px solid #444;display:block;margin-top:10px}}
</style></head>
<body><div id="answer"><span id="label">{label}</span></div>
<div id="nearest"></div>
<h2>similarity to the training photos (unknown below the line)</h2>
<div class="row" id="simrow"><div class="bar" id="simbar"><div class="fill" id="simfill"></div>
<div class="mark" id="simmark"></div></div><span class="val" id="simval">-</span></div>
<h2>top classes</h2><div id="top3"></div>
<h2>the last minute</h2><div id="timeline"></div>
<div id="fps">{fps}</div>
<img id="stream" src="/stream.mjpg" alt="live stream">
<script>
const hist=[];const colours={{}};const pal=['#e55','#5b5','#59e','#eb4','#c6e','#4cc','#e94','#9a9'];
function colour(l){{if(l==='unknown')return '#555';
if(!(l in colours))colours[l]=pal[Object.keys(colours).length%pal.length];
return colours[l];}}
function bar(name,v,extra){{const r=document.createElement('div');r.className='row';
r.innerHTML='<span class="name"></span><div class="bar"><div class="fill"></div></div><span class="val"></span>';
r.children[0].textContent=name;r.children[1].firstChild.style.width=Math.max(0,Math.min(1,v))*100+'%';
r.children[1].firstChild.style.background=colour(name);r.children[2].textContent=(v*100).toFixed(1)+'%';return r;}}
function layout(){{document.body.dataset.overflow=String(document.documentElement.scrollWidth>window.innerWidth+1);}}
async function tick(){{try{{const r=await fetch('/status.json',{{cache:'no-store'}});const s=await r.json();
const label=s.label||'waiting';document.getElementById('label').textContent=label;
const top=(s.top_k||[]);const nearest=document.getElementById('nearest');
nearest.textContent=label==='unknown'&&top.length?'nearest class: '+top[0].label+' '+(top[0].score*100).toFixed(1)+'%'
 :(s.score!=null?(s.score*100).toFixed(1)+'%':'');
const t3=document.getElementById('top3');t3.replaceChildren(...top.slice(0,3).map(k=>bar(k.label,k.score)));
const sim=s.similarity,thr=s.min_similarity,row=document.getElementById('simrow');
if(sim==null){{document.getElementById('simval').textContent='n/a';}}else{{
 const lo=Math.min(thr??0,sim,0),hi=1,pos=v=>Math.max(0,Math.min(1,(v-lo)/(hi-lo)))*100+'%';
 document.getElementById('simfill').style.width=pos(sim);
 document.getElementById('simfill').style.background=(thr!=null&&sim<thr)?'#c44':'#4a9';
 document.getElementById('simmark').style.left=thr!=null?pos(thr):'-9px';
 document.getElementById('simval').textContent=sim.toFixed(3)+(thr!=null?' / '+thr.toFixed(3):'');}}
const now=Date.now();hist.push([now,label]);while(hist.length&&now-hist[0][0]>60000)hist.shift();
document.getElementById('timeline').replaceChildren(...hist.map(h=>{{const e=document.createElement('span');
e.style.background=colour(h[1]);e.title=h[1];return e;}}));
document.getElementById('fps').textContent=(s.fps||0).toFixed(1)+' FPS, '+(s.latency_ms||0).toFixed(1)+' ms';
layout();}}catch(e){{}}}}
setInterval(tick,500);tick();
</script></body></html>
"""


class LiveState:
    """The newest frame and the current prediction, shared with the HTTP threads.

    The inference loop only stores a reference to each frame. The stream's HTTP threads JPEG-encode the newest one
    when someone is watching, at most ``max_fps`` times a second, and once per frame however many watch: a Pi that
    nobody is looking at pays nothing for the page, and the camera loop never waits for an encoder."""

    def __init__(self, max_fps: float = 10.0):
        self.cond = threading.Condition()
        self.frame: np.ndarray | None = None
        self.frame_seq = -1
        self.status: dict = {"label": None, "score": None, "fps": 0.0, "latency_ms": 0.0, "frame": -1}
        self.seq = 0
        self.encoded = 0  # frames encoded so far
        self.min_interval = 1.0 / max_fps if max_fps > 0 else 0.0
        self._jpeg: tuple[int, bytes] | None = None
        self._encode_lock = threading.Lock()

    def update(self, frame: np.ndarray | None, status: dict) -> None:
        with self.cond:
            self.seq += 1
            if frame is not None:
                self.frame, self.frame_seq = frame, self.seq
            self.status = status
            self.cond.notify_all()

    def jpeg(self) -> tuple[int, bytes] | None:
        """(frame sequence number, JPEG) of the newest frame, encoded on the first call for that frame."""
        with self.cond:
            frame, seq = self.frame, self.frame_seq
        if frame is None:
            return None
        with self._encode_lock:
            if self._jpeg is None or self._jpeg[0] != seq:
                img = Image.fromarray(frame)
                if img.width > 640:
                    img = img.resize((640, round(img.height * 640 / img.width)))
                buf = io.BytesIO()
                img.save(buf, format="JPEG", quality=75)
                self._jpeg = (seq, buf.getvalue())
                self.encoded += 1
            return self._jpeg


class LiveServer:
    """The live page's HTTP server, built so that no client can starve the device.

    One thread accepts connections and reads request headers for all of them at once (a selector, no thread per
    connection). A connection whose headers are not complete within ``header_timeout`` seconds (an idle socket, a
    client sending a byte a second) is closed; at most ``max_pending`` connections wait for their headers, and
    past that the oldest is closed, so a flood of idle sockets holds a bounded number of file descriptors and a new
    request is still read at once. Complete requests go to ``workers`` threads through a bounded queue (a full
    queue answers 503); each MJPEG stream has its own thread, at most ``max_streams`` of them (more viewers get
    503), and a viewer that does not read for ``send_timeout`` seconds is dropped. Every response closes its
    connection. Nothing here runs on the camera loop's thread or makes it wait.
    """

    def __init__(self, host: str, port: int, state: LiveState, max_pending: int = 64, header_timeout: float = 5.0,
                 workers: int = 2, max_streams: int = 4, send_timeout: float = 10.0):
        self.state = state
        self.max_pending, self.header_timeout, self.send_timeout = max_pending, header_timeout, send_timeout
        self.sock = socket.create_server((host, port), backlog=128)
        self.sock.setblocking(False)
        self.server_address = self.sock.getsockname()
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.sock, selectors.EVENT_READ, None)
        self._pending: dict[socket.socket, list] = {}  # conn -> [header bytes, deadline], oldest first
        self._jobs: queue.Queue = queue.Queue(maxsize=8 * workers)
        self._streams = threading.BoundedSemaphore(max_streams)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept_loop, name="edgeflower-http", daemon=True)]
        self._threads += [threading.Thread(target=self._work_loop, name=f"edgeflower-http-{i}", daemon=True)
                          for i in range(workers)]
        for t in self._threads:
            t.start()

    # -- accepting and reading headers (one thread)
    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._sel.select(timeout=0.25):
                if key.data is None:
                    self._accept()
                else:
                    self._read(key.fileobj)
            now = time.monotonic()
            for conn, (_, deadline) in list(self._pending.items()):  # oldest first: deadlines in order
                if deadline > now:
                    break
                self._drop(conn)
        for conn in list(self._pending):
            self._drop(conn)
        self._sel.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of file descriptors: make room rather than spin
                log.warning("live page: cannot accept a connection (%s)", exc.strerror)
                if self._pending:
                    self._drop(next(iter(self._pending)))
                else:
                    time.sleep(0.05)
                return
            if len(self._pending) >= self.max_pending:
                self._drop(next(iter(self._pending)))  # the oldest waiting connection
            conn.setblocking(False)
            self._pending[conn] = [b"", time.monotonic() + self.header_timeout]
            self._sel.register(conn, selectors.EVENT_READ, "conn")

    def _read(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return
        entry = self._pending[conn]
        entry[0] += data
        head = entry[0]
        end = head.find(b"\r\n\r\n")
        if end < 0:
            if len(head) > MAX_HEADER:
                self._drop(conn, b"431 Request Header Fields Too Large")
            return
        self._sel.unregister(conn)
        del self._pending[conn]
        try:
            self._jobs.put_nowait((conn, head[:end]))
        except queue.Full:
            _reply_and_close(conn, b"503 Service Unavailable", b"busy\n")

    def _drop(self, conn: socket.socket, status: bytes | None = None) -> None:
        self._pending.pop(conn, None)
        try:
            self._sel.unregister(conn)
        except (KeyError, ValueError):
            pass
        if status:
            _reply_and_close(conn, status, b"")
        else:
            conn.close()

    # -- answering (bounded worker threads; one thread per stream, bounded)
    def _work_loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            conn, head = job
            try:
                conn.setblocking(True)
                conn.settimeout(self.send_timeout)
                self._answer(conn, head)
            except OSError:
                conn.close()
            except Exception:  # noqa: BLE001 - a bad request must never take a worker down
                log.exception("live page: error answering a request")
                conn.close()

    def _answer(self, conn: socket.socket, head: bytes) -> None:
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            _reply_and_close(conn, b"400 Bad Request", b"bad request\n")
            return
        method, target = parts[0], parts[1]
        if method not in ("GET", "HEAD"):
            _reply_and_close(conn, b"405 Method Not Allowed", b"GET or HEAD\n", extra=b"Allow: GET, HEAD\r\n")
            return
        path = target.split("?", 1)[0]
        head_only = method == "HEAD"
        s = self.state.status
        if path in ("/", "/index.html"):
            body = PAGE.format(label=html.escape(str(s.get("label") or "waiting")),
                               fps=f"{s.get('fps', 0):.1f} FPS").encode()
            _reply_and_close(conn, b"200 OK", body, b"text/html; charset=utf-8", head_only=head_only)
        elif path == "/status.json":
            _reply_and_close(conn, b"200 OK", json.dumps(s).encode(), b"application/json", head_only=head_only)
        elif path == "/stream.mjpg":
            if head_only:
                _reply_and_close(conn, b"200 OK", b"", b"multipart/x-mixed-replace; boundary=frame", head_only=True)
            elif not self._streams.acquire(blocking=False):
                _reply_and_close(conn, b"503 Service Unavailable", b"too many viewers of the stream\n",
                                 extra=b"Retry-After: 5\r\n")
            else:
                threading.Thread(target=self._stream, args=(conn,), name="edgeflower-mjpeg", daemon=True).start()
        else:
            _reply_and_close(conn, b"404 Not Found", b"not found\n")

    def _stream(self, conn: socket.socket) -> None:
        state = self.state
        try:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\n"
                         b"Cache-Control: no-store\r\nConnection: close\r\n\r\n")
            seen, last = -1, float("-inf")
            while not self._stop.is_set():
                with state.cond:
                    state.cond.wait_for(lambda: state.frame_seq != seen and state.frame is not None, timeout=1)
                wait = last + state.min_interval - time.monotonic()  # the page's rate, not the camera's
                if wait > 0:
                    time.sleep(wait)
                got = state.jpeg()  # the newest frame after the wait
                if got is None or got[0] == seen:
                    continue
                seen, jpeg = got
                last = time.monotonic()
                # a viewer that stops reading fills the socket buffer; sendall then times out and it is dropped
                conn.sendall(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                             + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
        except OSError:  # gone, or too slow (socket.timeout is an OSError)
            pass
        finally:
            conn.close()
            self._streams.release()

    def shutdown(self) -> None:
        """Stop accepting, close the waiting connections and the workers (streams end within a second)."""
        self._stop.set()
        self._threads[0].join(timeout=2)
        for _ in self._threads[1:]:
            self._jobs.put(None)
        self.sock.close()


MAX_HEADER = 16384  # bytes of request line and headers; the page's requests need a few hundred


def _reply_and_close(conn: socket.socket, status: bytes, body: bytes, ctype: bytes = b"text/plain",
                     head_only: bool = False, extra: bytes = b"") -> None:
    try:
        conn.setblocking(True)
        conn.settimeout(2.0)
        conn.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Type: " + ctype + b"\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\nCache-Control: no-store\r\nConnection: close\r\n"
                     + extra + b"\r\n" + (b"" if head_only else body))
    except OSError:
        pass
    finally:
        conn.close()


def parse_hostport(spec: str) -> tuple[str, int]:
    """'8080' -> ('127.0.0.1', 8080); 'HOST:PORT' as given. Binding to all interfaces must be explicit."""
    host, _, port = spec.rpartition(":")
    try:
        p = int(port)
    except ValueError as exc:
        from edgeflower.errors import SourceError

        raise SourceError(f"--serve {spec!r}: expected HOST:PORT or PORT, e.g. 127.0.0.1:8080") from exc
    return host or "127.0.0.1", p


def start_server(spec: str, state: LiveState, **limits) -> LiveServer:
    """Serve the live page on ``spec`` (HOST:PORT or PORT) in background threads; ``limits`` as LiveServer's."""
    host, port = parse_hostport(spec)
    try:
        return LiveServer(host, port, state, **limits)
    except OSError as exc:
        from edgeflower.errors import SourceError

        raise SourceError(f"cannot serve on {host}:{port}: {exc.strerror}; choose another port") from exc
