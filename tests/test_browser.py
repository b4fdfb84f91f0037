"""End-to-end: the real Streamlit app on localhost, driven by headless Chromium.

The session fixture makes sure Debian's Chromium is installed (``apt-get install
chromium`` when missing and running as root — never a browser download, never
``playwright install``), starts ``streamlit run app.py`` on a free port against the
bundled sample district, and drives it with playwright's Python package using
``/usr/bin/chromium``. Each page is opened, checked for Streamlit exception boxes,
and screenshotted (``docs/screenshots/`` when ``GIS_SCREENSHOTS=1`` or the file is
missing, always under pytest's tmp folder). The map test fails when the folium map
shows no Leaflet layers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gis import settings
from gis.testing import serve_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = settings.PACKAGE_ROOT
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO / "docs" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Streamlit's error box for an uncaught exception in the script.
EXCEPTION_SELECTOR = '[data-testid="stException"]'
MAP_IFRAME = 'iframe[title="streamlit_folium.st_folium"]'


def _apt_install(*packages: str) -> tuple[bool, str]:
    if shutil.which("apt-get") is None:
        return False, "apt-get not available"
    if os.geteuid() != 0:
        return False, "not root, cannot apt-get install"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        subprocess.run(["apt-get", "update"], check=True, capture_output=True, timeout=300, env=env)
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *packages], check=True,
                       capture_output=True, timeout=600, env=env)
    except (subprocess.SubprocessError, OSError) as exc:
        return False, f"apt-get install {' '.join(packages)} failed: {exc}"
    return True, ""


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium, installed from the Debian packages when missing."""
    if not CHROMIUM.exists():
        ok, why = _apt_install("chromium", "chromium-driver")
        if not ok or not CHROMIUM.exists():
            pytest.skip(f"headless Chromium unavailable: {why}")
    if not _has_cjk_font():
        _apt_install("fonts-wqy-microhei")  # legible Chinese in screenshots; optional
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("the playwright Python package is not installed")
    return CHROMIUM


def _has_cjk_font() -> bool:
    try:
        out = subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return bool(out.strip())


@pytest.fixture(scope="session")
def app_url(chromium: Path, sample_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``streamlit run app.py`` on 127.0.0.1:<free port> against the bundled sample."""
    log = tmp_path_factory.mktemp("streamlit") / "server.log"
    env = dict(os.environ, GIS_PROGRESS="0")
    env.pop("GIS_PROJECT", None)
    if sample_project.resolve() != settings.SAMPLE_PROJECT_DIR.resolve():
        env["GIS_PROJECT"] = str(sample_project)
    with contextlib.ExitStack() as stack:
        try:
            url, _ = stack.enter_context(serve_app(REPO / "app.py", env=env, log=log))
        except RuntimeError as exc:
            pytest.fail(str(exc))
        yield url


@pytest.fixture(scope="session")
def browser(chromium: Path) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="gis-chromium-profile-")
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            profile, executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1400, "height": 1300}, locale="zh-CN",
        )
        try:
            yield ctx
        finally:
            ctx.close()
            shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def app_page(browser: object, app_url: str) -> object:
    """The app opened once; waits until the first script run has finished."""
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(app_url, wait_until="domcontentloaded", timeout=60_000)
    page.wait_for_selector('[data-testid="stApp"]', timeout=60_000)
    # the full map (its caption names the radius) follows the base layers once the analyses are done
    page.wait_for_function("() => document.body.innerText.includes('服务半径 ')", timeout=300_000)
    _wait_idle(page)
    return page


def _wait_idle(page: object, timeout_s: float = 240) -> None:
    """Wait until Streamlit reports the script is no longer running."""
    deadline = time.monotonic() + timeout_s
    time.sleep(1.0)
    while time.monotonic() < deadline:
        running = page.locator('[data-testid="stStatusWidget"]').count()  # type: ignore[attr-defined]
        if not running:
            return
        time.sleep(0.5)
    pytest.fail("the app did not finish its run in time")


def _save(page: object, name: str, tmp_dir: Path) -> Path:
    shot = tmp_dir / name
    page.wait_for_timeout(1500)  # type: ignore[attr-defined]  # data grids draw their canvas after the run ends
    page.screenshot(path=str(shot), full_page=True)  # type: ignore[attr-defined]
    target = SCREENSHOTS / name
    if os.environ.get("GIS_SCREENSHOTS") == "1" or not target.exists():
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)
    return shot


def _assert_no_exception(page: object) -> None:
    boxes = page.locator(EXCEPTION_SELECTOR)  # type: ignore[attr-defined]
    if boxes.count():
        pytest.fail("the app shows an exception:\n" + boxes.first.inner_text()[:3000])


def test_map_page_shows_layers(app_page: object, tmp_path_factory: pytest.TempPathFactory) -> None:
    page = app_page
    _assert_no_exception(page)
    iframe = page.locator(MAP_IFRAME)  # type: ignore[attr-defined]
    iframe.first.wait_for(state="attached", timeout=120_000)
    frame = page.frame_locator(MAP_IFRAME).first  # type: ignore[attr-defined]
    frame.locator(".leaflet-container").wait_for(timeout=60_000)
    # vector layers (SVG paths) and markers are drawn
    frame.locator("path.leaflet-interactive, .leaflet-marker-icon").first.wait_for(timeout=60_000)
    n_paths = frame.locator("path.leaflet-interactive").count()
    n_markers = frame.locator(".leaflet-marker-icon").count()
    overlays = frame.locator(".leaflet-control-layers-overlays label").count()
    assert n_paths + n_markers > 0, "the map has no drawn layers"
    assert overlays >= 3, f"layer control lists {overlays} layers"
    legend = frame.locator(".gis-legend")
    assert legend.count() == 1 and "图例" in legend.inner_text()
    page.wait_for_timeout(1000)  # type: ignore[attr-defined]
    shot = _save(page, "map.png", tmp_path_factory.mktemp("shots"))
    assert shot.stat().st_size > 10_000
    _assert_no_exception(page)


@pytest.mark.parametrize(
    ("tab", "name", "expect"),
    [
        ("规划 Planner", "planner.png", "三级回收体系"),
        ("巡查 Inspector", "inspector.png", "问题台账"),
        ("下载 Downloads", "downloads.png", "map.html"),
    ],
)
def test_pages_render(app_page: object, tab: str, name: str, expect: str,
                      tmp_path_factory: pytest.TempPathFactory) -> None:
    page = app_page
    page.get_by_role("tab", name=tab).click()  # type: ignore[attr-defined]
    _wait_idle(page)
    # only the open tab's page is drawn (lazy tabs): wait for its text to be shown
    page.wait_for_function("t => document.body.innerText.includes(t)", arg=expect, timeout=240_000)  # type: ignore[attr-defined]
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stSpinner\"]')",  # type: ignore[attr-defined]
                           timeout=240_000)
    _wait_idle(page)
    page.wait_for_timeout(1000)  # type: ignore[attr-defined]  # let charts and tables paint
    _assert_no_exception(page)
    _save(page, name, tmp_path_factory.mktemp("shots"))


def test_hostile_ledger_popup_shows_text_not_markup(browser: object, tmp_path: Path) -> None:
    """A site named ``<script>…`` shows as text in its popup; no script runs."""
    import dataclasses

    from gis import maps
    from gis.district import load_district
    from gis.testing import make_tiny_project

    d = load_district(make_tiny_project(tmp_path / "tiny"))
    sites = d.sites.copy()
    sites["name"] = "<img src=x onerror=alert(1)><script>alert('x')</script>"
    sites["address"] = "回收站 ♻️🚗 " + "长" * 10_000
    d = dataclasses.replace(d, sites=sites)
    html = maps.save_map_html(maps.build_map(d), tmp_path / "hostile.html")
    page = browser.new_page()  # type: ignore[attr-defined]
    dialogs: list[str] = []
    page.on("dialog", lambda dlg: (dialogs.append(dlg.message), dlg.dismiss()))
    page.goto(html.as_uri())
    page.locator(".leaflet-marker-icon").first.dispatch_event("click")  # legend may overlap it
    popup = page.locator(".leaflet-popup-content")
    popup.wait_for(timeout=10_000)
    text = popup.inner_text()
    assert "<script>alert('x')</script>" in text and "<img src=x" in text
    assert "♻️🚗" in text and "长" * 10_000 not in text
    assert popup.locator("script, img").count() == 0
    page.wait_for_timeout(500)
    assert dialogs == []
    page.close()


def _drawn_features(page: object) -> int:
    """SVG paths and markers Leaflet has drawn in the app's map (0 = a blank map)."""
    page.locator(MAP_IFRAME).first.wait_for(state="attached", timeout=120_000)  # type: ignore[attr-defined]
    frame = page.frame_locator(MAP_IFRAME).first  # type: ignore[attr-defined]
    frame.locator(".leaflet-container").wait_for(timeout=60_000)
    try:
        frame.locator("path.leaflet-interactive, .leaflet-marker-icon").first.wait_for(timeout=30_000)
    except Exception:  # noqa: BLE001 - a blank map is the failure this test is about
        return 0
    return frame.locator("path.leaflet-interactive").count() + frame.locator(".leaflet-marker-icon").count()


def test_map_draws_after_reload_and_in_a_second_session(browser: object, app_url: str, app_page: object) -> None:
    """The map draws every time: first visit, reload, a second session (no `geo_json_… is not defined`)."""
    errors: list[str] = []
    app_page.get_by_role("tab", name="地图 Map").click()  # type: ignore[attr-defined]  # back from other tabs
    _wait_idle(app_page)
    first = _drawn_features(app_page)
    assert first > 0
    page = browser.new_page()  # type: ignore[attr-defined]  # a second browser session
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        for visit in ("second session", "reload"):
            if visit == "reload":
                page.reload(wait_until="domcontentloaded", timeout=60_000)
            else:
                page.goto(app_url, wait_until="domcontentloaded", timeout=60_000)
            page.wait_for_selector('[data-testid="stApp"]', timeout=60_000)
            _wait_idle(page)
            n = _drawn_features(page)
            assert n == first, f"{visit}: {n} features drawn, {first} on the first visit"
    finally:
        page.close()
    assert not [e for e in errors if "is not defined" in e or "maxZoom" in e], errors


def _leaflet_frame(page: object) -> object:
    """The Playwright frame holding the app's Leaflet map."""
    for fr in page.frames:  # type: ignore[attr-defined]
        try:
            if fr.evaluate("() => !!document.querySelector('.leaflet-container')"):
                return fr
        except Exception:  # noqa: BLE001 - a frame being replaced
            continue
    raise AssertionError("no Leaflet map frame")


def _zoom(frame: object) -> float:
    return float(frame.evaluate(  # type: ignore[attr-defined]
        "() => { for (const k of Object.keys(window)) { const v = window[k];"
        " if (k.startsWith('map_') && v && typeof v.getZoom === 'function') return v.getZoom(); } return -1; }"))


def _count(frame: object) -> int:
    """Drawn features: SVG paths, markers and image overlays (density, land use)."""
    return int(frame.evaluate(  # type: ignore[attr-defined]
        "() => document.querySelectorAll('path.leaflet-interactive, .leaflet-marker-icon, .leaflet-image-layer')"
        ".length"))


def test_slider_on_another_tab_then_every_layer_toggles(browser: object, app_url: str) -> None:
    """A radius change on the Planner tab; back on the map it is drawn on the district (not the world),
    every layer of the layer control switches off and on with its features, no request leaves
    127.0.0.1 and the console stays free of errors."""
    from urllib.parse import urlparse

    page = browser.new_page()  # type: ignore[attr-defined]
    errors: list[str] = []
    outside: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: outside.append(r.url) if urlparse(r.url).scheme in ("http", "https", "ws", "wss")
            and urlparse(r.url).hostname not in ("127.0.0.1", "localhost") else None)
    try:
        page.goto(app_url, wait_until="domcontentloaded", timeout=60_000)
        page.wait_for_function("() => document.body.textContent.includes('服务半径 ')", timeout=240_000)
        _wait_idle(page)
        assert _drawn_features(page) > 0
        page.get_by_role("tab", name="规划 Planner").click()
        _wait_idle(page)
        thumb = page.locator('[data-testid="stSlider"]').filter(has_text="服务半径").first.locator('input[type="range"]')
        now = int(thumb.get_attribute("value"))
        thumb.focus()
        thumb.press("ArrowRight")
        page.wait_for_function("t => document.body.textContent.includes(t)", arg=f"{now + 50} 米", timeout=240_000)
        _wait_idle(page)
        _assert_no_exception(page)
        page.get_by_role("tab", name="地图 Map").click()
        page.wait_for_function("t => document.body.textContent.includes(t)", arg=f"服务半径 {now + 50} 米",
                               timeout=240_000)
        _wait_idle(page)
        assert _drawn_features(page) > 0
        frame = _leaflet_frame(page)
        assert _zoom(frame) >= 9, "the map came back zoomed out (not on the district)"
        frame.locator(".leaflet-control-layers").hover()
        boxes = frame.locator(".leaflet-control-layers-overlays input[type=checkbox]")
        n_layers = boxes.count()
        assert n_layers >= 5
        still = []
        for i in range(n_layers):
            box = boxes.nth(i)
            before = _count(frame)
            box.click()
            frame.wait_for_timeout(150)
            if _count(frame) == before:
                still.append(frame.locator(".leaflet-control-layers-overlays label").nth(i).inner_text())
            box.click()
            frame.wait_for_timeout(150)
            assert _count(frame) == before, f"layer {i} did not come back"
        assert not still, f"toggling these layers drew or removed nothing: {still}"
        assert _count(frame) > 0
    finally:
        page.close()
    assert not outside, f"requests beyond 127.0.0.1: {outside[:5]}"
    assert not errors, errors[:5]


@pytest.mark.parametrize("height", [700, 900])
def test_full_page_legend_stays_below_the_layer_control(browser: object, sample_project: Path, tmp_path: Path,
                                                        height: int) -> None:
    """map.html's legend (bottom right, under the expanded layer control) never covers the control's last
    entries on a short window: it is fitted below the control and scrolls."""
    from gis import pipeline

    pipeline.run(sample_project, tmp_path / "out", progress=False)
    html = tmp_path / "out" / "map.html"
    page = browser.new_page()  # type: ignore[attr-defined]
    try:
        page.set_viewport_size({"width": 1400, "height": height})
        page.goto(html.as_uri())
        page.locator(".gis-legend").wait_for()
        control = page.locator(".leaflet-control-layers").bounding_box()
        legend = page.locator(".gis-legend").bounding_box()
        assert legend["y"] >= control["y"] + control["height"]  # below the control's last entry
        assert legend["y"] + legend["height"] <= height  # and within the window (it scrolls)
        assert page.locator(".leaflet-control-layers-overlays label").count() >= 5
    finally:
        page.close()
