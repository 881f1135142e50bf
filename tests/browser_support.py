"""Headless Chromium (Debian's, at /usr/bin/chromium) driven by Playwright for
the browser tests: launch, log in, axe-core checks, screenshots."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = ROOT / "var" / "artifacts"


def require_browser() -> None:
    """In CI a missing browser or front-end package fails the test (never a
    silent skip); on a workstation it skips with the command to run."""
    missing = [what for what, ok in (("chromium", Path(CHROMIUM).exists()), ("node_modules (npm ci)", AXE.exists())) if not ok]
    if not missing:
        return
    message = f"browser tests need {', '.join(missing)}: apt-get install chromium chromium-driver; make npm"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def launch(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)


def login(page: Any, base_url: str, email: str, password: str) -> None:
    problems: list[str] = []
    page.on("console", lambda message: message.type == "error" and problems.append(message.text))
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(f"{base_url}/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(f"{base_url}/")
    try:
        page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    except Exception as error:
        raise AssertionError(f"the dashboard did not start: {problems}") from error


def wait_until(check: Callable[[], Any], timeout: float = 30.0, message: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(0.2)


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """Serious and critical axe-core violations of the page as it is now."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(content=AXE.read_text())
    result = page.evaluate("async () => JSON.stringify((await axe.run(document, {resultTypes: ['violations']})).violations)")
    violations = json.loads(result)
    return [
        {"id": v["id"], "impact": v["impact"], "help": v["help"], "nodes": [n["target"] for n in v["nodes"][:5]]}
        for v in violations
        if v["impact"] in ("serious", "critical")
    ]


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path))
    print(f"screenshot: {path}")
    return path


FIRST_LOAD_JS = """() => {
    const nav = performance.getEntriesByType('navigation')[0];
    return {
        dom_content_loaded_ms: Math.round(nav.domContentLoadedEventEnd),
        load_ms: Math.round(nav.loadEventEnd),
        first_candle_ms: Number(document.body.dataset.firstCandleMs),
        first_price_ms: Number(document.body.dataset.firstPriceMs),
        requests: performance.getEntriesByType('resource').length + 1,
    };
}"""


def measure_first_load(browser: Any, base_url: str, storage_state: Any, timeout: float = 30.0) -> dict[str, Any]:
    """One first load of the dashboard in a fresh context (empty cache, the
    given session): bytes on the wire (Chrome's encoded lengths, headers
    included, WebSocket frames not), and milliseconds from navigation start to
    DOMContentLoaded, load, the chart's first candle and the watchlist's
    first live price."""
    context = browser.new_context(storage_state=storage_state, viewport={"width": 1600, "height": 900})
    try:
        page = context.new_page()
        cdp = context.new_cdp_session(page)
        cdp.send("Network.enable")
        sizes: dict[str, int] = {}
        cdp.on("Network.loadingFinished", lambda event: sizes.__setitem__(event["requestId"], int(event["encodedDataLength"])))
        page.goto(f"{base_url}/")
        page.wait_for_function("document.body.dataset.firstCandleMs && document.body.dataset.firstPriceMs", timeout=timeout * 1000)
        figures = page.evaluate(FIRST_LOAD_JS)
        time.sleep(0.5)  # the last loadingFinished events
        figures["bytes"] = sum(sizes.values())
        return figures
    finally:
        context.close()
