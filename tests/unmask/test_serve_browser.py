"""``unmask serve`` in a real browser: headless Chromium (Debian's chromium and chromium-driver) driven by
selenium. The page says why a file that is not a photo is refused; then a real photo is uploaded, a stroke
painted on its map and partly erased, stage 2 re-run and the result downloaded, which must differ from
the photo only inside the edited map (as the page holds it) and its paste margin. Then the page's tools,
states and queue: undo / redo, the brush cursor and its keys, zoom and pan, grow and shrink, the overlay's
opacity and colour, before / after; reset, a failed upload after a good one, labels that follow edits, a
tall photo within the window; several photos, each keeping its edits. The tiny model predicts an empty
map, so every map pixel these tests count was painted by them. Skips, saying how to install, without a
browser; CI installs one (.ci/run)."""

from __future__ import annotations

import base64
import contextlib
import io
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskgen.source import load_image
from tests.testdata import REAL_MASKED
from tests.unmask.test_serve import changed_only_near, need_photo, paste_margin, tiny_unmasker

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
INSTALL = "apt-get install -y chromium chromium-driver; pip install -e '.[dev]'"
WAIT_S = 120  # for the page's answers: a loaded 2-core machine, first use of the face detectors

pytest.importorskip("starlette", reason="unmask serve needs the serve extra: pip install -e '.[serve]'")
webdriver = pytest.importorskip("selenium.webdriver", reason=f"no selenium to drive a browser: {INSTALL}")
if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
    pytest.skip(f"no headless browser ({CHROMIUM}, {CHROMEDRIVER}): {INSTALL}", allow_module_level=True)

from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.actions.action_builder import ActionBuilder  # noqa: E402
from selenium.webdriver.common.actions.mouse_button import MouseButton  # noqa: E402
from selenium.webdriver.common.actions.wheel_input import ScrollOrigin  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from unmask.serve.app import create_app, listen  # noqa: E402
from unmask.serve.editing import PhotoCache  # noqa: E402


@contextlib.contextmanager
def served(app):
    """``app`` on a free port, served by uvicorn in a thread (the socket listens before the browser comes)."""
    import uvicorn

    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@pytest.fixture
def server_url():
    with served(create_app(tiny_unmasker())) as url:
        yield url


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--no-proxy-server", "--window-size=1400,1000"):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"download.default_directory": str(tmp_path / "downloads")})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    yield driver
    driver.quit()


def wait_for(driver, results: int) -> None:
    """Until the page shows its ``results``-th result (or an error, which fails the test with its text)."""
    def settled(d):
        body = d.find_element(By.TAG_NAME, "body")
        return body.get_attribute("data-state") == "error" or body.get_attribute("data-results") == str(results)
    WebDriverWait(driver, WAIT_S).until(settled)
    assert driver.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "ready", \
        driver.find_element(By.ID, "error").text


def stroke(driver, canvas, start: tuple[float, float], end: tuple[float, float]) -> None:
    """Drag the pointer over the canvas between two points given in map pixels."""
    rect = driver.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.width, r.height];", canvas)
    scale = rect[0] / int(canvas.get_attribute("width"))
    # selenium's offsets start at the centre
    to_centre = [(p * scale - size / 2) for p, size in zip(start, rect, strict=True)]
    ActionChains(driver).move_to_element_with_offset(canvas, *map(round, to_centre)).click_and_hold() \
        .move_by_offset(round((end[0] - start[0]) * scale), round((end[1] - start[1]) * scale)).release().perform()


def test_paint_erase_rerun_and_download_in_a_browser(server_url, browser, tmp_path):
    photo_path = need_photo()
    browser.get(server_url)
    not_a_photo = tmp_path / "notes.jpg"
    not_a_photo.write_text("not a photo\n")
    browser.find_element(By.ID, "file").send_keys(str(not_a_photo))
    WebDriverWait(browser, WAIT_S).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "error")
    assert browser.find_element(By.ID, "error").text == \
        "notes.jpg: this file is not an image we can read (JPEG, PNG, WebP, BMP)"

    browser.find_element(By.ID, "file").send_keys(str(photo_path))
    wait_for(browser, 1)
    assert browser.find_element(By.ID, "status").text.startswith("1 face unmasked")
    x0, y0, x1, y1 = browser.execute_script("return current().photo.faces[0].box")  # photo px = map px (512 px wide)
    canvas = browser.find_element(By.ID, "map")
    middle_y = (y0 + y1) / 2 + 20
    stroke(browser, canvas, (x0 + 10, middle_y), (x1 - 10, middle_y))  # paint across the face
    browser.find_element(By.CSS_SELECTOR, "input[name=mode][value=erase]").click()
    centre_x = (x0 + x1) / 2
    stroke(browser, canvas, (centre_x, middle_y - 40), (centre_x, middle_y + 40))  # erase a gap in the middle
    browser.find_element(By.ID, "rerun").click()
    wait_for(browser, 2)

    data_url = browser.execute_script("return document.getElementById('map').toDataURL('image/png')")
    alpha = np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).getchannel("A"))
    edited = np.where(alpha >= 128, 255, 0).astype(np.uint8)  # what the page sent: the server's rule
    row = edited[round(middle_y)]
    assert row[round(x0 + 30)] and row[round(x1 - 30)] and not row[round(centre_x)]  # painted, then erased

    browser.find_element(By.ID, "download").click()
    downloaded = tmp_path / "downloads" / f"{photo_path.stem}-unmasked.png"
    WebDriverWait(browser, WAIT_S).until(lambda _: downloaded.is_file())
    result = np.asarray(Image.open(downloaded).convert("RGB"))
    photo = load_image(photo_path, max_side=None)
    unmasker = tiny_unmasker()
    (face,) = unmasker(photo, aligned=False).faces
    changed_only_near(result, photo, edited, paste_margin(unmasker, face.matrix))


MAP_PIXELS = "return readAlpha().reduce((n, v) => n + (v >= 128 ? 1 : 0), 0)"  # painted map pixels


def body(driver, name: str) -> str:
    return driver.find_element(By.TAG_NAME, "body").get_attribute(f"data-{name}")


def keys(driver, *sequence, hold=None) -> None:
    """Press keys on the page (not in a control): ``hold`` (e.g. Keys.CONTROL) held around them."""
    driver.execute_script("document.activeElement && document.activeElement.blur()")
    chain = ActionChains(driver)
    if hold:
        chain = chain.key_down(hold)
    chain = chain.send_keys(*sequence)
    if hold:
        chain = chain.key_up(hold)
    chain.perform()


def face_middle(driver) -> tuple[float, float, float, float]:
    """(left, right, y) across the first face's box, in map pixels, and the map's scale to photo px."""
    x0, y0, x1, y1 = driver.execute_script("return current().photo.faces[0].box")
    scale = driver.execute_script("return mapCanvas.width / current().photo.width")
    return (x0 + 15) * scale, (x1 - 15) * scale, (y0 + y1) / 2 * scale, scale


def open_photo(driver, url: str, *paths) -> None:
    driver.get(url)
    driver.find_element(By.ID, "file").send_keys("\n".join(str(p) for p in paths))
    WebDriverWait(driver, WAIT_S * len(paths)).until(
        lambda d: d.execute_script("return queue.every((item) => item.state === 'ready' || item.state === 'error')"))
    assert body(driver, "ready") == str(len(paths)), driver.execute_script("return queue.map((item) => item.error)")


def test_undo_redo_brush_keys_zoom_pan_grow_opacity_colour_and_before_after(server_url, browser):
    open_photo(browser, server_url, need_photo())
    canvas = browser.find_element(By.ID, "map")
    left, right, y, _ = face_middle(browser)
    assert browser.find_element(By.ID, "map-label").text.startswith("map: 0% of the face box")
    assert "Ctrl+Z" in browser.find_element(By.ID, "shortcuts").text

    # Undo and redo, 22 steps back, by buttons and keys.
    counts = [0]
    for step in range(22):
        stroke(browser, canvas, (left, y - 40 + 4 * step), (right, y - 40 + 4 * step))
        counts.append(browser.execute_script(MAP_PIXELS))
    assert all(a < b for a, b in zip(counts, counts[1:], strict=False)) and body(browser, "undo") == "22"
    assert not browser.find_element(By.ID, "map-label").text.startswith("map: 0%")  # the label follows the edit
    browser.find_element(By.ID, "undo").click()
    keys(browser, "z", hold=Keys.CONTROL)
    assert browser.execute_script(MAP_PIXELS) == counts[-3] and body(browser, "redo") == "2"
    ActionChains(browser).key_down(Keys.CONTROL).key_down(Keys.SHIFT).send_keys("z").key_up(Keys.SHIFT) \
        .key_up(Keys.CONTROL).perform()
    assert browser.execute_script(MAP_PIXELS) == counts[-2]
    browser.find_element(By.ID, "redo").click()
    assert browser.execute_script(MAP_PIXELS) == counts[-1] and body(browser, "redo") == "0"
    for _ in range(22):
        keys(browser, "z", hold=Keys.CONTROL)
    assert browser.execute_script(MAP_PIXELS) == 0 and body(browser, "undo") == "0"
    assert browser.find_element(By.ID, "map-label").text.startswith("map: 0%")

    # The brush cursor shows the brush's size; [ and ] change it; B and E pick paint or erase.
    ActionChains(browser).move_to_element(canvas).perform()
    cursor = browser.find_element(By.ID, "cursor")
    assert cursor.is_displayed() and round(cursor.size["width"]) == 24
    keys(browser, "]", "]")
    size = int(browser.find_element(By.ID, "brush").get_attribute("value"))
    assert size > 24 and browser.find_element(By.ID, "brush-size").text == str(size)
    ActionChains(browser).move_to_element_with_offset(canvas, 5, 5).perform()
    assert round(cursor.size["width"]) == size
    keys(browser, "[")
    assert int(browser.find_element(By.ID, "brush").get_attribute("value")) < size
    keys(browser, "e")
    assert browser.find_element(By.CSS_SELECTOR, "input[name=mode][value=erase]").is_selected()
    keys(browser, "b")
    assert browser.find_element(By.CSS_SELECTOR, "input[name=mode][value=paint]").is_selected()

    # Grow and shrink by N px.
    stroke(browser, canvas, (left + 30, y), (left + 31, y))
    dab = browser.execute_script(MAP_PIXELS)
    browser.find_element(By.ID, "grow").click()  # by 4 px
    grown = browser.execute_script(MAP_PIXELS)
    radius = np.sqrt(dab / np.pi)
    assert grown == pytest.approx(np.pi * (radius + 4) ** 2, rel=0.15)
    browser.find_element(By.ID, "shrink").click()
    browser.find_element(By.ID, "shrink").click()
    assert browser.execute_script(MAP_PIXELS) == pytest.approx(np.pi * (radius - 4) ** 2, rel=0.25)

    # Opacity and colour of the overlay.
    browser.execute_script("const s = document.getElementById('opacity'); s.value = '80';"
                           "s.dispatchEvent(new Event('input'))")
    assert canvas.value_of_css_property("opacity") == "0.8"
    browser.execute_script("const c = document.getElementById('colour'); c.value = '#00ff00';"
                           "c.dispatchEvent(new Event('input'))")
    rgba = browser.execute_script(
        "const d = mapContext.getImageData(0, 0, mapCanvas.width, mapCanvas.height).data;"
        "for (let i = 3; i < d.length; i += 4) if (d[i] === 255) return [d[i-3], d[i-2], d[i-1]]; return null")
    assert rgba == [0, 255, 0]

    # Zoom by buttons, keys and the wheel; pan with space held.
    browser.find_element(By.ID, "zoom-in").click()
    assert float(body(browser, "zoom")) == pytest.approx(1.25, abs=1e-3)
    keys(browser, "+")
    assert float(body(browser, "zoom")) == pytest.approx(1.5625, abs=1e-3)
    ActionChains(browser).scroll_from_origin(ScrollOrigin.from_element(canvas), 0, -100).perform()
    WebDriverWait(browser, 5).until(lambda d: float(body(d, "zoom")) > 1.6)
    before, painted = browser.execute_script("return [view.x, view.y]"), browser.execute_script(MAP_PIXELS)
    browser.execute_script("document.activeElement && document.activeElement.blur()")
    ActionChains(browser).key_down(Keys.SPACE).move_to_element(canvas).click_and_hold().move_by_offset(40, 30) \
        .release().key_up(Keys.SPACE).perform()
    after = browser.execute_script("return [view.x, view.y]")
    assert after[0] > before[0] and after[1] > before[1]
    action = ActionBuilder(browser)  # and with the middle button held
    action.pointer_action.move_to(canvas).pointer_down(MouseButton.MIDDLE).move_by(-30, -20) \
        .pointer_up(MouseButton.MIDDLE)
    action.perform()
    middle = browser.execute_script("return [view.x, view.y]")
    assert middle[0] < after[0] and middle[1] < after[1]
    assert browser.execute_script(MAP_PIXELS) == painted  # panning paints nothing
    keys(browser, "0")
    assert float(body(browser, "zoom")) == 1

    # Before / after: held, the result's place shows the photo as uploaded.
    result = browser.find_element(By.ID, "result")
    after_src = result.get_attribute("src")
    ActionChains(browser).key_down("\\").perform()
    assert body(browser, "compare") == "before"
    assert result.get_attribute("src") == browser.execute_script("return current().photoUrl")
    ActionChains(browser).key_up("\\").perform()
    assert body(browser, "compare") == "after" and result.get_attribute("src") == after_src


def test_reset_a_failed_upload_labels_and_a_tall_photo_in_the_window(server_url, browser, tmp_path):
    photo = np.asarray(Image.open(need_photo()).convert("RGB"))
    tall = np.pad(photo, ((600, 600), (0, 0), (0, 0)), mode="edge")  # 512 x 1653 px
    tall_path = tmp_path / "tall.png"
    Image.fromarray(tall).save(tall_path)
    open_photo(browser, server_url, tall_path)
    bottom = browser.execute_script("return document.getElementById('viewport').getBoundingClientRect().bottom")
    assert bottom <= browser.execute_script("return window.innerHeight")  # the photo stays above the fold

    browser.find_element(By.ID, "rerun").click()  # nothing edited yet: said above the photo, which still fits
    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_element(By.ID, "error").is_displayed())
    assert "changes no face" in browser.find_element(By.ID, "error").text
    bottom = browser.execute_script("return document.getElementById('viewport').getBoundingClientRect().bottom")
    assert bottom <= browser.execute_script("return window.innerHeight")

    canvas = browser.find_element(By.ID, "map")
    left, right, y, _ = face_middle(browser)
    stroke(browser, canvas, (left, y), (right, y))
    label = browser.find_element(By.ID, "map-label").text
    assert label.startswith("map: ") and not label.startswith("map: 0%") and "of the face box" in label
    first_result = browser.find_element(By.ID, "result").get_attribute("src")
    browser.find_element(By.ID, "rerun").click()
    wait_for(browser, 2)
    assert browser.find_element(By.ID, "result").get_attribute("src") != first_result

    browser.find_element(By.ID, "reset").click()  # map, result and status together
    assert browser.execute_script(MAP_PIXELS) == 0
    assert browser.find_element(By.ID, "result").get_attribute("src") == first_result
    assert browser.find_element(By.ID, "status").text.startswith("back to the predicted map")
    assert browser.find_element(By.ID, "map-label").text.startswith("map: 0%")
    keys(browser, "z", hold=Keys.CONTROL)  # a reset is undone like any edit
    assert browser.execute_script(MAP_PIXELS) > 0

    not_a_photo = tmp_path / "notes.jpg"
    not_a_photo.write_text("not a photo\n")
    browser.find_element(By.ID, "file").send_keys(str(not_a_photo))
    WebDriverWait(browser, WAIT_S).until(lambda d: body(d, "state") == "error")
    error = browser.find_element(By.ID, "error").text
    assert error == "notes.jpg: this file is not an image we can read (JPEG, PNG, WebP, BMP)"
    assert "Error" not in error
    # The earlier photo's result and tools are gone with it, download included.
    for part in ("views", "tools", "download", "rerun"):
        assert not browser.find_element(By.ID, part).is_displayed(), part
    assert not browser.find_element(By.ID, "download").is_enabled()
    browser.find_element(By.ID, "previous").click()  # the earlier photo is still in the queue, as it was
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "views").is_displayed())
    assert body(browser, "state") == "ready" and browser.execute_script(MAP_PIXELS) > 0


def test_a_queue_of_photos_each_keeps_its_edits(server_url, browser):
    paths = [need_photo(), need_photo(REAL_MASKED / "0001.jpg"), need_photo(REAL_MASKED / "0003.jpg")]
    open_photo(browser, server_url, *paths)
    assert browser.find_element(By.ID, "queue-position").text == f"photo 1 of 3: {paths[0].name}"
    canvas = browser.find_element(By.ID, "map")
    left, right, y, _ = face_middle(browser)
    stroke(browser, canvas, (left, y), (right, y))
    first = browser.execute_script(MAP_PIXELS)
    browser.find_element(By.ID, "next").click()
    WebDriverWait(browser, 10).until(
        lambda d: d.find_element(By.ID, "queue-position").text == f"photo 2 of 3: {paths[1].name}")
    WebDriverWait(browser, 10).until(lambda d: d.execute_script("return mapCanvas.width") ==
                                     d.execute_script("return current().photo.map_width"))
    assert browser.execute_script(MAP_PIXELS) == 0
    left, right, y, _ = face_middle(browser)
    for dy in (-20, 0, 20):
        stroke(browser, canvas, (left, y + dy), (right, y + dy))
    second = browser.execute_script(MAP_PIXELS)
    assert second > 0
    keys(browser, "p")
    WebDriverWait(browser, 10).until(lambda d: d.execute_script("return shown") == 0)
    WebDriverWait(browser, 10).until(lambda d: d.execute_script(MAP_PIXELS) == first)
    assert body(browser, "undo") == "1"  # its own undo steps too
    keys(browser, "n")
    WebDriverWait(browser, 10).until(lambda d: d.execute_script(MAP_PIXELS) == second)
    assert body(browser, "undo") == "3"
    browser.find_element(By.ID, "rerun").click()
    wait_for(browser, 4)  # three first results, one re-run


def test_a_photo_the_server_has_forgotten_is_sent_again_when_re_run(browser):
    paths = [need_photo(), need_photo(REAL_MASKED / "0001.jpg")]
    with served(create_app(tiny_unmasker(), cache=PhotoCache(max_photos=1))) as url:  # keeps the last photo only
        open_photo(browser, url, *paths)
        forgotten = browser.execute_script("return current().photo.id")
        canvas = browser.find_element(By.ID, "map")
        left, right, y, _ = face_middle(browser)
        stroke(browser, canvas, (left, y), (right, y))
        browser.find_element(By.ID, "rerun").click()
        wait_for(browser, 3)  # two first results, one re-run
        assert browser.execute_script("return current().photo.id") != forgotten
        assert browser.find_element(By.ID, "status").text.startswith("re-ran stage 2")
