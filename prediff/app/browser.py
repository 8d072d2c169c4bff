"""Driving ``streamlit run app.py`` in headless Debian chromium (playwright): start the server, wait until a
page is fully drawn, fill inputs, switch pages, start worker jobs.

Shared by the latency benchmark (benchmarks/bench_app.py) and the README screenshots (scripts/make_screenshots.py).
Needs ``/usr/bin/chromium`` and the playwright package (never ``playwright install``: it downloads a browser).
The app process still never imports MindSpore; nothing here does either.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
#: Sidebar link text -> the page's title (st.title), in the order the switches cycle through.
PAGE_TITLES = {"Events": "Storm events", "Forecast": "Ensemble forecast", "Denoising steps": "Denoising steps",
               "Scenarios": "Scenarios", "Verification": "Verification", "Dual-pol": "Dual-polarisation radar",
               "About": "About PreDiff Workbench"}

#: True when the app is idle and fully drawn: no script running, no stale element, every plotly chart drawn.
DRAWN_JS = """() => {
    if (document.querySelector('[data-testid="stStatusWidget"]')) return false;
    if (document.querySelector('[data-stale="true"]')) return false;
    if (document.querySelector('[data-testid^="stSkeleton"], [data-testid="stAppSkeleton"]')) return false;
    const charts = document.querySelectorAll('[data-testid="stPlotlyChart"]');
    for (const chart of charts) { if (!chart.querySelector('.main-svg')) return false; }
    return true;
}"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serve_app(model_dir: Path | None, log_path: Path, start_timeout_s: float = 300.0, data: Path | None = None):
    """``streamlit run app.py`` on a free local port with ``model_dir`` as the demo model
    (``$PREDIFF_DEMO_MODEL_DIR``; None = assets/demo_model) and ``data`` as its dataset (``$PREDIFF_DATA``;
    None = the demo storm corpus); yields the app's URL and stops the server afterwards.

    Raises
    ------
    RuntimeError : the server did not answer its health check within ``start_timeout_s`` seconds (the log is at
        ``log_path``).
    """
    port = free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for name, value in (("PREDIFF_DEMO_MODEL_DIR", model_dir), ("PREDIFF_DATA", data)):
        if value is None:
            env.pop(name, None)
        else:
            env[name] = str(value)
    with log_path.open("w") as log:
        server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                                   "--server.port", str(port), "--server.address", "127.0.0.1",
                                   "--browser.gatherUsageStats", "false"],
                                  cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + start_timeout_s
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                        if response.read().strip() == b"ok":
                            break
                except OSError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"streamlit did not start (exit code {server.poll()}); see {log_path}")
                time.sleep(0.2)
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def wait_drawn(page, title: str | None = None, text: str | None = None, timeout_s: float = 60.0) -> None:
    """Block until the page shows ``title`` as its heading and ``text`` somewhere, and is idle and fully drawn."""
    if title is not None:
        page.wait_for_function("(t) => { const h = document.querySelector('[data-testid=\"stMain\"] h1');"
                               " return h !== null && h.innerText.trim() === t; }", arg=title,
                               timeout=timeout_s * 1000, polling=20)
    if text is not None:
        page.wait_for_function("(t) => document.body.innerText.includes(t)", arg=text, timeout=timeout_s * 1000,
                               polling=20)
    page.wait_for_function(DRAWN_JS, timeout=timeout_s * 1000, polling=20)


def settle(page, quiet_s: float = 1.5, timeout_s: float = 120.0) -> None:
    """Block until the page has stayed drawn (:data:`DRAWN_JS`) for ``quiet_s`` seconds on end: the first run
    after loading the app may not show the running indicator, so a single check can pass too early. For
    screenshots, not for timing."""
    deadline = time.monotonic() + timeout_s
    quiet_since = None
    while time.monotonic() < deadline:
        if page.evaluate(DRAWN_JS):
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= quiet_s:
                return
        else:
            quiet_since = None
        page.wait_for_timeout(100)
    raise TimeoutError(f"the page did not settle within {timeout_s:.0f} s")


def fill(page, label: str, value: str) -> None:
    """Type ``value`` into the input labelled ``label``, commit it and wait for the rerun."""
    field = page.get_by_label(label, exact=True)
    field.fill(value)
    field.press("Enter")
    page.wait_for_timeout(300)
    wait_drawn(page)


#: True while a job panel shows its progress bar.
PROGRESS_JS = "() => document.querySelector('[data-testid=\"stProgress\"]') !== null"


def click_job_button(page, name: str, started_js: str = PROGRESS_JS) -> None:
    """Click the button that submits a worker job until ``started_js`` (a JS predicate) says the job started; a
    click that lands while a number input commits its value is taken by that rerun and must be repeated."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _ in range(5):
        page.get_by_role("button", name=name).click()
        try:
            page.wait_for_function(started_js, timeout=10000, polling=20)
            return
        except PlaywrightTimeout:
            wait_drawn(page)
    raise RuntimeError(f"clicking {name!r} did not start a job")


def goto(page, link: str) -> float:
    """Click the sidebar link ``link`` (a key of :data:`PAGE_TITLES`); returns the seconds until its page is
    drawn."""
    started = time.perf_counter()
    page.locator('[data-testid="stSidebarNav"] a').filter(has_text=link).first.click()
    wait_drawn(page, title=PAGE_TITLES[link])
    return time.perf_counter() - started
