"""Screenshots of every main page of the workbench for README.md (docs/screenshots/*.png).

Starts ``streamlit run app.py`` with the demo storm corpus and a demo model, opens each page in headless Debian
chromium (``/usr/bin/chromium``, driven by playwright), runs a forecast, a denoising run and a scenario sweep so
their pages show results, and saves one full-page PNG per page. Look at every image before committing it.

Usage::

    .venv/bin/python scripts/make_screenshots.py [--model-dir assets/demo_model] [--out docs/screenshots]
                                                 [--members 8] [--steps 20] [--pages events about ...]

``--model-dir`` defaults to the shipped demo model; any folder with the same files works (passed to the app as
``$PREDIFF_DEMO_MODEL_DIR``). Regenerate the images whenever the pages or the demo model change.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from prediff.app.browser import (CHROMIUM, CHROMIUM_ARGS, click_job_button, fill, goto, serve_app, settle,
                                 wait_drawn)

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Viewport of the screenshots (CSS pixels); pages longer than this are captured whole.
VIEWPORT = {"width": 1400, "height": 1000}
#: Slowest model job allowed, seconds (a cold worker loads MindSpore and the model first).
JOB_TIMEOUT_S = 1800


#: Text near the end of each page: its presence shows the page script got that far (on a busy machine the
#: running indicator can be missed, so a settled page alone does not prove it is complete).
LAST_TEXT = {"events": "Prepare downloads", "forecast": "Downloads", "denoising": "The noise schedule",
             "scenarios": "Member-mean values", "verification": "Observed", "dual_pol": "Negative (green)",
             "about": "worker process"}


def _shoot(page, out: Path, name: str, plots: int = 0) -> Path:
    """Save the whole page as ``out/name.png`` once it shows :data:`LAST_TEXT` and has settled with at least
    ``plots`` plotly charts."""
    page.wait_for_function("(t) => document.body.innerText.includes(t)", arg=LAST_TEXT[name],
                           timeout=JOB_TIMEOUT_S * 1000)
    if plots:
        page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {plots}",
                               timeout=JOB_TIMEOUT_S * 1000)
    settle(page)
    # the app scrolls inside its main container, so a full-page capture needs a viewport as tall as the page
    height = page.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": VIEWPORT["width"], "height": max(VIEWPORT["height"], int(height) + 40)})
    settle(page)
    path = out / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(VIEWPORT)
    if page.locator('[data-testid="stException"]').count():
        raise RuntimeError(f"the {name} page shows an exception; see {path}")
    print(f"wrote {path}", flush=True)
    return path


#: Page names (PNG file stems), in the order they are taken.
PAGES = ("events", "forecast", "denoising", "scenarios", "verification", "dual_pol", "about")


def make_screenshots(model_dir: Path, out: Path, members: int, steps: int, pages=PAGES) -> list[Path]:
    """Run the app, visit the ``pages`` (running the model pages' jobs) and save one PNG per page.

    Returns
    -------
    The written PNG paths, in the order of :data:`PAGES`.

    Raises
    ------
    RuntimeError : the app did not start, a page shows an exception, or a job failed.
    """
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as folder, serve_app(model_dir, Path(folder) / "server.log") as url, \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(url, wait_until="domcontentloaded")
            wait_drawn(page, title="Storm events", timeout_s=180)
            if "events" in pages:
                written.append(_shoot(page, out, "events", plots=2))
            if "forecast" in pages:
                goto(page, "Forecast")
                fill(page, "Ensemble members", str(members))
                fill(page, "Steps", str(steps))
                click_job_button(page, "Run the forecast")
                wait_drawn(page, text="sampling took", timeout_s=JOB_TIMEOUT_S)
                written.append(_shoot(page, out, "forecast", plots=2))
            if "denoising" in pages:
                goto(page, "Denoising steps")
                fill(page, "Steps", str(steps))
                click_job_button(page, "Run the sampler",
                                 "() => document.body.innerText.includes('Step-through sampling:')")
                wait_drawn(page, text="Training timestep t", timeout_s=JOB_TIMEOUT_S)
                slider = page.get_by_role("slider", name="Sampler step")
                slider.focus()
                # half-way through sampling, where the forecast is taking shape
                for _ in range(max(steps // 2 - 1, 0)):
                    slider.press("ArrowRight")
                wait_drawn(page, text=f"{max(steps // 2, 1)} of {steps}")
                written.append(_shoot(page, out, "denoising", plots=3))
            if "scenarios" in pages:
                goto(page, "Scenarios")
                fill(page, "Steps", str(steps))
                click_job_button(page, "Run the scenarios")
                wait_drawn(page, text="Member-mean values per lead time", timeout_s=JOB_TIMEOUT_S)
                written.append(_shoot(page, out, "scenarios", plots=6))
            for link, name, plots in (("Verification", "verification", 1), ("Dual-pol", "dual_pol", 3),
                                      ("About", "about", 0)):
                if name in pages:
                    goto(page, link)
                    written.append(_shoot(page, out, name, plots))
        finally:
            browser.close()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / "assets" / "demo_model",
                        help="demo-model folder (config.yaml, vae.ckpt, diffusion.ckpt, align.ckpt, optionally "
                             "intensity_stats.json); default assets/demo_model")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "screenshots",
                        help="folder for the PNG files (default docs/screenshots)")
    parser.add_argument("--members", type=int, default=8, help="forecast ensemble members (default 8)")
    parser.add_argument("--steps", type=int, default=20, help="DDIM steps of the model pages (default 20)")
    parser.add_argument("--pages", nargs="+", choices=PAGES, default=PAGES,
                        help="only these pages (default all)")
    args = parser.parse_args(argv)
    missing = [name for name in ("config.yaml", "vae.ckpt", "diffusion.ckpt", "align.ckpt")
               if not (args.model_dir / name).is_file()]
    if missing:
        print(f"error: {args.model_dir} lacks {', '.join(missing)}; pass --model-dir with a model folder",
              file=sys.stderr)
        return 2
    if not CHROMIUM.exists():
        print(f"error: {CHROMIUM} is missing; install Debian chromium (bash scripts/install.sh --test)",
              file=sys.stderr)
        return 2
    make_screenshots(args.model_dir.resolve(), args.out, args.members, args.steps, tuple(args.pages))
    return 0


if __name__ == "__main__":
    sys.exit(main())
