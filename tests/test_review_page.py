"""`edgeflower data review SAVED --serve`: sorting the saved frames in a browser (headless Chromium, real clicks and
key presses), a kill mid-sort, and the requests the page refuses."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cdp import Browser, chromium

from edgeflower.data.review_server import ReviewServer
from edgeflower.data.sorting import Sorter, frame_classes

from conftest import make_image

CLASSES = ["blue", "green", "red"]


def saved_frames(folder: Path, n: int = 6) -> list[str]:
    """Frames as `classify --save` writes them: a JPEG and its JSON sidecar."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        stem = f"2026-12-06T10-00-{i:02d}_{i:06d}"
        make_image((200, 40, 40) if i % 2 else (40, 40, 200), size=(64, 48), seed=i).save(folder / f"{stem}.jpg")
        (folder / f"{stem}.json").write_text(json.dumps({
            "label": "unknown" if i % 3 == 0 else CLASSES[i % 3], "score": 0.5, "similarity": 0.3 + i / 100,
            "top_k": [{"label": c, "score": s} for c, s in zip(CLASSES, (0.5, 0.3, 0.2))],
            "time": f"2026-12-06T10:00:{i:02d}", "reasons": ["unknown"]}))
        names.append(f"{stem}.jpg")
    return names


def where(folder: Path) -> dict[str, str]:
    """frame -> the place its JPEG is in ('' for still to sort); fails on a JPEG in two places or a stray sidecar."""
    out = {}
    for jpg in folder.rglob("*.jpg"):
        place = jpg.parent.relative_to(folder).as_posix()
        assert jpg.name not in out, f"{jpg.name} twice"
        assert jpg.with_suffix(".json").is_file(), f"{jpg} without its sidecar"
        out[jpg.name] = "" if place == "." else place
    return out


@pytest.fixture
def server(tmp_path):
    saved = tmp_path / "saved"
    names = saved_frames(saved)
    srv = ReviewServer("127.0.0.1", 0, Sorter(saved, CLASSES))
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv, saved, names
    srv.shutdown()
    srv.server_close()


def request(srv, path, body=None, headers=None, method=None):
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    h = {"Content-Type": "application/json"} if data is not None else {}
    h.update(headers or {})
    req = urllib.request.Request(srv.url.rstrip("/") + path, data=data, headers=h, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_the_page_sorts_by_click_and_by_key(server, tmp_path):
    binary = chromium()
    if binary is None:
        pytest.skip("no Chromium installed (apt install chromium) for the browser check")
    srv, saved, names = server
    b = Browser(binary, tmp_path / "chrome")
    try:
        b.goto(srv.url)
        b.wait("document.body.dataset.toSort === '6'")
        # by click: the frame's "red" button
        b.click(f'figure[data-frame="{names[1]}"] button[data-to="red"]')
        b.wait("document.body.dataset.toSort === '5'")
        assert where(saved)[names[1]] == "red"
        # by key: the cursor is on the first frame on screen; 2 files it under the second class
        first = b.js("document.querySelector('figure.cursor').dataset.frame")
        b.key("2", "Digit2")
        b.wait("document.body.dataset.toSort === '4'")
        assert where(saved)[first] == "green"
        # move right, then b (background); then x (discard) the frame under the cursor
        b.key("ArrowRight", "ArrowRight")
        second = b.js("document.querySelector('figure.cursor').dataset.frame")
        b.key("b", "KeyB")
        b.wait("document.body.dataset.toSort === '3'")
        third = b.js("document.querySelector('figure.cursor').dataset.frame")
        b.key("x", "KeyX")
        b.wait("document.body.dataset.toSort === '2'")
        w = where(saved)
        assert w[second] == "background" and w[third] == ".discarded"
        # u undoes the last move: the discarded frame is back to sort
        b.key("u", "KeyU")
        b.wait("document.body.dataset.toSort === '3'")
        assert where(saved)[third] == ""
        # a second tab (here: another client) files a frame; the page shows it within its polling interval
        status, _ = request(srv, "/file", {"frame": third, "to": "blue"})
        assert status == 200
        b.wait("document.body.dataset.toSort === '2'", timeout=10)
        assert b.js(f"!document.querySelector('figure[data-frame=\"{third}\"]')")
        assert b.console == []
        # what the page said is what the folder holds
        state = json.loads(request(srv, "/state.json")[1])
        assert state["filed"] == {"blue": 1, "green": 1, "red": 1, "background": 1, "discard": 0}
        assert sorted(f["name"] for f in state["frames"]) == sorted(n for n, p in where(saved).items() if p == "")
    finally:
        b.close()


def test_a_kill_between_the_two_renames_loses_and_duplicates_nothing(tmp_path):
    saved = tmp_path / "saved"
    names = saved_frames(saved, 3)
    sorter = Sorter(saved, CLASSES)
    (saved / "red").mkdir()
    os.replace(saved / names[0], saved / "red" / names[0])  # the JPEG moved, the process killed before the sidecar
    state = sorter.state()
    assert [f["name"] for f in state["frames"]] == names[1:] and state["filed"]["red"] == 1
    assert where(saved) == {names[0]: "red", names[1]: "", names[2]: ""}


def test_a_server_killed_mid_sort_loses_and_duplicates_nothing(tmp_path):
    """kill -9 of `data review --serve` while a client files frames as fast as it can: every frame is in exactly
    one place with its sidecar, and the restarted page carries on."""
    saved = tmp_path / "saved"
    names = saved_frames(saved, 40)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "edgeflower", "data", "review", str(saved), "--serve", f"127.0.0.1:{port}"]

    def start():
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        assert "sorting page on" in proc.stderr.readline()
        return proc

    proc = start()
    url = f"http://127.0.0.1:{port}"
    done = []

    def client():
        for i, n in enumerate(names):
            req = urllib.request.Request(f"{url}/file", data=json.dumps({"frame": n, "to": CLASSES[i % 3]}).encode(),
                                         headers={"Content-Type": "application/json"})
            try:
                urllib.request.urlopen(req, timeout=5).read()
                done.append(n)
            except (OSError, http.client.HTTPException):  # the server killed before or during its answer
                return

    t = threading.Thread(target=client)
    t.start()
    while len(done) < 10 and t.is_alive():
        time.sleep(0.001)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    t.join()
    w = where(saved)
    assert sorted(w) == sorted(names)  # none lost, none twice, every one with its sidecar
    assert all(w[n] for n in done)  # every answered request is on disk
    proc = start()
    try:
        state = json.loads(urllib.request.urlopen(f"{url}/state.json", timeout=5).read())
        assert len(state["frames"]) + sum(state["filed"].values()) == 40
    finally:
        proc.terminate()
        proc.wait()


def test_hostile_requests_are_refused_and_nothing_outside_saved_is_written(server, tmp_path):
    srv, saved, names = server
    before = {p for p in tmp_path.rglob("*")}
    assert request(srv, "/file", {"frame": "../outside.jpg", "to": "red"})[0] == 400
    assert request(srv, "/file", {"frame": names[0], "to": "../../evil"})[0] == 400
    assert request(srv, "/file", {"frame": names[0], "to": "a/b"})[0] == 400
    assert request(srv, "/frame/..%2F..%2Fetc%2Fpasswd")[0] == 404
    assert request(srv, "/frame/" + "%2E%2E%2Fsaved.jpg")[0] == 404
    assert request(srv, "/file", b"x" * 100_000)[0] == 413
    assert request(srv, "/file", b"[1, 2]")[0] == 400
    assert request(srv, "/file", {"frame": names[0], "to": "red"}, headers={"Content-Type": "text/plain"})[0] == 415
    assert request(srv, "/file", {"frame": names[0], "to": "red"}, headers={"Origin": "http://evil.example"})[0] == 403
    assert request(srv, "/state.json", headers={"Host": f"evil.example:{srv.server_address[1]}"})[0] == 403
    assert request(srv, "/state.json", headers={"Host": "127.0.0.1:1"})[0] == 403
    assert request(srv, "/undo", {})[0] == 400  # nothing to undo
    assert {p for p in tmp_path.rglob("*")} == before and where(saved) == {n: "" for n in names}
    # with --allow-remote another Host name is answered (a Pi's page on the LAN)
    srv.allow_remote = True
    assert request(srv, "/state.json", headers={"Host": "pi.local:8765"})[0] == 200


def test_classes_come_from_the_dataset_or_the_answers_and_add_skips_background(tmp_path, synth_data):
    from edgeflower.data.review import add

    saved = tmp_path / "saved"
    names = saved_frames(saved, 4)
    assert frame_classes(saved) == CLASSES
    assert frame_classes(saved, synth_data) == sorted(p.name for p in synth_data.iterdir() if p.is_dir())
    sorter = Sorter(saved, CLASSES)
    sorter.file(names[0], "red")
    sorter.file(names[1], "background")
    into = tmp_path / "dataset"
    for c in CLASSES:
        (into / c).mkdir(parents=True)
    rep = add(saved, into)
    assert rep.added == {"red": 1} and not (into / "background").exists()
