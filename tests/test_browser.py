"""Real-browser test: ``streamlit run app.py`` driven by Debian chromium through playwright.

Opens every page, checks that none shows an exception, and saves a screenshot of each. Screenshots go to
``$PREDIFF_SCREENSHOT_DIR`` when set (e.g. docs/screenshots), else to pytest's tmp_path. Skips when
/usr/bin/chromium is missing (``bash scripts/install.sh --test`` installs it).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prediff.app.browser import CHROMIUM, CHROMIUM_ARGS, serve_app
from prediff.data.geo import SEVIR_PROJ, corners_for_center
from prediff.data.layout import EventRecord, write_sevir_tree

REPO_ROOT = Path(__file__).resolve().parents[1]
PAGES = {"events": "", "forecast": "forecast", "denoising": "denoising", "scenarios": "scenarios",
         "verification": "verification", "dual_pol": "dual_pol", "about": "about"}

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _storm_tree(root: Path) -> Path:
    """Two 128x128x25 SEVIR-LR events with a moving storm, one partly outside radar coverage."""
    rows, columns = np.mgrid[0:128, 0:128]
    events = []
    for index, (lat, lon, kind, time_utc) in enumerate([(35.2, -97.4, "Hail", "2019-05-20 22:00"),
                                                         (42.3, -83.0, "Thunderstorm Wind", "2019-07-02 18:30")]):
        frames = [np.clip(240 * np.exp(-((columns - 25 - 3 * t) ** 2 + (rows - 40 - 2 * t) ** 2) / 400.0)
                          + 40 * np.exp(-((columns - 90) ** 2 + (rows - 90) ** 2) / 1500.0), 0, 254)
                  for t in range(25)]
        vil = np.stack(frames, axis=-1).astype(np.uint8)
        if index == 1:
            vil[:, 110:, :] = 255
        corners = corners_for_center(SEVIR_PROJ, lat, lon, 384000.0, 384000.0)
        events.append(EventRecord(id=f"S90000{index}", time_utc=pd.Timestamp(time_utc), vil=vil,
                                  minute_offsets=list(range(-120, 130, 10)), llcrnrlat=corners[0],
                                  llcrnrlon=corners[1], urcrnrlat=corners[2], urcrnrlon=corners[3], proj=SEVIR_PROJ,
                                  width_m=384000.0, height_m=384000.0, event_type=kind, episode_id=10 + index,
                                  event_id=20 + index))
    return write_sevir_tree(root, events)


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (/usr/bin/chromium); run `bash scripts/install.sh --test`")
    data = _storm_tree(tmp_path_factory.mktemp("sevir") / "tree")
    log_path = tmp_path_factory.mktemp("streamlit") / "server.log"
    try:
        with serve_app(None, log_path, start_timeout_s=60, data=data) as url:
            yield url
    except RuntimeError as error:
        pytest.fail(str(error))


@pytest.fixture(scope="module")
def screenshot_dir(tmp_path_factory) -> Path:
    chosen = os.environ.get("PREDIFF_SCREENSHOT_DIR")
    directory = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (/usr/bin/chromium); run `bash scripts/install.sh --test`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def _settle(page, timeout_s: float = 180.0) -> None:
    """Wait until the page's title is drawn and the script run is over (no 'Running' indicator)."""
    page.wait_for_selector('[data-testid="stMain"] h1', timeout=timeout_s * 1000)
    deadline = time.monotonic() + timeout_s
    quiet_since = None
    while time.monotonic() < deadline:
        running = page.locator('[data-testid="stStatusWidget"]').count() > 0
        if running:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 1.5:
            return
        time.sleep(0.25)
    raise AssertionError("the app did not finish running within the timeout")


def _visit(browser, url: str, screenshot: Path, wait_for_plots: int = 0) -> str:
    page = browser.new_page(viewport={"width": 1500, "height": 2300})
    try:
        page.goto(url, wait_until="domcontentloaded")
        _settle(page)
        if wait_for_plots:
            page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= "
                                   f"{wait_for_plots}", timeout=120000)
            page.wait_for_timeout(800)
        exceptions = page.locator('[data-testid="stException"]')
        text = page.inner_text("body")
        page.screenshot(path=str(screenshot), full_page=True)
        assert exceptions.count() == 0, f"{url} shows an exception: {exceptions.first.inner_text()[:500]}"
        assert "Traceback" not in text, f"{url} shows a traceback"
        return text
    finally:
        page.close()


@pytest.mark.parametrize("name", list(PAGES))
def test_page_renders_without_exception(app_url, browser, screenshot_dir, name):
    plots = {"events": 2, "forecast": 1, "verification": 1, "denoising": 1, "dual_pol": 3}.get(name, 0)
    text = _visit(browser, f"{app_url}/{PAGES[name]}", screenshot_dir / f"{name}.png", wait_for_plots=plots)
    expected = {"events": "S900000", "forecast": "Ensemble forecast", "denoising": "noise schedule",
                "scenarios": "knowledge control", "verification": "persistence", "dual_pol": "Dual-polarisation",
                "about": "Veillette"}[name]
    assert expected in text


def test_unknown_event_in_link_shows_readable_error(app_url, browser, screenshot_dir):
    text = _visit(browser, f"{app_url}/?event=S123", screenshot_dir / "events_unknown_id.png", wait_for_plots=2)
    assert "unknown event id 'S123'" in text


def _fill(page, label: str, value: str) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(value)
    field.press("Enter")
    _settle(page)


def test_forecast_and_denoising_run_with_a_tiny_model(app_url, browser, screenshot_dir, tmp_path):
    """Point the sidebar at a tiny random model, run a 2-member forecast and a 3-step denoising run in the
    worker, and check that results (not exceptions) come back."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from tiny_model import write_tiny_model

    model = write_tiny_model(tmp_path / "tiny")
    page = browser.new_page(viewport={"width": 1500, "height": 2600})
    try:
        page.goto(app_url, wait_until="domcontentloaded")
        _settle(page)
        page.get_by_text("Checkpoint files", exact=True).click()
        _settle(page)
        for label, name in (("Config (YAML)", "config.yaml"), ("VAE checkpoint", "vae.ckpt"),
                            ("Diffusion checkpoint", "diffusion.ckpt"), ("Alignment checkpoint", "align.ckpt")):
            _fill(page, label, str(model / name))
        page.get_by_role("link", name="Forecast").click()
        _settle(page)
        _fill(page, "Ensemble members", "2")
        _fill(page, "Steps", "2")
        page.get_by_role("button", name="Run the forecast").click()
        page.wait_for_selector("text=sampling took", timeout=240000)
        _settle(page)
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 2", timeout=30000)
        page.wait_for_timeout(800)
        page.screenshot(path=str(screenshot_dir / "forecast_result.png"), full_page=True)
        assert page.locator('[data-testid="stException"]').count() == 0
        # the finished job leaves no (disabled) Cancel / Stop buttons behind
        assert page.get_by_role("button", name="Cancel").count() == 0
        assert page.get_by_role("button", name="Stop the worker now").count() == 0
        assert "Traceback" not in page.inner_text("body")

        page.get_by_role("link", name="Denoising steps").click()
        _settle(page)
        _fill(page, "Steps", "3")
        page.get_by_role("button", name="Run the sampler").click()
        page.wait_for_selector("text=Training timestep t", timeout=240000)
        _settle(page)
        page.wait_for_timeout(800)
        page.screenshot(path=str(screenshot_dir / "denoising_result.png"), full_page=True)
        assert page.locator('[data-testid="stException"]').count() == 0
        assert "Traceback" not in page.inner_text("body")
    finally:
        page.close()
