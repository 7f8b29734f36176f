"""A tiny live page for headless Pis: an MJPEG stream with the current label and FPS (standard library only)."""

from __future__ import annotations

import html
import io
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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
function colour(l){{if(l==='unknown')return '#555';if(!(l in colours))colours[l]=pal[Object.keys(colours).length%pal.length];
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
            seen, last = -1, float("-inf")
            try:
                while True:
                    with state.cond:
                        state.cond.wait_for(lambda: state.frame_seq != seen and state.frame is not None, timeout=5)
                    wait = last + state.min_interval - time.monotonic()  # the page's rate, not the camera's
                    if wait > 0:
                        time.sleep(wait)
                    got = state.jpeg()  # the newest frame after the wait
                    if got is None or got[0] == seen:
                        continue
                    seen, jpeg = got
                    last = time.monotonic()
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
