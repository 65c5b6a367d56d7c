"""The draw-a-digit page in a real headless Chromium (the system's ``chromium``, driven by
Playwright; nothing is downloaded): draw a 1 and a 7 with mouse strokes, read the page's answer,
upload a photo, check the layout on a phone, and keep a screenshot.

Set ``MNISTCTL_SCREENSHOTS=DIR`` to keep the screenshots there (README's comes from this test).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from conftest import REPO, missing

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed: pip install -e '.[dev]'")
    binary = os.environ.get("MNISTCTL_CHROMIUM") or next(filter(None, map(shutil.which, BROWSERS)), None)
    if binary is None:
        missing("no Chromium found: apt-get install chromium (or set MNISTCTL_CHROMIUM to its path)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=binary, args=["--no-sandbox"])
        yield b
        b.close()


def _open(browser, server, **context):
    page = browser.new_page(**context)
    errors: list[str] = []
    # JavaScript errors and failed loads; a 422 is the server's answer to a drawing with too little ink yet
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "status of 422" not in m.text else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url)
    page.wait_for_selector("body[data-ready=true]")
    return page, errors


def _draw(page, strokes: list[list[tuple[float, float]]]) -> None:
    """Mouse strokes on the canvas; points as fractions of its width and height."""
    box = page.locator("#pad").bounding_box()
    for stroke in strokes:
        (x0, y0), rest = stroke[0], stroke[1:]
        page.mouse.move(box["x"] + x0 * box["width"], box["y"] + y0 * box["height"])
        page.mouse.down()
        for x, y in rest:
            page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=12)
        page.mouse.up()


# on the 2:1 canvas: a digit about as wide as people write one (a quarter of the width, 0.65 of the height)
ONE = [[(0.52, 0.15), (0.48, 0.85)]]
SEVEN = [[(0.38, 0.2), (0.62, 0.2), (0.46, 0.85)]]
ONE_SEVEN = [[(0.27, 0.15), (0.25, 0.85)], [(0.5, 0.2), (0.72, 0.2), (0.58, 0.85)]]


def _screenshot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5000
    if os.environ.get("MNISTCTL_SCREENSHOTS"):
        shutil.copy(path, Path(os.environ["MNISTCTL_SCREENSHOTS"]) / name)
    return path


@pytest.mark.slow
def test_draw_a_one_and_a_seven(browser, server, tmp_path):
    from playwright.sync_api import expect

    page, errors = _open(browser, server, viewport={"width": 960, "height": 720})
    expect(page.locator("#model")).to_contain_text("99.")  # the model's accuracy, from GET /model
    expect(page.locator("#bars li")).to_have_count(10)

    _draw(page, ONE)
    expect(page.locator("#digit")).to_have_text("1")
    expect(page.locator("#bars li.top")).to_have_attribute("data-class", "1")
    confidence = page.locator("#confidence").inner_text()
    assert confidence.endswith("% sure") and float(confidence.split("%")[0]) > 50

    page.click("#clear")
    expect(page.locator("#digit")).to_have_text("–")
    _draw(page, SEVEN)
    expect(page.locator("#digit")).to_have_text("7")
    expect(page.locator("#bars li.top")).to_have_attribute("data-class", "7")
    # the 28x28 input the model saw is drawn: light ink on black, its centre of mass in the middle (as MNIST's)
    ink, cy, cx = page.evaluate("""() => {
        const d = document.getElementById('seen').getContext('2d').getImageData(0, 0, 28, 28).data;
        let mass = 0, my = 0, mx = 0;
        for (let i = 0; i < 784; i++) {
            const v = d[4 * i];
            mass += v; my += v * Math.floor(i / 28); mx += v * (i % 28);
        }
        return [mass / 255, my / mass, mx / mass];
    }""")
    assert ink > 30 and abs(cy - 13.5) < 1.5 and abs(cx - 13.5) < 1.5, (ink, cy, cx)

    page.click("#clear")  # a number: read digit by digit, each boxed on the drawing with its reading
    _draw(page, ONE_SEVEN)
    expect(page.locator("#digit")).to_have_text("17")
    expect(page.locator("#digits li")).to_have_count(2)
    expect(page.locator("#bars")).to_be_hidden()
    # the boxes' blue lines, left of the middle for the 1 and right of it for the 7
    left, right = page.evaluate("""() => {
        const c = document.getElementById('boxes'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let left = 0, right = 0;
        for (let i = 0; i < d.length; i += 4)
            if (d[i + 3] > 0 && d[i + 2] > 200) ((i / 4) % c.width < c.width * 0.4 ? left++ : right++);
        return [left, right];
    }""")
    assert left > 100 and right > 100, (left, right)
    assert page.evaluate("document.getElementById('seen').width") == 56  # both inputs the model saw
    _screenshot(page, tmp_path, "serve-page.png")
    assert not errors, errors


@pytest.mark.slow
def test_upload_a_photo_and_read_it_on_a_phone(browser, server, tmp_path):
    from playwright.sync_api import expect

    page, errors = _open(browser, server, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                         device_scale_factor=2)
    # nothing sticks out sideways on a phone: no horizontal scrolling
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert page.locator("#pad").bounding_box()["width"] <= 390
    page.set_input_files("#file", str(REPO / "assets" / "digit-7-photo.jpg"))
    expect(page.locator("#digit")).to_have_text("7")
    expect(page.locator("#preview")).to_be_visible()
    # a file that is not an image: the page says what went wrong, and keeps working
    page.set_input_files("#file", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"}])
    expect(page.locator("#error")).to_contain_text("not an image")
    _draw(page, ONE)  # mouse strokes work on the touch layout too (pointer events)
    expect(page.locator("#digit")).to_have_text("1")
    expect(page.locator("#error")).to_be_hidden()
    _screenshot(page, tmp_path, "serve-phone.png")
    assert not errors, errors


def test_the_interactive_api_docs_work_offline(browser, server, tmp_path):
    """/docs is Swagger UI served by mnistctl itself (no CDN), within its Content-Security-Policy:
    it lists every route from /openapi.json and can send a picture to /predict from the page."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    outside: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(server.url) else None)
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.goto(server.url + "/docs")
    page.wait_for_selector("body[data-ready=true]")
    page.wait_for_selector(".opblock-summary-path")
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert {"/predict", "/health", "/ready", "/model", "/metrics"} <= {p.strip() for p in paths}, paths
    page.locator(".opblock-post .opblock-summary").first.click()
    page.get_by_role("button", name="Try it out").click()
    page.locator("select.content-type, .body-param-content-type select").first.select_option("multipart/form-data")
    page.locator("input[type=file]").first.set_input_files(str(REPO / "assets" / "digit-7-photo.jpg"))
    page.locator(".execute").first.click()
    page.wait_for_selector(".live-responses-table .response-col_status")
    answer = page.locator(".live-responses-table").inner_text()
    assert "200" in answer and '"prediction": "7"' in answer, answer[:500]
    shots = Path(os.environ.get("MNISTCTL_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "serve-docs.png"), full_page=False)
    assert not errors, errors
    assert not outside, outside  # nothing fetched from elsewhere
    page.close()
