"""Look at the built pages as a reader's browser does: headless Chromium screenshots, and which code
or output lines of a page are clipped (wider than their box) at a given window width.

The clipping check drives Chromium over its DevTools protocol (a websocket, through tornado, which
Jupyter already installs) and asks the laid-out page for every ``<pre>`` whose content is wider
than the box that shows it.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars")

# Every <pre> inside a notebook cell (code and outputs) and in the page's tables, with the longest
# line of each that does not fit its box.
CLIPPED_JS = """
Array.from(document.querySelectorAll('article pre'))
  .filter(p => p.scrollWidth > p.clientWidth + 1)
  .map(p => p.textContent.split('\\n').reduce((a, b) => (b.length > a.length ? b : a), ''))
"""


def find_chromium() -> str | None:
    """Path of a Chromium binary, if one is installed."""
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def screenshot(html: Path, png: Path, chromium: str, width: int = 1280, height: int = 1600) -> None:
    """Render one local HTML page to PNG with headless Chromium."""
    with tempfile.TemporaryDirectory() as profile_dir:
        subprocess.run(
            [chromium, *FLAGS, f"--user-data-dir={profile_dir}", f"--window-size={width},{height}",
             f"--screenshot={png}", html.resolve().as_uri()],
            check=True, capture_output=True, timeout=120,
        )


def clipped_lines(pages: list[Path], chromium: str, width: int = 1280, timeout: float = 60.0) -> dict[str, list[str]]:
    """``{page: [longest line of each clipped <pre>, ...]}`` for local HTML ``pages`` at ``width`` px."""
    with tempfile.TemporaryDirectory() as profile_dir:
        browser = subprocess.Popen(
            [chromium, *FLAGS, f"--user-data-dir={profile_dir}", "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        try:
            port = _devtools_port(browser, timeout)
            return asyncio.run(_measure(port, pages, width, timeout))
        finally:
            browser.kill()
            browser.wait()


def _devtools_port(browser: subprocess.Popen, timeout: float) -> int:
    """The port Chromium prints as ``DevTools listening on ws://127.0.0.1:PORT/...``."""
    deadline = time.monotonic() + timeout
    for line in browser.stderr:
        found = re.search(r"DevTools listening on ws://[\d.]+:(\d+)/", line)
        if found:
            return int(found.group(1))
        if time.monotonic() > deadline:
            break
    raise RuntimeError("headless Chromium did not open its DevTools port")


async def _measure(port: int, pages: list[Path], width: int, timeout: float) -> dict[str, list[str]]:
    from tornado.websocket import websocket_connect

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout) as reply:
        target = next(t for t in json.load(reply) if t["type"] == "page")
    connection = await websocket_connect(target["webSocketDebuggerUrl"], max_message_size=64 << 20)
    ids = iter(range(1, 1 << 30))

    async def call(method: str, **params) -> dict:
        message_id = next(ids)
        await connection.write_message(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            reply = json.loads(await asyncio.wait_for(connection.read_message(), timeout))
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"Chromium refused {method}: {reply['error']}")
                return reply["result"]

    async def evaluate(expression: str):
        return (await call("Runtime.evaluate", expression=expression, returnByValue=True))["result"].get("value")

    await call("Emulation.setDeviceMetricsOverride", width=width, height=900, deviceScaleFactor=1, mobile=False)
    clipped = {}
    for page in pages:
        uri = page.resolve().as_uri()
        await call("Page.navigate", url=uri)
        loaded = f"location.href === {json.dumps(uri)} && document.readyState === 'complete' && document.fonts.status === 'loaded'"
        deadline = time.monotonic() + timeout
        while not await evaluate(loaded):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{page} did not finish loading in {timeout:.0f} s")
            await asyncio.sleep(0.1)
        clipped[page.name] = await evaluate(CLIPPED_JS)
    connection.close()
    return clipped
