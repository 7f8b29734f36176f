"""Headless Chromium driven through the DevTools protocol: real mouse clicks and key presses on a page (the tests of
the review page). Needs `chromium` and websocket-client (edgeflower[dev])."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path


def chromium() -> str | None:
    for c in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(c)
        if p:
            return p
    return None


class Browser:
    """One headless Chromium with one page; ``send`` speaks the protocol, the helpers click and type."""

    def __init__(self, binary: str, profile: Path, width: int = 1000, height: int = 700):
        import websocket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.proc = subprocess.Popen([binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                      "--disable-background-networking", "--disable-component-update",
                                      "--disable-sync", f"--user-data-dir={profile}", f"--remote-debugging-port={port}",
                                      "--remote-allow-origins=*", f"--window-size={width},{height}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        target = None
        while time.monotonic() < deadline and target is None:
            try:
                pages = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2).read())
                target = next((p for p in pages if p.get("type") == "page"), None)
            except OSError:
                time.sleep(0.2)
        if target is None:
            self.close()
            raise RuntimeError("Chromium did not open its DevTools port")
        self.ws = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)
        self._id = 0
        self.console: list[str] = []
        self.send("Runtime.enable")

    def send(self, method: str, **params) -> dict:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("method") == "Runtime.exceptionThrown":
                self.console.append(json.dumps(msg["params"]["exceptionDetails"])[:500])
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def goto(self, url: str) -> None:
        self.send("Page.navigate", url=url)
        self.send("Page.bringToFront")
        self.send("Emulation.setFocusEmulationEnabled", enabled=True)  # key events reach a page without a window

    def js(self, expression: str):
        r = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait(self, expression: str, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                v = self.js(expression)
                if v:
                    return v
            except RuntimeError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"waited {timeout:g} s for {expression}; page errors: {self.console}")

    def click(self, selector: str) -> None:
        """A real mouse click (pressed and released) at the centre of the element."""
        # centred: a sticky header must not cover it
        box = self.js(f"(() => {{const e=document.querySelector({json.dumps(selector)});"
                      "e.scrollIntoView({block: 'center'}); const r=e.getBoundingClientRect();"
                      "return [r.x + r.width / 2, r.y + r.height / 2];})()")
        self.send("Input.dispatchMouseEvent", type="mouseMoved", x=box[0], y=box[1])  # the pointer over it first
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def key(self, key: str, code: str | None = None, modifiers: int = 0) -> None:
        """A real key press: keyDown (with its text for a character) and keyUp."""
        text = key if len(key) == 1 and not modifiers else ""
        for kind in ("keyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent", type=kind if (kind == "keyUp" or not text) else "keyDown", key=key,
                      code=code or "", text=text if kind == "keyDown" else "", modifiers=modifiers)

    def screenshot(self, path: Path) -> None:
        import base64

        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"]))

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001 - closing what may not have opened
            pass
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
