"""Drive a headless Chromium over the DevTools protocol (CDP): open the viewer, take screenshots,
click. Used by the end-to-end tests and the benchmark; no Selenium needed (the websocket client
comes with viser's ``websockets`` dependency).

    with HeadlessChromium(width=1280, height=800) as browser:
        browser.navigate(viewer.url)
        png = browser.screenshot()          # [H, W, 3] uint8

Chromium runs with ``--headless --no-sandbox --disable-gpu --disable-background-networking
--disable-component-update --no-first-run`` and a fresh ``--user-data-dir``; WebGL then runs on
SwiftShader (software), which viser renders correctly (slowly).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

__all__ = ["CHROMIUM_FLAGS", "HeadlessChromium", "find_chromium"]

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--no-default-browser-check",
                  "--hide-scrollbars", "--mute-audio", "--enable-unsafe-swiftshader",
                  "--disable-dev-shm-usage")  # containers often have a tiny /dev/shm


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable (``$RECON_CHROMIUM`` first), or None."""
    env = os.environ.get("RECON_CHROMIUM")
    if env:
        return env
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        p = shutil.which(name)
        if p:
            return p
    return None


class HeadlessChromium:
    """One headless Chromium process with one page, driven over CDP. Close it (or use ``with``)."""

    def __init__(self, *, width: int = 1280, height: int = 800, executable: str | None = None,
                 timeout: float = 30.0):
        from websockets.sync.client import connect

        exe = executable or find_chromium()
        if exe is None:
            raise FileNotFoundError("no Chromium found (apt-get install chromium, or set RECON_CHROMIUM)")
        self.width, self.height = int(width), int(height)
        self._profile = Path(tempfile.mkdtemp(prefix="recon-chromium-"))
        self._proc = subprocess.Popen(
            [exe, *CHROMIUM_FLAGS, f"--user-data-dir={self._profile}", "--remote-debugging-port=0",
             "--remote-debugging-address=127.0.0.1", f"--window-size={self.width},{self.height}",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._ids = itertools.count(1)
        self._ws = None
        try:
            port_file = self._profile / "DevToolsActivePort"
            end = time.monotonic() + timeout
            while not (port_file.is_file() and port_file.read_text().strip()):
                if self._proc.poll() is not None:
                    raise RuntimeError(f"Chromium exited at start-up (status {self._proc.returncode})")
                if time.monotonic() > end:
                    raise TimeoutError("Chromium did not open its DevTools port")
                time.sleep(0.05)
            port = int(port_file.read_text().split()[0])
            targets = []
            while not targets:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout) as r:
                    targets = [t for t in json.load(r) if t.get("type") == "page"]
                if not targets:
                    if time.monotonic() > end:
                        raise TimeoutError("Chromium has no page target")
                    time.sleep(0.05)
            self._ws = connect(targets[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=timeout)
            self.call("Emulation.setDeviceMetricsOverride",
                      width=self.width, height=self.height, deviceScaleFactor=1, mobile=False)
        except BaseException:
            self.close()
            raise

    # ---- protocol -----------------------------------------------------------------------
    def call(self, method: str, timeout: float = 60.0, **params) -> dict:
        """Send one CDP command and return its result (events in between are dropped)."""
        msg_id = next(self._ids)
        self._ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"CDP {method}: no answer in {timeout} s")
            reply = json.loads(self._ws.recv(timeout=left))
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"CDP {method}: {reply['error']}")
                return reply.get("result", {})

    def navigate(self, url: str, *, timeout: float = 60.0) -> None:
        """Open ``url`` and wait until the document has loaded (not until WebGL has drawn)."""
        self.call("Page.navigate", url=url)
        end = time.monotonic() + timeout
        while True:
            try:
                if self.evaluate("document.readyState + ' ' + location.href") == f"complete {url}" or \
                        self.evaluate("document.readyState") == "complete" and \
                        self.evaluate("location.href").rstrip("/") == url.rstrip("/"):
                    return
            except RuntimeError:  # the page is being swapped (cross-process navigation)
                pass
            if time.monotonic() > end:
                raise TimeoutError(f"{url} did not load within {timeout} s")
            time.sleep(0.1)

    def evaluate(self, expression: str):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return r.get("result", {}).get("value")

    def screenshot(self, timeout: float = 60.0) -> np.ndarray:
        """The page as [H, W, 3] uint8 RGB (waits for the next frame, at most ``timeout`` s)."""
        import base64

        from PIL import Image

        r = self.call("Page.captureScreenshot", timeout=timeout, format="png")
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(r["data"]))).convert("RGB"))

    def click(self, x: float, y: float) -> None:
        """A left click at CSS pixel (x, y) of the page (press and release, no motion)."""
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=float(x), y=float(y), button="left",
                      buttons=0 if kind == "mouseMoved" else 1, clickCount=1)

    def wait_for(self, predicate, *, timeout: float = 60.0, interval: float = 0.5) -> np.ndarray:
        """Poll screenshots until ``predicate(image)`` is true; returns that image. TimeoutError
        (with the last image attached as ``.image``) otherwise."""
        end = time.monotonic() + timeout
        img = None
        while True:
            try:
                img = self.screenshot(timeout=max(5.0, end - time.monotonic()))
            except RuntimeError:  # e.g. "Not attached to an active page" while the page swaps
                img = None
            if img is not None and predicate(img):
                return img
            if time.monotonic() > end:
                err = TimeoutError(f"condition not met within {timeout} s")
                err.image = img
                raise err
            time.sleep(interval)

    def close(self) -> None:
        try:
            if self._ws is not None:
                from websockets.exceptions import ConnectionClosed

                with contextlib.suppress(OSError, RuntimeError, TimeoutError, ConnectionClosed):
                    self.call("Browser.close", timeout=5)  # the browser may be gone already
                self._ws.close()
        finally:
            self._ws = None
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(10)
            shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
